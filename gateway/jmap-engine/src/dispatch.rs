//! Running a Request: capability checks, result references, account resolution and limits are
//! done here, once, before a method's handler runs; handlers only do their data type's work.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Map, Value};

use crate::result_reference::resolve_references;
use crate::session::{CORE_CAPABILITY, Capabilities, CoreCapability, Limits};
use crate::{
    CreatedIds, Id, Invocation, MethodError, Request, RequestError, RequestLimit, Response, ijson,
};

/// What a handler's future yields.
pub type HandlerResult = Result<MethodOutput, MethodError>;

/// The boxed future a handler returns. Runtime-neutral: the gateway may move blocking storage
/// work off-thread inside it however it likes.
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = HandlerResult> + Send + 'a>>;

/// Why an account cannot serve a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// No such account, or not one this user may see.
    #[error("account not found")]
    NotFound,
    /// The account exists but lacks the method's capability.
    #[error("account does not support this method")]
    NotSupportedByMethod,
}

/// The caller's view of who may use which account; the engine asks it once per call.
pub trait AccountDirectory: Send + Sync {
    /// The authenticated user, as the HTTP layer established it.
    type User: Send + Sync;
    /// The handle a handler receives for a resolved account.
    type Account: Send + Sync;

    /// The account `account_id` of `user`, if it exists and has `capability`.
    fn resolve(
        &self,
        user: &Self::User,
        account_id: &Id,
        capability: &str,
    ) -> Result<Self::Account, AccountError>;

    /// True when the whole account is read-only (the Session's `isReadOnly`).
    fn is_read_only(&self, _account: &Self::Account) -> bool {
        false
    }
}

/// A method implementation.
pub trait Handler<D: AccountDirectory>: Send + Sync {
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a>;
}

/// A handler made of a plain function or closure whose work needs no awaiting (in-memory data,
/// tests). `FnHandler(|call: MethodCall<'_, D>| { ... })`.
pub struct FnHandler<F>(pub F);

impl<F> fmt::Debug for FnHandler<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnHandler")
    }
}

impl<D, F> Handler<D> for FnHandler<F>
where
    D: AccountDirectory,
    F: Fn(MethodCall<'_, D>) -> HandlerResult + Send + Sync,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        let result = (self.0)(call);
        Box::pin(std::future::ready(result))
    }
}

/// One method call, ready for its handler: references resolved, account(s) resolved and
/// checked, limits enforced.
pub struct MethodCall<'a, D: AccountDirectory> {
    pub name: String,
    pub call_id: String,
    /// The arguments with every `#name` result reference replaced by its value.
    pub arguments: Map<String, Value>,
    /// The `accountId` account, for methods that take one.
    pub account: Option<D::Account>,
    /// The `fromAccountId` account, for /copy.
    pub from_account: Option<D::Account>,
    pub user: &'a D::User,
    /// Creation ids known before this call (from the request and earlier calls).
    pub created_ids: &'a CreatedIds,
    /// Limits and collations the server advertises.
    pub core: &'a CoreCapability,
    /// The request's `using`.
    pub using: &'a [String],
}

impl<D: AccountDirectory> fmt::Debug for MethodCall<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodCall")
            .field("name", &self.name)
            .field("call_id", &self.call_id)
            .field("arguments", &self.arguments)
            .field("has_account", &self.account.is_some())
            .field("has_from_account", &self.from_account.is_some())
            .field("created_ids", &self.created_ids)
            .finish_non_exhaustive()
    }
}

impl<D: AccountDirectory> MethodCall<'_, D> {
    /// The resolved `accountId` account; `serverFail` if the method was registered without one.
    pub fn account(&self) -> Result<&D::Account, MethodError> {
        self.account
            .as_ref()
            .ok_or_else(|| MethodError::server_fail("method registered without an account"))
    }

    /// The resolved `fromAccountId` account of a /copy.
    pub fn from_account(&self) -> Result<&D::Account, MethodError> {
        self.from_account
            .as_ref()
            .ok_or_else(|| MethodError::server_fail("method registered without a from-account"))
    }

    pub fn limits(&self) -> &Limits {
        &self.core.limits
    }

    /// True when the request's `using` has `capability`.
    pub fn uses(&self, capability: &str) -> bool {
        self.using.iter().any(|c| c == capability)
    }

    /// A one-response output named like the call.
    pub fn reply(&self, arguments: Map<String, Value>) -> MethodOutput {
        MethodOutput::new(self.name.clone(), arguments)
    }
}

/// What a method produced: one or more responses (all get the call's id) and the creation ids
/// it assigned. `created` maps of `/set`, `/copy` and `/import` responses are also recorded
/// automatically.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MethodOutput {
    pub responses: Vec<(String, Map<String, Value>)>,
    pub created_ids: Vec<(Id, Id)>,
}

impl MethodOutput {
    pub fn new(name: impl Into<String>, arguments: Map<String, Value>) -> Self {
        MethodOutput {
            responses: vec![(name.into(), arguments)],
            created_ids: Vec::new(),
        }
    }

    /// Appends a further response, as an implicit call does (e.g. /copy's destroy).
    pub fn and_then(mut self, name: impl Into<String>, arguments: Map<String, Value>) -> Self {
        self.responses.push((name.into(), arguments));
        self
    }

    /// Records a creation id the responses do not show in a `created` map.
    pub fn with_created_id(mut self, creation_id: Id, id: Id) -> Self {
        self.created_ids.push((creation_id, id));
        self
    }
}

/// The shape of a method, which decides the generic checks the engine applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MethodKind {
    Get,
    Changes,
    Set,
    Copy,
    Query,
    QueryChanges,
    Other,
}

/// Which account arguments a method takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountArguments {
    /// No account (Core/echo, PushSubscription/*).
    None,
    /// `accountId`.
    Account,
    /// `accountId` and `fromAccountId` (/copy).
    AccountAndFrom,
}

/// How the engine treats a registered method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodSpec {
    /// The capability that must be in `using` and that the account must have.
    pub capability: String,
    pub kind: MethodKind,
    pub accounts: AccountArguments,
    /// Refused with `accountReadOnly` on a read-only account.
    pub mutates: bool,
}

impl MethodSpec {
    /// The spec a standard method name implies: the kind from its `/get`, `/set`, … suffix;
    /// every method takes `accountId` (and /copy `fromAccountId`); /set, /copy and /import
    /// mutate.
    pub fn infer(name: &str, capability: impl Into<String>) -> Self {
        let suffix = name.rsplit_once('/').map_or("", |(_, suffix)| suffix);
        let kind = match suffix {
            "get" => MethodKind::Get,
            "changes" => MethodKind::Changes,
            "set" => MethodKind::Set,
            "copy" => MethodKind::Copy,
            "query" => MethodKind::Query,
            "queryChanges" => MethodKind::QueryChanges,
            _ => MethodKind::Other,
        };
        MethodSpec {
            capability: capability.into(),
            kind,
            accounts: if kind == MethodKind::Copy {
                AccountArguments::AccountAndFrom
            } else {
                AccountArguments::Account
            },
            mutates: matches!(kind, MethodKind::Set | MethodKind::Copy) || suffix == "import",
        }
    }

    pub fn without_account(mut self) -> Self {
        self.accounts = AccountArguments::None;
        self
    }

    pub fn mutating(mut self, mutates: bool) -> Self {
        self.mutates = mutates;
        self
    }
}

struct Registered<D: AccountDirectory> {
    spec: MethodSpec,
    handler: Box<dyn Handler<D>>,
}

/// The method engine: a registry of handlers plus what the server advertises.
pub struct Engine<D: AccountDirectory> {
    directory: D,
    capabilities: Capabilities,
    methods: HashMap<String, Registered<D>>,
}

impl<D: AccountDirectory> fmt::Debug for Engine<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&String> = self.methods.keys().collect();
        names.sort();
        f.debug_struct("Engine")
            .field("capabilities", &self.capabilities)
            .field("methods", &names)
            .finish_non_exhaustive()
    }
}

/// Core/echo (RFC 8620 §4): answers with its own arguments.
struct Echo;

impl<D: AccountDirectory> Handler<D> for Echo {
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move { Ok(MethodOutput::new(call.name, call.arguments)) })
    }
}

/// The namespace of the capabilities registered with IANA for JMAP.
const IETF_CAPABILITY_PREFIX: &str = "urn:ietf:params:jmap:";

impl<D: AccountDirectory> Engine<D> {
    /// An engine with only Core/echo registered.
    pub fn new(directory: D, capabilities: Capabilities) -> Self {
        let mut engine = Engine {
            directory,
            capabilities,
            methods: HashMap::new(),
        };
        engine.register_spec(
            "Core/echo",
            MethodSpec::infer("Core/echo", CORE_CAPABILITY).without_account(),
            Echo,
        );
        engine
    }

    /// Registers a method with the spec its name implies (see [`MethodSpec::infer`]).
    pub fn register(
        &mut self,
        name: &str,
        capability: &str,
        handler: impl Handler<D> + 'static,
    ) -> &mut Self {
        self.register_spec(name, MethodSpec::infer(name, capability), handler)
    }

    /// Registers a method with an explicit spec; a later registration replaces an earlier one.
    pub fn register_spec(
        &mut self,
        name: &str,
        spec: MethodSpec,
        handler: impl Handler<D> + 'static,
    ) -> &mut Self {
        self.methods.insert(
            name.to_owned(),
            Registered {
                spec,
                handler: Box::new(handler),
            },
        );
        self
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    pub fn limits(&self) -> &Limits {
        &self.capabilities.core.limits
    }

    pub fn directory(&self) -> &D {
        &self.directory
    }

    /// Turns a request body into a checked [`Request`]: size, I-JSON, shape, call count and
    /// capabilities, each failure the matching request-level error.
    pub fn parse_request(&self, body: &[u8]) -> Result<Request, RequestError> {
        let max_size = self.limits().max_size_request.get();
        if u64::try_from(body.len()).unwrap_or(u64::MAX) > max_size {
            return Err(RequestError::too_large(body.len(), max_size));
        }
        let json = ijson::parse(body).map_err(|e| RequestError::NotJson(e.to_string()))?;
        let request = Request::from_json(json)?;
        self.check_request(&request)?;
        Ok(request)
    }

    /// The request-level checks on an already-parsed request.
    pub fn check_request(&self, request: &Request) -> Result<(), RequestError> {
        let max_calls = self.limits().max_calls_in_request.get();
        let calls = request.method_calls.len();
        if u64::try_from(calls).unwrap_or(u64::MAX) > max_calls {
            return Err(RequestError::Limit {
                limit: RequestLimit::MaxCallsInRequest,
                detail: format!(
                    "The request has {calls} method calls, more than the {max_calls} allowed."
                ),
            });
        }
        // RFC 8620 §3.6.1 lets a server reject an unknown capability ("may be rejected").
        // Real clients (jmap-client, for one) put every IETF capability they know in every
        // request, so a standard `urn:ietf:params:jmap:` capability this server lacks is
        // ignored: its methods answer unknownMethod. Anything else unknown is rejected.
        if let Some(unknown) = request
            .using
            .iter()
            .find(|c| !self.capabilities.supports(c) && !c.starts_with(IETF_CAPABILITY_PREFIX))
        {
            return Err(RequestError::UnknownCapability(unknown.clone()));
        }
        Ok(())
    }

    /// Parses and runs a request body.
    pub async fn handle(
        &self,
        user: &D::User,
        body: &[u8],
        session_state: &str,
    ) -> Result<Response, RequestError> {
        let request = self.parse_request(body)?;
        Ok(self.run(user, request, session_state).await)
    }

    /// Checks and runs a request.
    pub async fn execute(
        &self,
        user: &D::User,
        request: Request,
        session_state: &str,
    ) -> Result<Response, RequestError> {
        self.check_request(&request)?;
        Ok(self.run(user, request, session_state).await)
    }

    /// Runs the calls in order, each seeing the responses and creation ids of earlier ones.
    async fn run(&self, user: &D::User, request: Request, session_state: &str) -> Response {
        let echo_created_ids = request.created_ids.is_some();
        let mut created_ids = request.created_ids.unwrap_or_default();
        let mut responses: Vec<Invocation> = Vec::with_capacity(request.method_calls.len());
        for call in request.method_calls {
            let call_id = call.call_id.clone();
            match self
                .run_call(user, call, &request.using, &responses, &created_ids)
                .await
            {
                Ok(output) => {
                    created_ids.extend(output.created_ids);
                    for (name, arguments) in output.responses {
                        harvest_created_ids(&name, &arguments, &mut created_ids);
                        responses.push(Invocation::new(name, arguments, call_id.clone()));
                    }
                }
                Err(error) => {
                    responses.push(Invocation::new("error", error.to_arguments(), call_id));
                }
            }
        }
        Response {
            method_responses: responses,
            created_ids: echo_created_ids.then_some(created_ids),
            session_state: session_state.to_owned(),
        }
    }

    async fn run_call(
        &self,
        user: &D::User,
        call: Invocation,
        using: &[String],
        responses: &[Invocation],
        created_ids: &CreatedIds,
    ) -> HandlerResult {
        let Some(method) = self.methods.get(&call.name) else {
            return Err(MethodError::unknown_method()
                .with_description(format!("no method {:?}", call.name)));
        };
        let spec = &method.spec;
        if !using.contains(&spec.capability) {
            return Err(MethodError::unknown_method().with_description(format!(
                "{} needs {:?} in 'using'",
                call.name, spec.capability
            )));
        }
        let arguments = resolve_references(call.arguments, responses)?;
        let (account, from_account) = self.resolve_accounts(user, spec, &arguments)?;
        check_object_limits(spec, &arguments, self.limits())?;
        let call = MethodCall {
            name: call.name,
            call_id: call.call_id,
            arguments,
            account,
            from_account,
            user,
            created_ids,
            core: &self.capabilities.core,
            using,
        };
        method.handler.call(call).await
    }

    fn resolve_accounts(
        &self,
        user: &D::User,
        spec: &MethodSpec,
        arguments: &Map<String, Value>,
    ) -> Result<ResolvedAccounts<D>, MethodError> {
        if spec.accounts == AccountArguments::None {
            return Ok((None, None));
        }
        let account_id = account_id_argument(arguments, "accountId")?;
        let account = self
            .directory
            .resolve(user, &account_id, &spec.capability)
            .map_err(|e| match e {
                AccountError::NotFound => MethodError::account_not_found(),
                AccountError::NotSupportedByMethod => {
                    MethodError::account_not_supported_by_method()
                }
            })?;
        if spec.mutates && self.directory.is_read_only(&account) {
            return Err(MethodError::account_read_only());
        }
        if spec.accounts == AccountArguments::Account {
            return Ok((Some(account), None));
        }
        let from_id = account_id_argument(arguments, "fromAccountId")?;
        let from_account = self
            .directory
            .resolve(user, &from_id, &spec.capability)
            .map_err(|e| match e {
                AccountError::NotFound => MethodError::from_account_not_found(),
                AccountError::NotSupportedByMethod => {
                    MethodError::from_account_not_supported_by_method()
                }
            })?;
        Ok((Some(account), Some(from_account)))
    }
}

/// The `accountId` and `fromAccountId` accounts of a call, where it takes them.
type ResolvedAccounts<D> = (
    Option<<D as AccountDirectory>::Account>,
    Option<<D as AccountDirectory>::Account>,
);

fn account_id_argument(arguments: &Map<String, Value>, name: &str) -> Result<Id, MethodError> {
    match arguments.get(name) {
        Some(Value::String(id)) => Id::new(id.as_str()).map_err(|e| {
            MethodError::invalid_arguments(format!("the '{name}' argument is invalid: {e}"))
        }),
        Some(_) => Err(MethodError::invalid_arguments(format!(
            "the '{name}' argument must be an Id string"
        ))),
        None => Err(MethodError::invalid_arguments(format!(
            "the '{name}' argument is required"
        ))),
    }
}

/// `requestTooLarge` for a /get over `maxObjectsInGet` ids or a /set (or /copy) over
/// `maxObjectsInSet` objects. Malformed arguments are left for the handler to report.
fn check_object_limits(
    spec: &MethodSpec,
    arguments: &Map<String, Value>,
    limits: &Limits,
) -> Result<(), MethodError> {
    let count = |name: &str| match arguments.get(name) {
        Some(Value::Array(items)) => items.len(),
        Some(Value::Object(members)) => members.len(),
        _ => 0,
    };
    let as_u64 = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    match spec.kind {
        MethodKind::Get => {
            let (asked, max) = (count("ids"), limits.max_objects_in_get.get());
            if as_u64(asked) > max {
                return Err(MethodError::request_too_large(format!(
                    "{asked} ids requested, more than maxObjectsInGet ({max})"
                )));
            }
        }
        MethodKind::Set | MethodKind::Copy => {
            let asked = count("create") + count("update") + count("destroy");
            let max = limits.max_objects_in_set.get();
            if as_u64(asked) > max {
                return Err(MethodError::request_too_large(format!(
                    "{asked} objects to create, update or destroy, more than maxObjectsInSet ({max})"
                )));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Records `creation id → id` from a `/set`, `/copy` or `/import` response's `created` map, so
/// later calls can say `#creationId` without handlers having to report them twice.
fn harvest_created_ids(name: &str, arguments: &Map<String, Value>, created_ids: &mut CreatedIds) {
    let creating = ["/set", "/copy", "/import"]
        .iter()
        .any(|suffix| name.ends_with(suffix));
    if !creating {
        return;
    }
    let Some(Value::Object(created)) = arguments.get("created") else {
        return;
    };
    for (creation_id, record) in created {
        let id = record.get("id").and_then(Value::as_str);
        if let (Ok(creation_id), Some(Ok(id))) = (Id::new(creation_id.as_str()), id.map(Id::new)) {
            created_ids.insert(creation_id, id);
        }
    }
}
