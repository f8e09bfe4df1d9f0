//! Header field properties of RFC 8621 §4.1.2–4.1.3: `headers` (every field in Raw form)
//! and `header:{name}[:as{Form}][:all]`, over the header fields of a message or of one
//! body part.
//!
//! Which parsed forms a field may be fetched in is fixed by the RFC (`header:From:asDate`
//! is refused); [`HeaderProperty::parse`] checks that, so a request naming a forbidden
//! combination fails before anything is fetched. Values are parsed from the field's raw
//! octets with mail-parser's field parsers, except URLs and message ids, whose RFC rules
//! (null when parsing fails) are simple enough to follow exactly here.

use mail_parser::parsers::MessageStream;
use mail_parser::{Addr, Address, HeaderValue, MessageParser};
use serde_json::{Map, Value, json};

/// One header field as it appears in a message: the name with its original capitalization,
/// and the value's octets from after the colon up to and including the line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHeader {
    pub name: String,
    value: Vec<u8>,
}

impl RawHeader {
    /// A field named `name` whose raw value (after the colon) is `value`.
    pub fn new(name: impl Into<String>, value: &[u8]) -> RawHeader {
        let mut value = value.to_vec();
        if !value.ends_with(b"\n") {
            value.extend_from_slice(b"\r\n");
        }
        RawHeader {
            name: name.into(),
            value,
        }
    }

    /// The value's octets without the terminating line break (what Raw form is made of).
    pub fn raw_bytes(&self) -> &[u8] {
        let v = self.value.strip_suffix(b"\n").unwrap_or(&self.value);
        v.strip_suffix(b"\r").unwrap_or(v)
    }

    /// The Raw form (RFC 8621 §4.1.2.1): invalid UTF-8 replaced by U+FFFD, NUL dropped.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(self.raw_bytes()).replace('\0', "")
    }

    /// The value with its terminator, as mail-parser's field parsers expect it.
    fn with_terminator(&self) -> &[u8] {
        &self.value
    }
}

/// The fields of a header block (a message's header section, with or without the blank
/// line that ends it). Unparseable lines are skipped.
pub fn headers_of_block(block: &[u8]) -> Vec<RawHeader> {
    match MessageParser::default().parse_headers(block) {
        Some(m) => m
            .parts
            .first()
            .map(|p| fields(block, &p.headers))
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// The fields mail-parser found in `raw` (offsets index `raw`).
pub fn fields(raw: &[u8], headers: &[mail_parser::Header<'_>]) -> Vec<RawHeader> {
    headers
        .iter()
        .filter_map(|h| {
            let (field, start, end) = (
                h.offset_field as usize,
                h.offset_start as usize,
                h.offset_end as usize,
            );
            let name = raw.get(field..start)?;
            let name = name.strip_suffix(b":").unwrap_or(name);
            let name = String::from_utf8_lossy(name).trim().to_owned();
            if name.is_empty() {
                return None;
            }
            Some(RawHeader::new(name, raw.get(start..end.max(start))?))
        })
        .collect()
}

/// The `headers` property: every field, in order, as `EmailHeader` objects.
pub fn headers_json(headers: &[RawHeader]) -> Value {
    Value::Array(
        headers
            .iter()
            .map(|h| json!({ "name": h.name, "value": h.raw() }))
            .collect(),
    )
}

/// A parsed form of RFC 8621 §4.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Raw,
    Text,
    Addresses,
    GroupedAddresses,
    MessageIds,
    Date,
    Urls,
}

impl Form {
    fn from_suffix(s: &str) -> Option<Form> {
        Some(match s {
            "asRaw" => Form::Raw,
            "asText" => Form::Text,
            "asAddresses" => Form::Addresses,
            "asGroupedAddresses" => Form::GroupedAddresses,
            "asMessageIds" => Form::MessageIds,
            "asDate" => Form::Date,
            "asURLs" => Form::Urls,
            _ => return None,
        })
    }
}

/// Fields RFC 5322 and RFC 2369 define (lowercase): each may only be fetched in the forms the
/// RFC lists for it; any other field may be fetched in every form.
const DEFINED: [&str; 28] = [
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
    "comments",
    "keywords",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "resent-message-id",
    "return-path",
    "received",
    "list-help",
    "list-unsubscribe",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// Whether the RFC allows fetching field `name` in `form`.
pub fn form_allowed(name: &str, form: Form) -> bool {
    let name = name.to_ascii_lowercase();
    if form == Form::Raw || !DEFINED.contains(&name.as_str()) {
        return true;
    }
    let allowed: &[&str] = match form {
        Form::Raw => return true,
        Form::Text => &["subject", "comments", "keywords", "list-id"],
        Form::Addresses | Form::GroupedAddresses => &[
            "from",
            "sender",
            "reply-to",
            "to",
            "cc",
            "bcc",
            "resent-from",
            "resent-sender",
            "resent-reply-to",
            "resent-to",
            "resent-cc",
            "resent-bcc",
        ],
        Form::MessageIds => &[
            "message-id",
            "in-reply-to",
            "references",
            "resent-message-id",
        ],
        Form::Date => &["date", "resent-date"],
        Form::Urls => &[
            "list-help",
            "list-unsubscribe",
            "list-subscribe",
            "list-post",
            "list-owner",
            "list-archive",
        ],
    };
    allowed.contains(&name.as_str())
}

/// A `header:{name}[:as{Form}][:all]` property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderProperty {
    /// The field name as requested (matched case-insensitively).
    pub name: String,
    pub form: Form,
    pub all: bool,
}

impl HeaderProperty {
    /// `Ok(None)` when `property` is not a `header:` property at all; `Err` (a description
    /// for `invalidArguments`) when it is one but malformed or names a forbidden form.
    pub fn parse(property: &str) -> Result<Option<HeaderProperty>, String> {
        let Some(rest) = property.strip_prefix("header:") else {
            return Ok(None);
        };
        let mut pieces = rest.split(':');
        let name = pieces.next().unwrap_or_default();
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b)) {
            return Err(format!("'{property}': invalid header field name"));
        }
        let mut form = Form::Raw;
        let mut all = false;
        let mut next = pieces.next();
        if let Some(f) = next.and_then(Form::from_suffix) {
            form = f;
            next = pieces.next();
        }
        if next == Some("all") {
            all = true;
            next = pieces.next();
        }
        if let Some(extra) = next {
            return Err(format!("'{property}': unknown suffix ':{extra}'"));
        }
        if !form_allowed(name, form) {
            return Err(format!(
                "'{property}': the {name} header field cannot be fetched in that form"
            ));
        }
        Ok(Some(HeaderProperty {
            name: name.to_owned(),
            form,
            all,
        }))
    }

    /// The property's value over `headers`: the last instance (or null), or with `:all`
    /// every instance in order (or an empty array).
    pub fn value(&self, headers: &[RawHeader]) -> Value {
        let mut matching = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(&self.name));
        if self.all {
            Value::Array(matching.map(|h| form_value(h, self.form)).collect())
        } else {
            matching
                .next_back()
                .map_or(Value::Null, |h| form_value(h, self.form))
        }
    }
}

/// The value of the last field named `name` in `form` (the convenience properties:
/// `subject` is `header:Subject:asText` and so on).
pub fn last(headers: &[RawHeader], name: &str, form: Form) -> Value {
    HeaderProperty {
        name: name.to_owned(),
        form,
        all: false,
    }
    .value(headers)
}

/// One field in one form.
pub fn form_value(h: &RawHeader, form: Form) -> Value {
    match form {
        Form::Raw => Value::String(h.raw()),
        Form::Text => Value::String(text(h)),
        Form::Addresses => Value::Array(
            grouped(h)
                .into_iter()
                .flat_map(|(_, addrs)| addrs)
                .collect(),
        ),
        Form::GroupedAddresses => Value::Array(
            grouped(h)
                .into_iter()
                .map(|(name, addrs)| json!({ "name": name, "addresses": addrs }))
                .collect(),
        ),
        Form::MessageIds => message_ids(h.raw_bytes()).map_or(Value::Null, |ids| json!(ids)),
        Form::Date => date(h).map_or(Value::Null, Value::String),
        Form::Urls => urls(h.raw_bytes()).map_or(Value::Null, |u| json!(u)),
    }
}

/// Text form: unfolded, RFC 2047 encoded words decoded, leading spaces removed.
fn text(h: &RawHeader) -> String {
    match MessageStream::new(h.with_terminator()).parse_unstructured() {
        HeaderValue::Text(t) => t.trim_start_matches(' ').replace('\0', ""),
        HeaderValue::TextList(l) => l.join(" "),
        _ => String::new(),
    }
}

fn clean(s: Option<&str>) -> Option<String> {
    let s = s?.split_whitespace().collect::<Vec<_>>().join(" ");
    (!s.is_empty()).then_some(s)
}

fn email_address(a: &Addr<'_>) -> Option<Value> {
    let email = a.address.as_deref().map(str::trim).unwrap_or_default();
    let name = clean(a.name.as_deref());
    if email.is_empty() && name.is_none() {
        return None;
    }
    let mut o = Map::new();
    o.insert("name".into(), name.map_or(Value::Null, Value::String));
    o.insert("email".into(), Value::String(email.to_owned()));
    Some(Value::Object(o))
}

/// The address-list as (group name, EmailAddress objects); consecutive mailboxes outside any
/// group are one group with a null name.
fn grouped(h: &RawHeader) -> Vec<(Option<String>, Vec<Value>)> {
    match MessageStream::new(h.with_terminator()).parse_address() {
        HeaderValue::Address(Address::List(list)) => {
            let addrs: Vec<Value> = list.iter().filter_map(email_address).collect();
            if addrs.is_empty() {
                Vec::new()
            } else {
                vec![(None, addrs)]
            }
        }
        HeaderValue::Address(Address::Group(groups)) => {
            let mut out: Vec<(Option<String>, Vec<Value>)> = Vec::new();
            for g in groups {
                let name = clean(g.name.as_deref());
                let addrs: Vec<Value> = g.addresses.iter().filter_map(email_address).collect();
                // mail-parser may split ungrouped mailboxes into several unnamed groups.
                match out.last_mut() {
                    Some((None, prev)) if name.is_none() => prev.extend(addrs),
                    _ => out.push((name, addrs)),
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// Date form: the field as an RFC 3339 date-time keeping the field's own offset.
fn date(h: &RawHeader) -> Option<String> {
    match MessageStream::new(h.with_terminator()).parse_date() {
        HeaderValue::DateTime(d) if d.is_valid() => Some(d.to_rfc3339()),
        _ => None,
    }
}

/// Removes RFC 5322 comments (nested, with quoted-pairs) outside quoted strings and angle
/// brackets; `None` when a comment or quoted string is not closed.
fn strip_comments(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for &b in v {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(b);
            }
            continue;
        }
        match b {
            b'\\' if depth > 0 || quoted => escaped = true,
            b'(' if !quoted => depth += 1,
            b')' if !quoted && depth > 0 => depth -= 1,
            b'"' if depth == 0 => {
                quoted = !quoted;
                out.push(b);
            }
            _ if depth == 0 => out.push(b),
            _ => {}
        }
    }
    (depth == 0 && !quoted).then_some(out)
}

/// MessageIds form: the msg-ids without CFWS and angle brackets; null when the value is not
/// a list of msg-ids (a lone bare `id@host`, common from broken clients, is accepted).
pub fn message_ids(raw: &[u8]) -> Option<Vec<String>> {
    let v = strip_comments(raw)?;
    let v = String::from_utf8_lossy(&v);
    let mut ids = Vec::new();
    let mut rest = v.trim();
    if !rest.contains('<') {
        let bare = rest;
        return (!bare.is_empty()
            && bare.contains('@')
            && !bare.contains(char::is_whitespace)
            && !bare.contains('>'))
        .then(|| vec![bare.to_owned()]);
    }
    while !rest.is_empty() {
        let after = rest.strip_prefix('<')?;
        let end = after.find('>')?;
        let id: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if id.is_empty() || id.contains('<') {
            return None;
        }
        ids.push(id);
        rest = after[end + 1..].trim_start_matches(|c: char| c.is_whitespace() || c == ',');
    }
    (!ids.is_empty()).then_some(ids)
}

/// URLs form (RFC 2369): the angle-bracketed URLs, whitespace inside them removed, comments
/// dropped; null when there is none (e.g. `List-Post: NO`) or a bracket is not closed.
pub fn urls(raw: &[u8]) -> Option<Vec<String>> {
    let v = strip_comments(raw)?;
    let v = String::from_utf8_lossy(&v);
    let mut out = Vec::new();
    let mut rest = v.as_ref();
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>')?;
        let url: String = after[..end]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        if !url.is_empty() {
            out.push(url);
        }
        rest = &after[end + 1..];
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn block(s: &[u8]) -> Vec<RawHeader> {
        headers_of_block(s)
    }

    fn prop(p: &str) -> HeaderProperty {
        HeaderProperty::parse(p).unwrap().unwrap()
    }

    #[test]
    fn property_names_and_allowed_forms() {
        assert_eq!(HeaderProperty::parse("subject").unwrap(), None);
        let p = prop("header:Resent-To:asAddresses:all");
        assert_eq!(
            (p.name.as_str(), p.form, p.all),
            ("Resent-To", Form::Addresses, true)
        );
        let p = prop("header:X-Thing:all");
        assert_eq!((p.form, p.all), (Form::Raw, true));
        for bad in [
            "header:From:asDate",
            "header:Subject:asAddresses",
            "header:Date:asText",
            "header:Received:asText",
            "header:Return-Path:asMessageIds",
            "header:To:asURLs",
            "header:List-Post:asText",
            "header:Subject:all:asText",
            "header:Subject:asFoo",
            "header:",
            "header:Sub ject",
            "header:Subject:asText:all:x",
        ] {
            assert!(HeaderProperty::parse(bad).is_err(), "{bad}");
        }
        for good in [
            "header:subject:asText",
            "header:Keywords:asText",
            "header:List-Id:asText",
            "header:X-Custom:asDate",
            "header:X-Custom:asURLs",
            "header:Content-Type:asText",
            "header:References:asMessageIds:all",
            "header:Resent-Date:asDate",
            "header:List-Unsubscribe:asURLs",
            "header:From:asGroupedAddresses",
            "header:Received:asRaw:all",
        ] {
            assert!(HeaderProperty::parse(good).unwrap().is_some(), "{good}");
        }
    }

    #[test]
    fn raw_and_text_forms() {
        let h = block(
            b"Subject:  =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from\r\n  the =?iso-8859-1?q?caf=E9?=\r\n\
X-Bin: a\xffb\r\nsubject: second\r\n\r\n",
        );
        assert_eq!(h[0].name, "Subject");
        assert_eq!(
            prop("header:Subject:all").value(&h),
            json!([
                "  =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from\r\n  the =?iso-8859-1?q?caf=E9?=",
                " second"
            ])
        );
        assert_eq!(
            prop("header:SUBJECT:asText:all").value(&h),
            json!(["Grüße from the café", "second"])
        );
        assert_eq!(prop("header:subject:asText").value(&h), json!("second"));
        assert_eq!(prop("header:X-Bin").value(&h), json!(" a\u{fffd}b"));
        assert_eq!(prop("header:X-None").value(&h), Value::Null);
        assert_eq!(prop("header:X-None:all").value(&h), json!([]));
        assert_eq!(
            headers_json(&h)[1],
            json!({ "name": "X-Bin", "value": " a\u{fffd}b" })
        );
    }

    /// The address-list example of RFC 8621 §4.1.2.3 and §4.1.2.4.
    #[test]
    fn rfc_address_examples() {
        let h = block(
            b"To: \"  James Smythe\" <james@example.com>, Friends:\r\n  jane@example.com, =?UTF-8?Q?John_Sm=C3=AEth?=\r\n  <john@example.com>;\r\n\r\n",
        );
        assert_eq!(
            prop("header:To:asAddresses").value(&h),
            json!([
                { "name": "James Smythe", "email": "james@example.com" },
                { "name": null, "email": "jane@example.com" },
                { "name": "John Smîth", "email": "john@example.com" }
            ])
        );
        assert_eq!(
            prop("header:To:asGroupedAddresses").value(&h),
            json!([
                { "name": null, "addresses": [
                    { "name": "James Smythe", "email": "james@example.com" }
                ]},
                { "name": "Friends", "addresses": [
                    { "name": null, "email": "jane@example.com" },
                    { "name": "John Smîth", "email": "john@example.com" }
                ]}
            ])
        );
        let plain = block(b"From: a@example.com, \"B\" <b@example.com>\r\n\r\n");
        assert_eq!(
            prop("header:From:asGroupedAddresses").value(&plain),
            json!([{ "name": null, "addresses": [
                { "name": null, "email": "a@example.com" },
                { "name": "B", "email": "b@example.com" }
            ]}])
        );
    }

    #[test]
    fn message_ids_dates_and_urls() {
        let h = block(
            b"Message-ID: <m1@example.com>\r\nReferences: <r1@x.test>\r\n <r2@x.test> (comment)\r\n\
In-Reply-To: garbage words\r\nDate: Thu, 13 Feb 2014 15:02:04 +0800\r\nResent-Date: not a date\r\n\
List-Post: <mailto:list@example.com> (moderated)\r\nList-Help: NO\r\nList-Unsubscribe: <https://x.test/u?a=1>,\r\n <mailto:u@x.test>\r\n\r\n",
        );
        assert_eq!(
            prop("header:Message-ID:asMessageIds").value(&h),
            json!(["m1@example.com"])
        );
        assert_eq!(
            prop("header:References:asMessageIds").value(&h),
            json!(["r1@x.test", "r2@x.test"])
        );
        assert_eq!(
            prop("header:In-Reply-To:asMessageIds").value(&h),
            Value::Null
        );
        assert_eq!(
            prop("header:Date:asDate").value(&h),
            json!("2014-02-13T15:02:04+08:00")
        );
        assert_eq!(prop("header:Resent-Date:asDate").value(&h), Value::Null);
        assert_eq!(
            prop("header:List-POST:asURLs").value(&h),
            json!(["mailto:list@example.com"])
        );
        assert_eq!(prop("header:List-Help:asURLs").value(&h), Value::Null);
        assert_eq!(
            prop("header:List-Unsubscribe:asURLs").value(&h),
            json!(["https://x.test/u?a=1", "mailto:u@x.test"])
        );
        assert_eq!(
            message_ids(b" bare@id.test"),
            Some(vec!["bare@id.test".into()])
        );
    }
}
