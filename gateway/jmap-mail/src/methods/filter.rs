//! The Email FilterCondition (RFC 8621 §4.4.1), shared by Email/query and SearchSnippet/get:
//! what a client may send, the checks that turn what we cannot answer into
//! `unsupportedFilter`, and evaluation over stored [`EmailRecord`]s.
//!
//! String conditions follow the RFC's matching rules: case-insensitive, whitespace separates
//! tokens that must all be present, and `'…'` or `"…"` is a phrase (with `\` escaping a quote
//! or backslash inside it). Tokens match as substrings (no stemming).
//!
//! Full text (`text`, `body`): the bodies are not in the store, so Email/query asks upstream
//! ([`upstream::Upstream::search`], IMAP `UID SEARCH TEXT`/`BODY`) before evaluating, and
//! the tests become [`Test::Found`] sets of Email ids: exact, headers and bodies alike (IMAP
//! `TEXT` looks in every header field, not only the five the RFC names, so `text` may also
//! match e.g. a Message-ID; servers with a full-text index may match words, not substrings).
//! Where upstream cannot search (no sync driver, or the adapter says `Unsupported`):
//! - `body` is `unsupportedFilter`;
//! - `text` is matched against From, To, Cc, Bcc, Subject (as the RFC requires) and the
//!   stored preview (the first characters of the body) — an approximation of "any text/*
//!   body part", which would need every body fetched.
//!
//! SearchSnippet/get compiles with [`compile`], which still refuses `body` and keeps `text`
//! as a [`Test::Text`] whose terms it marks; only Email/query uses [`compile_for_query`].

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use jmap_engine::standard::{Filter, FilterOperator};
use jmap_engine::{Id, MethodError, UnsignedInt, UtcDate};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::{EmailAddress, EmailRecord};

/// A FilterCondition as the client sent it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct EmailCondition {
    in_mailbox: Option<Id>,
    in_mailbox_other_than: Option<Vec<Id>>,
    before: Option<UtcDate>,
    after: Option<UtcDate>,
    min_size: Option<UnsignedInt>,
    max_size: Option<UnsignedInt>,
    all_in_thread_have_keyword: Option<String>,
    some_in_thread_have_keyword: Option<String>,
    none_in_thread_have_keyword: Option<String>,
    has_keyword: Option<String>,
    not_keyword: Option<String>,
    has_attachment: Option<bool>,
    text: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cc: Option<String>,
    bcc: Option<String>,
    subject: Option<String>,
    body: Option<String>,
    header: Option<Vec<String>>,
    /// Anything else: a property we do not know is `unsupportedFilter` (RFC 8620 §5.5).
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// The client's filter.
pub(super) type EmailFilter = Filter<EmailCondition>;

/// One test of a condition, parsed once.
#[derive(Debug, Clone)]
pub(super) enum Test {
    InMailbox(String),
    InMailboxOtherThan(BTreeSet<String>),
    Before(i64),
    After(i64),
    MinSize(u64),
    MaxSize(u64),
    AllInThreadHaveKeyword(String),
    SomeInThreadHaveKeyword(String),
    NoneInThreadHaveKeyword(String),
    HasKeyword(String),
    NotKeyword(String),
    HasAttachment(bool),
    Text(TextQuery),
    From(TextQuery),
    To(TextQuery),
    Cc(TextQuery),
    Bcc(TextQuery),
    Subject(TextQuery),
    /// Lowercased header name, and the text to look for in its value.
    Header(String, Option<TextQuery>),
    /// `body`, waiting for an upstream search (Email/query turns it into [`Test::Found`] or
    /// refuses it). Left as is it matches only when it has no terms.
    Body(TextQuery),
    /// A `text` or `body` condition upstream answered: the ids of the Emails it found.
    Found(Arc<HashSet<String>>),
}

/// A condition: all of its tests (an empty one is always true).
pub(super) type Compiled = Filter<Vec<Test>>;

/// Parses the tests of a filter; `unsupportedFilter` for what cannot be answered (`body`
/// included), `invalidArguments` for a malformed `header`.
pub(super) fn compile(filter: &EmailFilter) -> Result<Compiled, MethodError> {
    compile_with(filter, false)
}

/// As [`compile`], but `body` becomes a [`Test::Body`] for the caller to resolve upstream
/// (see [`full_text_tests`]) before evaluating.
pub(super) fn compile_for_query(filter: &EmailFilter) -> Result<Compiled, MethodError> {
    compile_with(filter, true)
}

fn compile_with(filter: &EmailFilter, body: bool) -> Result<Compiled, MethodError> {
    Ok(match filter {
        Filter::Condition(c) => Filter::Condition(compile_condition(c, body)?),
        Filter::Operator(op) => Filter::Operator(FilterOperator {
            operator: op.operator,
            conditions: op
                .conditions
                .iter()
                .map(|c| compile_with(c, body))
                .collect::<Result<Vec<_>, _>>()?,
        }),
    })
}

/// The error for a `body` condition that cannot be searched.
pub(super) fn body_unsupported() -> MethodError {
    MethodError::unsupported_filter().with_description(
        "'body' needs a full-text search of message bodies, which this account's server cannot do",
    )
}

fn compile_condition(c: &EmailCondition, body: bool) -> Result<Vec<Test>, MethodError> {
    if let Some(name) = c.other.keys().next() {
        return Err(MethodError::unsupported_filter()
            .with_description(format!("unknown filter property '{name}'")));
    }
    if c.body.is_some() && !body {
        return Err(body_unsupported());
    }
    let mut t = Vec::new();
    if let Some(m) = &c.in_mailbox {
        t.push(Test::InMailbox(m.as_str().to_owned()));
    }
    if let Some(list) = &c.in_mailbox_other_than {
        t.push(Test::InMailboxOtherThan(
            list.iter().map(|m| m.as_str().to_owned()).collect(),
        ));
    }
    if let Some(d) = &c.before {
        t.push(Test::Before(d.timestamp()));
    }
    if let Some(d) = &c.after {
        t.push(Test::After(d.timestamp()));
    }
    if let Some(n) = c.min_size {
        t.push(Test::MinSize(n.get()));
    }
    if let Some(n) = c.max_size {
        t.push(Test::MaxSize(n.get()));
    }
    let kw = |k: &String| k.to_lowercase();
    if let Some(k) = &c.all_in_thread_have_keyword {
        t.push(Test::AllInThreadHaveKeyword(kw(k)));
    }
    if let Some(k) = &c.some_in_thread_have_keyword {
        t.push(Test::SomeInThreadHaveKeyword(kw(k)));
    }
    if let Some(k) = &c.none_in_thread_have_keyword {
        t.push(Test::NoneInThreadHaveKeyword(kw(k)));
    }
    if let Some(k) = &c.has_keyword {
        t.push(Test::HasKeyword(kw(k)));
    }
    if let Some(k) = &c.not_keyword {
        t.push(Test::NotKeyword(kw(k)));
    }
    if let Some(b) = c.has_attachment {
        t.push(Test::HasAttachment(b));
    }
    for (value, make) in [
        (&c.text, Test::Text as fn(TextQuery) -> Test),
        (&c.from, Test::From),
        (&c.to, Test::To),
        (&c.cc, Test::Cc),
        (&c.bcc, Test::Bcc),
        (&c.subject, Test::Subject),
    ] {
        if let Some(s) = value {
            t.push(make(TextQuery::parse(s)));
        }
    }
    if let Some(b) = &c.body {
        t.push(Test::Body(TextQuery::parse(b)));
    }
    if let Some(h) = &c.header {
        match h.as_slice() {
            [name] if !name.is_empty() => t.push(Test::Header(name.to_ascii_lowercase(), None)),
            [name, value] if !name.is_empty() => t.push(Test::Header(
                name.to_ascii_lowercase(),
                Some(TextQuery::parse(value)),
            )),
            _ => {
                return Err(MethodError::invalid_arguments(
                    "the 'header' filter needs a header name and optionally a value",
                ));
            }
        }
    }
    Ok(t)
}

/// Every test in a compiled filter.
pub(super) fn tests(filter: &Compiled) -> impl Iterator<Item = &Test> {
    filter.conditions().into_iter().flatten()
}

/// The `text` and `body` tests of a filter, each with the mailbox its condition restricts
/// the search to (that condition's `inMailbox`), for the caller to resolve upstream.
pub(super) fn full_text_tests(filter: &mut Compiled) -> Vec<(Option<String>, &mut Test)> {
    fn walk<'a>(f: &'a mut Compiled, out: &mut Vec<(Option<String>, &'a mut Test)>) {
        match f {
            Filter::Condition(tests) => {
                let mailbox = tests.iter().find_map(|t| match t {
                    Test::InMailbox(m) => Some(m.clone()),
                    _ => None,
                });
                for t in tests.iter_mut() {
                    if matches!(t, Test::Text(_) | Test::Body(_)) {
                        out.push((mailbox.clone(), t));
                    }
                }
            }
            Filter::Operator(op) => op.conditions.iter_mut().for_each(|c| walk(c, out)),
        }
    }
    let mut out = Vec::new();
    walk(filter, &mut out);
    out
}

/// The keywords whose per-thread aggregates the filter needs.
pub(super) fn thread_keywords(filter: &Compiled) -> BTreeSet<String> {
    tests(filter)
        .filter_map(|t| match t {
            Test::AllInThreadHaveKeyword(k)
            | Test::SomeInThreadHaveKeyword(k)
            | Test::NoneInThreadHaveKeyword(k) => Some(k.clone()),
            _ => None,
        })
        .collect()
}

/// The keywords of every Email of each thread (thread id → one set per Email).
#[derive(Debug, Default, Clone)]
pub(super) struct ThreadKeywords(pub HashMap<String, Vec<BTreeSet<String>>>);

impl ThreadKeywords {
    /// Every Email of the thread has `k` (a thread we know nothing of: only this Email).
    pub fn all(&self, r: &EmailRecord, k: &str) -> bool {
        match self.0.get(&r.thread_id) {
            Some(list) if !list.is_empty() => list.iter().all(|s| s.contains(k)),
            _ => r.keywords().contains(k),
        }
    }

    pub fn some(&self, r: &EmailRecord, k: &str) -> bool {
        match self.0.get(&r.thread_id) {
            Some(list) if !list.is_empty() => list.iter().any(|s| s.contains(k)),
            _ => r.keywords().contains(k),
        }
    }
}

/// Whether a record matches the filter.
pub(super) fn matches(filter: &Compiled, r: &EmailRecord, threads: &ThreadKeywords) -> bool {
    let keywords = r.keywords();
    filter.matches(&mut |tests: &Vec<Test>| tests.iter().all(|t| test(t, r, &keywords, threads)))
}

fn test(t: &Test, r: &EmailRecord, keywords: &BTreeSet<String>, threads: &ThreadKeywords) -> bool {
    match t {
        Test::InMailbox(m) => r.locations.contains_key(m),
        Test::InMailboxOtherThan(list) => r.locations.keys().any(|m| !list.contains(m)),
        Test::Before(d) => r.received_at < *d,
        Test::After(d) => r.received_at >= *d,
        Test::MinSize(n) => r.size >= *n,
        Test::MaxSize(n) => r.size < *n,
        Test::AllInThreadHaveKeyword(k) => threads.all(r, k),
        Test::SomeInThreadHaveKeyword(k) => threads.some(r, k),
        Test::NoneInThreadHaveKeyword(k) => !threads.some(r, k),
        Test::HasKeyword(k) => keywords.contains(k),
        Test::NotKeyword(k) => !keywords.contains(k),
        Test::HasAttachment(b) => r.has_attachment == *b,
        Test::Text(q) => {
            let fields = text_fields(r);
            q.matches(&fields.iter().map(String::as_str).collect::<Vec<_>>())
        }
        Test::From(q) => q.matches(&[&addresses(&r.from)]),
        Test::To(q) => q.matches(&[&addresses(&r.to)]),
        Test::Cc(q) => q.matches(&[&addresses(&r.cc)]),
        Test::Bcc(q) => q.matches(&[&addresses(&r.bcc)]),
        Test::Subject(q) => q.matches(&[r.subject.as_deref().unwrap_or("")]),
        Test::Header(name, value) => header_matches(r, name, value.as_ref()),
        Test::Body(q) => q.terms.is_empty(),
        Test::Found(ids) => ids.contains(&r.id),
    }
}

/// What `text` looks in: From, To, Cc, Bcc, Subject and the preview.
fn text_fields(r: &EmailRecord) -> Vec<String> {
    vec![
        addresses(&r.from),
        addresses(&r.to),
        addresses(&r.cc),
        addresses(&r.bcc),
        r.subject.clone().unwrap_or_default(),
        r.preview.clone(),
    ]
}

/// An address list as searchable text: `name <email>, …`.
pub(super) fn addresses(list: &[EmailAddress]) -> String {
    list.iter()
        .map(|a| match &a.name {
            Some(n) if !n.is_empty() => format!("{n} <{}>", a.email),
            _ => a.email.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn header_matches(r: &EmailRecord, name: &str, value: Option<&TextQuery>) -> bool {
    let block = r.header_bytes();
    let Some(m) = mail_parser::MessageParser::default().parse_headers(block) else {
        return false;
    };
    m.headers()
        .iter()
        .filter(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .any(|h| {
            let Some(q) = value else { return true };
            let raw = block
                .get(h.offset_start as usize..h.offset_end as usize)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let decoded = match &h.value {
                mail_parser::HeaderValue::Text(t) => t.to_string(),
                mail_parser::HeaderValue::TextList(l) => l.join(" "),
                _ => String::new(),
            };
            q.matches(&[raw.trim(), &decoded])
        })
}

/// Folds one character for case-insensitive matching (one char in, one char out, so that
/// positions in the folded text are positions in the original).
pub(super) fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// A search string split into terms (tokens and phrases), each folded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TextQuery {
    pub terms: Vec<Vec<char>>,
}

impl TextQuery {
    pub fn parse(s: &str) -> TextQuery {
        let mut terms = Vec::new();
        let mut chars = s.chars().peekable();
        let mut current: Vec<char> = Vec::new();
        while let Some(c) = chars.next() {
            if c == '"' || c == '\'' {
                if !current.is_empty() {
                    terms.push(std::mem::take(&mut current));
                }
                let quote = c;
                let mut phrase = Vec::new();
                while let Some(p) = chars.next() {
                    if p == '\\' {
                        if let Some(&n) = chars.peek()
                            && matches!(n, '\'' | '"' | '\\')
                        {
                            phrase.push(n);
                            chars.next();
                            continue;
                        }
                        phrase.push(p);
                    } else if p == quote {
                        break;
                    } else {
                        phrase.push(fold(p));
                    }
                }
                if !phrase.is_empty() {
                    terms.push(phrase);
                }
            } else if c.is_whitespace() {
                if !current.is_empty() {
                    terms.push(std::mem::take(&mut current));
                }
            } else {
                current.push(fold(c));
            }
        }
        if !current.is_empty() {
            terms.push(current);
        }
        TextQuery { terms }
    }

    /// The terms as strings (folded), e.g. for an upstream search.
    pub fn term_strings(&self) -> Vec<String> {
        self.terms.iter().map(|t| t.iter().collect()).collect()
    }

    /// Every term occurs in at least one of `fields`.
    pub fn matches(&self, fields: &[&str]) -> bool {
        let folded: Vec<Vec<char>> = fields
            .iter()
            .map(|f| f.chars().map(fold).collect())
            .collect();
        self.terms
            .iter()
            .all(|t| folded.iter().any(|f| find(f, t, 0).is_some()))
    }
}

/// The first index at or after `from` where `needle` occurs in `hay`.
pub(super) fn find(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
    if needle.is_empty() || needle.len() > hay.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn terms_and_phrases() {
        let q = TextQuery::parse(r#"Hello "big World" 'it\'s'"#);
        let s = |t: &str| t.chars().collect::<Vec<_>>();
        assert_eq!(q.terms, vec![s("hello"), s("big world"), s("it's")]);
        assert!(q.matches(&["HELLO there", "a Big World, it's"]));
        assert!(!q.matches(&["hello big  world it's"]));
        assert!(TextQuery::parse("  ").matches(&[""]));
    }
}
