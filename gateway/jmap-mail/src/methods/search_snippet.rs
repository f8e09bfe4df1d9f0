//! SearchSnippet/get (RFC 8621 §5): the subject and preview of Emails with the words of the
//! filter's `text` and `subject` conditions marked.
//!
//! The filter is the Email/query filter type and is checked the same way (what Email/query
//! refuses with `unsupportedFilter`, so does this). Terms under a NOT are not highlighted.
//! The "relevant section of the body" is the stored preview: `text` and `body` terms are
//! marked in it; `subject` terms only in the subject.

use jmap_engine::standard::{Filter, Operator};
use jmap_engine::{
    AccountDirectory, Arguments, Engine, Handler, HandlerFuture, Id, MethodCall, MethodError,
};
use serde_json::{Map, Value, json};
use state::DataType;

use super::filter::{self, Compiled, EmailCondition, Test};
use super::{MailAccount, object_id, store_error};
use crate::EmailRecord;

pub(super) fn register<D>(engine: &mut Engine<D>)
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    engine.register("SearchSnippet/get", super::MAIL, SearchSnippetGet);
}

/// A snippet's preview is at most this many octets (RFC 8621 §5).
const MAX_PREVIEW: usize = 255;
/// Characters of context kept before the first match when the preview must be cut.
const LEAD: usize = 30;

/// The terms to mark: in the subject, and in the preview.
#[derive(Debug, Default)]
struct Terms {
    subject: Vec<Vec<char>>,
    preview: Vec<Vec<char>>,
}

fn collect_terms(f: &Compiled, out: &mut Terms) {
    match f {
        Filter::Condition(tests) => {
            for t in tests {
                match t {
                    Test::Text(q) => {
                        out.subject.extend(q.terms.iter().cloned());
                        out.preview.extend(q.terms.iter().cloned());
                    }
                    Test::Subject(q) => out.subject.extend(q.terms.iter().cloned()),
                    Test::Body(q) => out.preview.extend(q.terms.iter().cloned()),
                    _ => {}
                }
            }
        }
        Filter::Operator(op) if op.operator == Operator::Not => {}
        Filter::Operator(op) => op.conditions.iter().for_each(|c| collect_terms(c, out)),
    }
}

fn escape(c: char, out: &mut String) {
    match c {
        '&' => out.push_str("&amp;"),
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '"' => out.push_str("&quot;"),
        c => out.push(c),
    }
}

/// Which characters of `text` are part of a match of any term.
fn marks(chars: &[char], terms: &[Vec<char>]) -> Vec<bool> {
    let folded: Vec<char> = chars.iter().map(|c| filter::fold(*c)).collect();
    let mut mask = vec![false; chars.len()];
    for t in terms {
        let mut from = 0;
        while let Some(i) = filter::find(&folded, t, from) {
            mask[i..i + t.len()].iter_mut().for_each(|m| *m = true);
            from = i + 1;
        }
    }
    mask
}

/// `text` HTML-escaped with its matches in `<mark>`, at most `max` octets (cut around the
/// first match), or `None` when nothing matches.
fn highlight(text: &str, terms: &[Vec<char>], max: Option<usize>) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let mask = marks(&chars, terms);
    let first = mask.iter().position(|m| *m)?;
    let start = match max {
        Some(max) if text.len() > max => first.saturating_sub(LEAD),
        _ => 0,
    };
    let limit = max.unwrap_or(usize::MAX);
    let mut out = String::new();
    let mut open = false;
    for (c, m) in chars[start..].iter().zip(&mask[start..]) {
        let mut piece = String::new();
        if *m && !open {
            piece.push_str("<mark>");
        }
        if !*m && open {
            piece.push_str("</mark>");
        }
        escape(*c, &mut piece);
        let closing = if *m { "</mark>".len() } else { 0 };
        if out.len() + piece.len() + closing > limit {
            break;
        }
        out.push_str(&piece);
        open = *m;
    }
    if open {
        out.push_str("</mark>");
    }
    Some(out)
}

fn snippet(r: &EmailRecord, terms: &Terms) -> Map<String, Value> {
    let subject = r
        .subject
        .as_deref()
        .and_then(|s| highlight(s, &terms.subject, None));
    let preview = highlight(&r.preview, &terms.preview, Some(MAX_PREVIEW));
    let mut m = Map::new();
    m.insert("emailId".into(), json!(r.id));
    m.insert("subject".into(), json!(subject));
    m.insert("preview".into(), json!(preview));
    m
}

struct SearchSnippetGet;

impl<D> Handler<D> for SearchSnippetGet
where
    D: AccountDirectory + 'static,
    D::Account: MailAccount,
{
    fn call<'a>(&'a self, call: MethodCall<'a, D>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let mut args = Arguments::new(call.arguments.clone());
            let account_id: Id = args.required("accountId")?;
            let filter = match args.raw("filter") {
                None | Some(Value::Null) => None,
                Some(v) => Some(Filter::<EmailCondition>::from_json(v)?),
            };
            let email_ids: Vec<Id> = args.required("emailIds")?;
            args.finish()?;
            let max = call.limits().max_objects_in_get.get();
            if u64::try_from(email_ids.len()).unwrap_or(u64::MAX) > max {
                return Err(MethodError::request_too_large(format!(
                    "{} emailIds, more than maxObjectsInGet ({max})",
                    email_ids.len()
                )));
            }
            let account = call.account()?;
            // The same filters Email/query takes: `body` where upstream can search, which
            // needs the sync driver (its terms are marked in the preview).
            let compile = if account.sync().is_some() {
                filter::compile_for_query
            } else {
                filter::compile
            };
            let compiled = filter.as_ref().map(compile).transpose()?;
            let mut terms = Terms::default();
            if let Some(f) = &compiled {
                collect_terms(f, &mut terms);
            }
            let keys: Vec<_> = email_ids.iter().filter_map(object_id).collect();
            let (_, rows) = account
                .store()
                .get_many(account.store_id(), DataType::Email, keys.clone())
                .await
                .map_err(store_error)?;
            let found: std::collections::HashMap<String, EmailRecord> = keys
                .iter()
                .zip(rows)
                .filter_map(|(k, row)| {
                    Some((k.as_str().to_owned(), EmailRecord::from_bytes(&row?)?))
                })
                .collect();
            let mut list = Vec::new();
            let mut not_found = Vec::new();
            for id in &email_ids {
                match found.get(id.as_str()) {
                    Some(r) => list.push(Value::Object(snippet(r, &terms))),
                    None => not_found.push(json!(id.as_str())),
                }
            }
            let mut out = Map::new();
            out.insert("accountId".into(), json!(account_id.as_str()));
            out.insert("list".into(), Value::Array(list));
            out.insert(
                "notFound".into(),
                if not_found.is_empty() {
                    Value::Null
                } else {
                    Value::Array(not_found)
                },
            );
            Ok(call.reply(out))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::methods::filter::TextQuery;

    use serde_json::json;

    use crate::methods::testing::{Fixture, email, mailbox};

    #[tokio::test]
    async fn snippets_through_the_method() {
        let f = Fixture::new();
        f.put_mailbox(&mailbox("inbox", "INBOX", Some("inbox")))
            .await;
        let mut e = email(
            "e1",
            "t1",
            "inbox",
            "1",
            &[],
            100,
            "From: a@b.c\r\nSubject: The <fox> report",
        );
        e.preview = "a quick brown fox jumps".into();
        f.put_email(&e).await;
        let r = f
            .ok(
                "SearchSnippet/get",
                json!({"filter": {"text": "FOX"}, "emailIds": ["e1", "nope"]}),
            )
            .await;
        assert_eq!(
            r["list"],
            json!([{"emailId": "e1", "subject": "The &lt;<mark>fox</mark>&gt; report",
                    "preview": "a quick brown <mark>fox</mark> jumps"}])
        );
        assert_eq!(r["notFound"], json!(["nope"]));
        // subject terms mark only the subject; NOT terms nothing; no filter, no marks.
        let r = f
            .ok(
                "SearchSnippet/get",
                json!({"filter": {"operator": "AND", "conditions": [
                    {"subject": "report"},
                    {"operator": "NOT", "conditions": [{"text": "quick"}]}]},
                    "emailIds": ["e1"]}),
            )
            .await;
        assert_eq!(
            r["list"][0]["subject"],
            json!("The &lt;fox&gt; <mark>report</mark>")
        );
        assert_eq!(r["list"][0]["preview"], json!(null));
        assert_eq!(r["notFound"], json!(null));
        let r = f.ok("SearchSnippet/get", json!({"emailIds": ["e1"]})).await;
        assert_eq!(r["list"][0]["subject"], json!(null));
        let r = f
            .call(
                "SearchSnippet/get",
                json!({"filter": {"body": "x"}, "emailIds": ["e1"]}),
            )
            .await;
        assert_eq!(r[0][1]["type"], json!("unsupportedFilter"));
    }

    /// With a driver whose server can search, `body` is accepted, as in Email/query, and its
    /// terms are marked in the preview.
    #[tokio::test]
    async fn body_terms_are_marked_where_upstream_can_search() {
        use crate::methods::fake::{fixture_with_fake, message};
        let (f, fake) = fixture_with_fake().await;
        fake.deliver(
            "INBOX",
            message("Minutes", "m1@x", "the budget was approved"),
            &[],
        );
        f.account
            .sync
            .as_ref()
            .expect("driver")
            .sync_all()
            .await
            .expect("sync");
        let q = f
            .ok("Email/query", json!({"filter": {"body": "budget"}}))
            .await;
        let id = q["ids"][0].clone();
        assert!(id.is_string(), "{q}");
        let r = f
            .ok(
                "SearchSnippet/get",
                json!({"filter": {"body": "budget"}, "emailIds": [id]}),
            )
            .await;
        assert_eq!(
            r["list"][0]["preview"],
            json!("the <mark>budget</mark> was approved")
        );
        assert_eq!(r["list"][0]["subject"], json!(null));
    }

    #[test]
    fn marks_and_escapes() {
        let t = TextQuery::parse("big").terms;
        assert_eq!(
            highlight("A <BIG> & bigger deal", &t, None).unwrap(),
            "A &lt;<mark>BIG</mark>&gt; &amp; <mark>big</mark>ger deal"
        );
        assert_eq!(highlight("nothing here", &t, None), None);
        let long = format!("{} big {}", "x".repeat(400), "y".repeat(400));
        let h = highlight(&long, &t, Some(MAX_PREVIEW)).unwrap();
        assert!(h.len() <= MAX_PREVIEW && h.contains("<mark>big</mark>"));
    }
}
