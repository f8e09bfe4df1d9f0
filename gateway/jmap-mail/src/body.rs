//! The body of a message as RFC 8621 §4.1.4 presents it: the `bodyStructure` tree of
//! EmailBodyParts, the `textBody` / `htmlBody` / `attachments` lists, `bodyValues`, and the
//! octets behind each part's blobId. Pure functions over the raw RFC 5322 octets; MIME,
//! transfer and charset decoding are mail-parser's.
//!
//! # Ids
//!
//! - **partId**: IMAP-style section numbers. A single-part message's only part is `1`; the
//!   children of a multipart are numbered from 1 and nested ones joined with dots (`2.1`).
//!   They follow from the MIME structure alone, so the same message always gives the same
//!   ids (also across mail-parser upgrades). `message/rfc822` parts are not descended into.
//! - **Part blobId**: `B{source}_{partId with '.' as '-'}`, where `source` is the blob id of
//!   the whole message the part is in (see [`part_blob_id`]). The part id never holds `_`,
//!   so [`parse_part_blob_id`] splits at the last `_`, whatever the source id holds.
//! - **An Email's blobId** is its Email id: the sync driver caches the raw message in the
//!   blob cache under the Email id's bytes (`AccountSync::raw_message`), the same key the
//!   download endpoint uses for a blob id, so a cached message downloads as is. A part of
//!   an Email whose message is not cached is fetched alone and its decoded octets cached
//!   under its part blob id (`AccountSync::raw_part`, [`entity_part_bytes`]).
//! - An uploaded message (`G…`) parsed with Email/parse gives parts `B{G…}_{partId}`; an
//!   attached message's part blob can itself be parsed, giving `BB{…}_{partId}_{partId}`.
//!
//! Broken MIME renders what can be rendered: a multipart without a usable boundary becomes a
//! text/plain leaf with its raw body, and failed transfer or charset decoding is reported as
//! `isEncodingProblem` on the part's body value.

use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderValue, Message, MessageParser, MimeHeaders, PartType};
use serde_json::{Map, Value, json};

use crate::header_forms::{self, HeaderProperty, RawHeader};

/// Nesting deeper than this is not descended into (hostile input).
const MAX_DEPTH: usize = 64;

/// Longest `preview`, in characters (RFC 8621 §4.1.4).
const PREVIEW_CHARS: usize = 256;

/// The default `bodyProperties` of Email/get and Email/parse.
pub const DEFAULT_BODY_PROPERTIES: [&str; 10] = [
    "partId",
    "blobId",
    "size",
    "name",
    "type",
    "charset",
    "disposition",
    "cid",
    "language",
    "location",
];

/// The blob id of part `part_id` of the message whose own blob id is `source`.
pub fn part_blob_id(source: &str, part_id: &str) -> String {
    format!("B{source}_{}", part_id.replace('.', "-"))
}

/// The (source blob id, partId) of a part blob id; `None` for any other id.
pub fn parse_part_blob_id(blob_id: &str) -> Option<(&str, String)> {
    let (source, part) = blob_id.strip_prefix('B')?.rsplit_once('_')?;
    let valid = !source.is_empty()
        && !part.is_empty()
        && part
            .split('-')
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
    valid.then(|| (source, part.replace('-', ".")))
}

/// The octets of part `part_id` after transfer decoding, and its media type (for the
/// download endpoint serving a part blob). `None` when the message has no such leaf part.
pub fn part_bytes(raw: &[u8], part_id: &str) -> Option<(Vec<u8>, String)> {
    let body = Body::parse_lenient(raw, "");
    let part = body
        .parts
        .into_iter()
        .find(|p| p.part_id.as_deref() == Some(part_id))?;
    Some((part.content, part.content_type))
}

/// The octets after transfer decoding and the media type of a part fetched on its own as a
/// standalone MIME entity (its header fields, the empty line, its body as stored; see
/// `upstream::Upstream::fetch_part`): what [`part_bytes`] gives for that part of the whole
/// message. `None` when the entity cannot tell on its own: it is a multipart (which has
/// no content), or it has no Content-Type, whose default depends on the parent
/// (`message/rfc822` in a `multipart/digest`, else `text/plain`). The caller then cuts
/// the part out of the whole message instead.
pub fn entity_part_bytes(entity: &[u8]) -> Option<(Vec<u8>, String)> {
    let body = Body::parse(entity, "")?;
    let root = body.parts.into_iter().next()?;
    let typed = root
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("Content-Type"));
    // A leaf root is part 1; a multipart root has no part id.
    (typed && root.part_id.as_deref() == Some("1")).then_some((root.content, root.content_type))
}

/// One EmailBodyPart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPart {
    /// `None` exactly for `multipart/*`.
    pub part_id: Option<String>,
    pub blob_id: Option<String>,
    pub size: u64,
    pub headers: Vec<RawHeader>,
    pub name: Option<String>,
    pub content_type: String,
    pub charset: Option<String>,
    pub disposition: Option<String>,
    pub cid: Option<String>,
    pub language: Option<Vec<String>>,
    pub location: Option<String>,
    /// Indexes into [`Body::parts`]; `Some` exactly for `multipart/*`.
    pub sub_parts: Option<Vec<usize>>,
    /// The octets after transfer decoding (leaves only).
    content: Vec<u8>,
    /// Unknown or malformed transfer encoding, or MIME structure that had to be repaired.
    decoding_problem: bool,
}

impl BodyPart {
    fn is_multipart(&self) -> bool {
        self.sub_parts.is_some()
    }
}

/// The decoded text of a `text/*` part: an EmailBodyValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyValue {
    pub value: String,
    pub is_encoding_problem: bool,
    pub is_truncated: bool,
}

/// Which parts get a body value, and how long values may be (Email/get's fetch arguments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ValueOptions {
    pub fetch_text: bool,
    pub fetch_html: bool,
    pub fetch_all: bool,
    /// 0 means no truncation.
    pub max_bytes: u64,
}

/// An EmailBodyPart property a client may ask for in `bodyProperties`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyProperty {
    PartId,
    BlobId,
    Size,
    Headers,
    Name,
    Type,
    Charset,
    Disposition,
    Cid,
    Language,
    Location,
    SubParts,
    /// `header:…`, with the property name as asked (the response key).
    Header(String, HeaderProperty),
}

impl BodyProperty {
    /// Checks `bodyProperties` (default when `None`); `Err` is an `invalidArguments`
    /// description.
    pub fn parse_list(list: Option<&[String]>) -> Result<Vec<BodyProperty>, String> {
        let default: Vec<String>;
        let list = match list {
            Some(l) => l,
            None => {
                default = DEFAULT_BODY_PROPERTIES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                &default
            }
        };
        let mut out: Vec<BodyProperty> = Vec::with_capacity(list.len());
        for p in list {
            let prop = match p.as_str() {
                "partId" => BodyProperty::PartId,
                "blobId" => BodyProperty::BlobId,
                "size" => BodyProperty::Size,
                "headers" => BodyProperty::Headers,
                "name" => BodyProperty::Name,
                "type" => BodyProperty::Type,
                "charset" => BodyProperty::Charset,
                "disposition" => BodyProperty::Disposition,
                "cid" => BodyProperty::Cid,
                "language" => BodyProperty::Language,
                "location" => BodyProperty::Location,
                "subParts" => BodyProperty::SubParts,
                other => match HeaderProperty::parse(other)? {
                    Some(h) => BodyProperty::Header(other.to_owned(), h),
                    None => return Err(format!("unknown body property '{other}'")),
                },
            };
            if !out.contains(&prop) {
                out.push(prop);
            }
        }
        Ok(out)
    }
}

/// A parsed message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    /// Every part, depth first; index 0 is the root (`bodyStructure`).
    pub parts: Vec<BodyPart>,
    pub text_body: Vec<usize>,
    pub html_body: Vec<usize>,
    pub attachments: Vec<usize>,
}

impl Body {
    /// Parses `raw`, naming part blobs after `source` (the message's own blob id). `None`
    /// when mail-parser finds no message at all (no header field, no body).
    pub fn parse(raw: &[u8], source: &str) -> Option<Body> {
        let message = MessageParser::default().parse(raw)?;
        let mut parts = Vec::new();
        build(&message, raw, 0, None, false, 0, source, &mut parts);
        let mut body = Body {
            parts,
            text_body: Vec::new(),
            html_body: Vec::new(),
            attachments: Vec::new(),
        };
        body.flatten();
        Some(body)
    }

    /// Like [`Body::parse`], but always gives a body: octets mail-parser cannot read as a
    /// message are presented as one text/plain part (Email/get must render something).
    pub fn parse_lenient(raw: &[u8], source: &str) -> Body {
        if let Some(body) = Body::parse(raw, source) {
            return body;
        }
        let part = BodyPart {
            part_id: Some("1".into()),
            blob_id: Some(part_blob_id(source, "1")),
            size: raw.len() as u64,
            headers: Vec::new(),
            name: None,
            content_type: "text/plain".into(),
            charset: Some("us-ascii".into()),
            disposition: None,
            cid: None,
            language: None,
            location: None,
            sub_parts: None,
            content: raw.to_vec(),
            decoding_problem: true,
        };
        Body {
            parts: vec![part],
            text_body: vec![0],
            html_body: vec![0],
            attachments: Vec::new(),
        }
    }

    /// The message's own header fields (the root part's).
    pub fn headers(&self) -> &[RawHeader] {
        self.parts.first().map_or(&[], |p| p.headers.as_slice())
    }

    /// `hasAttachment` as RFC 8621 suggests: some part in `attachments` is not
    /// `Content-Disposition: inline`.
    pub fn has_attachment(&self) -> bool {
        self.attachments
            .iter()
            .filter_map(|&i| self.parts.get(i))
            .any(|p| p.disposition.as_deref() != Some("inline"))
    }

    /// A plaintext `preview` of at most 256 characters: the first text part of `textBody`
    /// (HTML reduced to its text), white space collapsed.
    pub fn preview(&self) -> String {
        let Some(part) = self
            .text_body
            .iter()
            .filter_map(|&i| self.parts.get(i))
            .find(|p| p.content_type == "text/plain" || p.content_type == "text/html")
        else {
            return String::new();
        };
        let (text, _) = decode_text(&part.content, part.charset.as_deref());
        let text = if part.content_type == "text/html" {
            html_text(&text)
        } else {
            text
        };
        let mut out = String::new();
        for (n, word) in text.split_whitespace().enumerate() {
            if n > 0 {
                out.push(' ');
            }
            out.push_str(word);
            if out.chars().count() >= PREVIEW_CHARS {
                break;
            }
        }
        out.chars().take(PREVIEW_CHARS).collect()
    }

    /// The decoded value of part `index` if it is a `text/*` leaf.
    pub fn value(&self, index: usize, max_bytes: u64) -> Option<BodyValue> {
        let part = self.parts.get(index)?;
        if part.is_multipart() || !part.content_type.starts_with("text/") {
            return None;
        }
        let (text, charset_problem) = decode_text(&part.content, part.charset.as_deref());
        let mut value = text.replace("\r\n", "\n");
        let mut is_truncated = false;
        let max = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        if max > 0 && value.len() > max {
            let mut cut = max;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            if part.content_type == "text/html"
                && let Some(open) = value[..cut].rfind('<')
                && !value[open..cut].contains('>')
            {
                cut = open;
            }
            value.truncate(cut);
            is_truncated = true;
        }
        Some(BodyValue {
            value,
            is_encoding_problem: charset_problem || part.decoding_problem,
            is_truncated,
        })
    }

    /// The `bodyValues` map for `options`.
    pub fn values_json(&self, options: ValueOptions) -> Value {
        let mut chosen: Vec<usize> = Vec::new();
        if options.fetch_all {
            chosen.extend(0..self.parts.len());
        }
        if options.fetch_text {
            chosen.extend(&self.text_body);
        }
        if options.fetch_html {
            chosen.extend(&self.html_body);
        }
        let mut out = Map::new();
        for i in chosen {
            let Some(part_id) = self.parts.get(i).and_then(|p| p.part_id.clone()) else {
                continue;
            };
            if out.contains_key(&part_id) {
                continue;
            }
            if let Some(v) = self.value(i, options.max_bytes) {
                out.insert(
                    part_id,
                    json!({
                        "value": v.value,
                        "isEncodingProblem": v.is_encoding_problem,
                        "isTruncated": v.is_truncated,
                    }),
                );
            }
        }
        Value::Object(out)
    }

    /// Part `index` as an EmailBodyPart object with `props`.
    pub fn part_json(&self, index: usize, props: &[BodyProperty]) -> Value {
        let Some(p) = self.parts.get(index) else {
            return Value::Null;
        };
        let opt = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
        let mut o = Map::new();
        for prop in props {
            let (key, value) = match prop {
                BodyProperty::PartId => ("partId", opt(&p.part_id)),
                BodyProperty::BlobId => ("blobId", opt(&p.blob_id)),
                BodyProperty::Size => ("size", json!(p.size)),
                BodyProperty::Headers => ("headers", header_forms::headers_json(&p.headers)),
                BodyProperty::Name => ("name", opt(&p.name)),
                BodyProperty::Type => ("type", json!(p.content_type)),
                BodyProperty::Charset => ("charset", opt(&p.charset)),
                BodyProperty::Disposition => ("disposition", opt(&p.disposition)),
                BodyProperty::Cid => ("cid", opt(&p.cid)),
                BodyProperty::Language => ("language", json!(p.language)),
                BodyProperty::Location => ("location", opt(&p.location)),
                BodyProperty::SubParts => (
                    "subParts",
                    p.sub_parts.as_ref().map_or(Value::Null, |subs| {
                        Value::Array(subs.iter().map(|&i| self.part_json(i, props)).collect())
                    }),
                ),
                BodyProperty::Header(key, h) => {
                    o.insert(key.clone(), h.value(&p.headers));
                    continue;
                }
            };
            o.insert(key.to_owned(), value);
        }
        Value::Object(o)
    }

    /// A list of parts (`textBody`, `htmlBody`, `attachments`) as EmailBodyPart objects.
    pub fn list_json(&self, list: &[usize], props: &[BodyProperty]) -> Value {
        Value::Array(list.iter().map(|&i| self.part_json(i, props)).collect())
    }

    /// textBody, htmlBody and attachments by the algorithm RFC 8621 §4.1.4 suggests.
    fn flatten(&mut self) {
        let mut text = Vec::new();
        let mut html = Vec::new();
        let mut attachments = Vec::new();
        if !self.parts.is_empty() {
            self.walk(
                &[0],
                "mixed",
                false,
                Some(&mut html),
                Some(&mut text),
                &mut attachments,
            );
        }
        self.text_body = text;
        self.html_body = html;
        self.attachments = attachments;
    }

    fn walk(
        &self,
        parts: &[usize],
        multipart_type: &str,
        in_alternative: bool,
        html_body: Option<&mut Vec<usize>>,
        text_body: Option<&mut Vec<usize>>,
        attachments: &mut Vec<usize>,
    ) {
        let mut html_body = html_body;
        let mut text_body = text_body;
        let text_length = text_body.as_ref().map(|t| t.len());
        let html_length = html_body.as_ref().map(|h| h.len());
        for (i, &index) in parts.iter().enumerate() {
            let Some(part) = self.parts.get(index) else {
                continue;
            };
            let ty = part.content_type.as_str();
            let inline_media = is_inline_media(ty);
            let is_inline = part.disposition.as_deref() != Some("attachment")
                && (ty == "text/plain" || ty == "text/html" || inline_media)
                && (i == 0
                    || (multipart_type != "related" && (inline_media || part.name.is_none())));
            if let Some(subs) = &part.sub_parts {
                let sub_type = ty.split_once('/').map_or("", |(_, s)| s);
                self.walk(
                    subs,
                    sub_type,
                    in_alternative || sub_type == "alternative",
                    html_body.as_deref_mut(),
                    text_body.as_deref_mut(),
                    attachments,
                );
            } else if is_inline {
                if multipart_type == "alternative" {
                    match ty {
                        "text/plain" => {
                            if let Some(t) = text_body.as_deref_mut() {
                                t.push(index);
                            }
                        }
                        "text/html" => {
                            if let Some(h) = html_body.as_deref_mut() {
                                h.push(index);
                            }
                        }
                        _ => attachments.push(index),
                    }
                    continue;
                } else if in_alternative {
                    if ty == "text/plain" {
                        html_body = None;
                    }
                    if ty == "text/html" {
                        text_body = None;
                    }
                }
                if let Some(t) = text_body.as_deref_mut() {
                    t.push(index);
                }
                if let Some(h) = html_body.as_deref_mut() {
                    h.push(index);
                }
                if (text_body.is_none() || html_body.is_none()) && inline_media {
                    attachments.push(index);
                }
            } else {
                attachments.push(index);
            }
        }
        if multipart_type == "alternative"
            && let (Some(text), Some(html)) = (text_body, html_body)
        {
            let (text_before, html_before) = (text_length.unwrap_or(0), html_length.unwrap_or(0));
            // Only an HTML version: the text body shows it too.
            if text.len() == text_before && html.len() != html_before {
                text.extend_from_slice(&html[html_before..]);
            }
            // Only a plain-text version: the HTML body shows it too.
            if html.len() == html_before && text.len() != text_before {
                html.extend_from_slice(&text[text_before..]);
            }
        }
    }
}

fn is_inline_media(ty: &str) -> bool {
    ty.starts_with("image/") || ty.starts_with("audio/") || ty.starts_with("video/")
}

/// Adds mail-parser part `index` of `message` (and its subtree) to `out`; returns its index
/// there. `path` is the section number of this part (`None` for the root).
#[allow(clippy::too_many_arguments)]
fn build(
    message: &Message<'_>,
    raw: &[u8],
    index: usize,
    path: Option<&str>,
    in_digest: bool,
    depth: usize,
    source: &str,
    out: &mut Vec<BodyPart>,
) -> usize {
    let at = out.len();
    let Some(part) = message.parts.get(index) else {
        return at;
    };
    let headers = header_forms::fields(raw, &part.headers);
    let ct = part.content_type();
    let mut content_type = match ct {
        Some(ct) => {
            let main = ct.ctype().trim().to_ascii_lowercase();
            match ct.subtype() {
                Some(sub) => format!("{main}/{}", sub.trim().to_ascii_lowercase()),
                None => main,
            }
        }
        None if in_digest => "message/rfc822".to_owned(),
        None => "text/plain".to_owned(),
    };
    let mut charset = match ct {
        Some(ct) => ct.attribute("charset").map(str::to_owned).or_else(|| {
            content_type
                .starts_with("text/")
                .then(|| "us-ascii".to_owned())
        }),
        None => Some("us-ascii".to_owned()),
    };
    let body_range =
        (part.offset_body as usize)..(part.offset_end as usize).max(part.offset_body as usize);
    let raw_body = raw.get(body_range).unwrap_or_default();
    let mut node = BodyPart {
        part_id: None,
        blob_id: None,
        size: 0,
        headers,
        name: part.attachment_name().map(str::to_owned),
        content_type: String::new(),
        charset: None,
        disposition: part
            .content_disposition()
            .map(|d| d.ctype().trim().to_ascii_lowercase()),
        cid: part
            .content_id()
            .map(|c| {
                c.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
            .filter(|c| !c.is_empty()),
        language: match part.content_language() {
            HeaderValue::Text(t) => Some(vec![t.trim().to_owned()]),
            HeaderValue::TextList(l) => Some(l.iter().map(|t| t.trim().to_owned()).collect()),
            _ => None,
        },
        location: part
            .content_location()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty()),
        sub_parts: None,
        content: Vec::new(),
        decoding_problem: part.is_encoding_problem,
    };
    match &part.body {
        PartType::Multipart(children) if content_type.starts_with("multipart/") => {
            node.size = raw_body.len() as u64;
            node.charset = None;
            node.content_type = content_type.clone();
            out.push(node);
            let digest = content_type == "multipart/digest";
            let mut subs = Vec::with_capacity(children.len());
            if depth < MAX_DEPTH {
                for (n, &child) in children.iter().enumerate() {
                    let child_path = match path {
                        Some(p) => format!("{p}.{}", n + 1),
                        None => format!("{}", n + 1),
                    };
                    if (child as usize) <= index {
                        continue; // never loop back
                    }
                    subs.push(build(
                        message,
                        raw,
                        child as usize,
                        Some(&child_path),
                        digest,
                        depth + 1,
                        source,
                        out,
                    ));
                }
            }
            if let Some(n) = out.get_mut(at) {
                n.sub_parts = Some(subs);
            }
            return at;
        }
        _ => {}
    }
    if content_type.starts_with("multipart/") {
        // Declared multipart but no usable boundary: shown as its raw text.
        content_type = "text/plain".to_owned();
        charset = Some("us-ascii".to_owned());
        node.decoding_problem = true;
    }
    let part_id = path.unwrap_or("1").to_owned();
    let (content, transfer_problem) = transfer_decode(part, raw_body);
    node.size = content.len() as u64;
    node.content = content;
    node.decoding_problem |= transfer_problem;
    node.blob_id = Some(part_blob_id(source, &part_id));
    node.part_id = Some(part_id);
    node.content_type = content_type;
    node.charset = charset;
    out.push(node);
    at
}

/// The part's body after Content-Transfer-Encoding, and whether the encoding was unknown or
/// the data malformed (then the octets are given undecoded).
fn transfer_decode(part: &mail_parser::MessagePart<'_>, raw_body: &[u8]) -> (Vec<u8>, bool) {
    let declared = part
        .content_transfer_encoding()
        .map(|e| e.trim().to_ascii_lowercase());
    let unknown = declared.as_deref().is_some_and(|e| {
        !matches!(
            e,
            "7bit" | "8bit" | "binary" | "base64" | "quoted-printable" | ""
        )
    });
    let decoded = match part.encoding {
        Encoding::Base64 => MessageStream::new(raw_body).decode_base64_mime(b""),
        Encoding::QuotedPrintable => MessageStream::new(raw_body).decode_quoted_printable_mime(b""),
        Encoding::None => return (raw_body.to_vec(), unknown),
    };
    match decoded {
        (usize::MAX, _) => (raw_body.to_vec(), true),
        (_, bytes) => (bytes.into_owned(), unknown),
    }
}

/// Charset decoding (mail-parser's tables) of a text part's octets; the flag says the
/// charset was unknown or the octets malformed for it. Without a charset (or with
/// US-ASCII), valid UTF-8 is taken as such and anything else as Windows-1252.
fn decode_text(bytes: &[u8], charset: Option<&str>) -> (String, bool) {
    let charset = charset.map(|c| c.trim().trim_matches('"').to_ascii_lowercase());
    match charset.as_deref() {
        None | Some("us-ascii" | "ascii" | "") => match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), false),
            Err(_) => match charset_decoder(b"windows-1252") {
                Some(decode) => (decode(bytes), true),
                None => (String::from_utf8_lossy(bytes).into_owned(), true),
            },
        },
        Some("utf-8" | "utf8") => match std::str::from_utf8(bytes) {
            Ok(s) => (s.to_owned(), false),
            Err(_) => (String::from_utf8_lossy(bytes).into_owned(), true),
        },
        Some(name) => match charset_decoder(name.as_bytes()) {
            Some(decode) => {
                let s = decode(bytes);
                let had_replacement = bytes.windows(3).any(|w| w == "\u{fffd}".as_bytes());
                let problem = s.contains('\u{fffd}') && !had_replacement;
                (s, problem)
            }
            None => (String::from_utf8_lossy(bytes).into_owned(), true),
        },
    }
}

/// The text of an HTML document for a preview: tags, comments, style and script dropped, a
/// few common entities decoded.
fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        out.push(' ');
        let tag = &rest[lt..];
        let lower: String = tag.chars().take(8).collect::<String>().to_ascii_lowercase();
        let skip_to = if lower.starts_with("<!--") {
            tag.find("-->").map(|e| e + 3)
        } else if lower.starts_with("<style") || lower.starts_with("<script") {
            let close = if lower.starts_with("<style") {
                "</style"
            } else {
                "</script"
            };
            tag.to_ascii_lowercase()
                .find(close)
                .and_then(|c| tag[c..].find('>').map(|e| c + e + 1))
        } else {
            tag.find('>').map(|e| e + 1)
        };
        match skip_to {
            Some(n) => rest = &tag[n..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A message written with `\n` line ends, sent with CRLF.
    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn ids(body: &Body, list: &[usize]) -> Vec<String> {
        list.iter()
            .map(|&i| body.parts[i].part_id.clone().unwrap_or_default())
            .collect()
    }

    fn part<'a>(body: &'a Body, part_id: &str) -> &'a BodyPart {
        body.parts
            .iter()
            .find(|p| p.part_id.as_deref() == Some(part_id))
            .unwrap()
    }

    fn all_props() -> Vec<BodyProperty> {
        let mut props = BodyProperty::parse_list(None).unwrap();
        props.push(BodyProperty::SubParts);
        props
    }

    /// The list-manager example of RFC 8621 §4.1.4: textBody A B C D K, htmlBody A E K,
    /// attachments C F G H J.
    #[test]
    fn rfc_decomposition_example() {
        let raw = crlf(
            "Subject: example\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
--b1\nContent-Type: text/plain\nContent-Disposition: inline\n\nA\n\
--b1\nContent-Type: multipart/mixed; boundary=\"b2\"\n\n\
--b2\nContent-Type: multipart/alternative; boundary=\"b3\"\n\n\
--b3\nContent-Type: multipart/mixed; boundary=\"b4\"\n\n\
--b4\nContent-Type: text/plain\nContent-Disposition: inline\n\nB\n\
--b4\nContent-Type: image/jpeg\nContent-Disposition: inline\n\nC\n\
--b4\nContent-Type: text/plain\nContent-Disposition: inline\n\nD\n\
--b4--\n\
--b3\nContent-Type: multipart/related; boundary=\"b5\"\n\n\
--b5\nContent-Type: text/html\n\nE\n\
--b5\nContent-Type: image/jpeg\n\nF\n\
--b5--\n\
--b3--\n\
--b2\nContent-Type: image/jpeg\nContent-Disposition: attachment\n\nG\n\
--b2\nContent-Type: application/x-excel\n\nH\n\
--b2\nContent-Type: message/rfc822\n\nSubject: J\n\nJ\n\
--b2--\n\
--b1\nContent-Type: text/plain\nContent-Disposition: inline\n\nK\n\
--b1--\n",
        );
        let body = Body::parse(&raw, "Eabc").unwrap();
        let (a, b, c, d, e, f, g, h, j, k) = (
            "1", "2.1.1.1", "2.1.1.2", "2.1.1.3", "2.1.2.1", "2.1.2.2", "2.2", "2.3", "2.4", "3",
        );
        assert_eq!(ids(&body, &body.text_body), [a, b, c, d, k]);
        assert_eq!(ids(&body, &body.html_body), [a, e, k]);
        assert_eq!(ids(&body, &body.attachments), [c, f, g, h, j]);
        assert_eq!(String::from_utf8_lossy(&part(&body, e).content), "E");
        assert_eq!(part(&body, j).content_type, "message/rfc822");
        assert_eq!(
            String::from_utf8_lossy(&part(&body, j).content),
            "Subject: J\r\n\r\nJ"
        );
        assert_eq!(part(&body, g).disposition.as_deref(), Some("attachment"));
        assert_eq!(part(&body, h).charset, None);
        assert!(body.has_attachment());

        let tree = body.part_json(0, &all_props());
        assert_eq!(tree["partId"], Value::Null);
        assert_eq!(tree["blobId"], Value::Null);
        assert_eq!(tree["type"], "multipart/mixed");
        assert_eq!(
            tree["subParts"][1]["subParts"][0]["type"],
            "multipart/alternative"
        );
        assert_eq!(tree["subParts"][0]["blobId"], "BEabc_1");
        assert_eq!(
            tree["subParts"][1]["subParts"][0]["subParts"][0]["subParts"][1]["blobId"],
            "BEabc_2-1-1-2"
        );
        assert_eq!(tree["subParts"][2]["subParts"], Value::Null);
    }

    #[test]
    fn alternative_text_and_html_with_values() {
        let raw = crlf(
            "From: a@example.com\nContent-Type: multipart/alternative; boundary=x\n\n\
--x\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
Gr=C3=BC=C3=9Fe,\nline two\n\
--x\nContent-Type: text/html; charset=utf-8\n\n<p>Gr\u{fc}\u{df}e</p>\n\
--x--\n",
        );
        let body = Body::parse(&raw, "Eabc").unwrap();
        assert_eq!(ids(&body, &body.text_body), ["1"]);
        assert_eq!(ids(&body, &body.html_body), ["2"]);
        assert!(body.attachments.is_empty());
        assert!(!body.has_attachment());
        assert_eq!(body.preview(), "Grüße, line two");

        let text_only = body.values_json(ValueOptions {
            fetch_text: true,
            ..Default::default()
        });
        assert_eq!(
            text_only,
            json!({ "1": { "value": "Grüße,\nline two", "isEncodingProblem": false, "isTruncated": false } })
        );
        let html_only = body.values_json(ValueOptions {
            fetch_html: true,
            ..Default::default()
        });
        assert_eq!(html_only["2"]["value"], "<p>Grüße</p>");
        assert!(html_only.get("1").is_none());
        let all = body.values_json(ValueOptions {
            fetch_all: true,
            ..Default::default()
        });
        assert_eq!(all.as_object().unwrap().len(), 2);
        assert_eq!(part(&body, "1").size, "Grüße,\r\nline two".len() as u64);
    }

    #[test]
    fn only_html_in_alternative_serves_both_lists() {
        let raw = crlf(
            "Content-Type: multipart/alternative; boundary=x\n\n\
--x\nContent-Type: text/html\n\n<b>hi</b> &amp; bye\n--x--\n",
        );
        let body = Body::parse(&raw, "E1").unwrap();
        assert_eq!(ids(&body, &body.text_body), ["1"]);
        assert_eq!(ids(&body, &body.html_body), ["1"]);
        assert_eq!(body.preview(), "hi & bye");
    }

    #[test]
    fn attachment_names_rfc2231_and_rfc2047() {
        let raw = crlf(
            "Content-Type: multipart/mixed; boundary=x\n\n\
--x\nContent-Type: text/plain\n\nsee attached\n\
--x\nContent-Type: application/pdf\nContent-Disposition: attachment;\n filename*=utf-8''R%C3%A9sum%C3%A9%20final.pdf\n\
Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n\
--x\nContent-Type: text/plain; name=\"=?iso-8859-1?q?r=E9ponse.txt?=\"\nContent-Language: de, en-GB\n\
Content-Location: https://example.com/r.txt\n\nbody\n\
--x\nContent-Type: application/octet-stream\nContent-Disposition: attachment;\n filename*0*=utf-8''long%20;\n filename*1*=name.bin\n\nxx\n\
--x--\n",
        );
        let body = Body::parse(&raw, "E1").unwrap();
        let pdf = part(&body, "2");
        assert_eq!(pdf.name.as_deref(), Some("Résumé final.pdf"));
        assert_eq!(pdf.content, b"%PDF-1.4\n");
        assert_eq!(pdf.size, 9);
        assert_eq!(pdf.charset, None);
        let txt = part(&body, "3");
        assert_eq!(txt.name.as_deref(), Some("réponse.txt"));
        assert_eq!(
            txt.language,
            Some(vec!["de".to_owned(), "en-GB".to_owned()])
        );
        assert_eq!(txt.location.as_deref(), Some("https://example.com/r.txt"));
        assert_eq!(txt.charset.as_deref(), Some("us-ascii"));
        assert_eq!(part(&body, "4").name.as_deref(), Some("long name.bin"));
        // A named text part after the first is an attachment, not body.
        assert_eq!(ids(&body, &body.text_body), ["1"]);
        assert_eq!(ids(&body, &body.attachments), ["2", "3", "4"]);
        assert!(body.has_attachment());
    }

    #[test]
    fn inline_image_in_related() {
        let raw = crlf(
            "Content-Type: multipart/related; boundary=r\n\n\
--r\nContent-Type: text/html; charset=us-ascii\n\n<img src=\"cid:logo@x\">\n\
--r\nContent-Type: image/png\nContent-ID: < logo@x >\nContent-Disposition: inline\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n\
--r--\n",
        );
        let body = Body::parse(&raw, "E1").unwrap();
        assert_eq!(ids(&body, &body.html_body), ["1"]);
        assert_eq!(ids(&body, &body.text_body), ["1"]);
        assert_eq!(ids(&body, &body.attachments), ["2"]);
        let img = part(&body, "2");
        assert_eq!(img.cid.as_deref(), Some("logo@x"));
        assert_eq!(img.content, b"\x89PNG\r\n\x1a\n");
        // Its only attachment is inline: nothing to offer as a download.
        assert!(!body.has_attachment());
    }

    #[test]
    fn legacy_charsets() {
        let raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\n\
--x\r\nContent-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe caf=E9\r\n\
--x\r\nContent-Type: text/plain; charset=windows-1252\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\ngCA1IJN4lA==\r\n\
--x\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n\r\nna\xefve\r\n\
--x--\r\n";
        let body = Body::parse(raw, "E1").unwrap();
        let v = |id: &str| {
            let i = body
                .parts
                .iter()
                .position(|p| p.part_id.as_deref() == Some(id))
                .unwrap();
            body.value(i, 0).unwrap()
        };
        assert_eq!(v("1").value, "Grüße café");
        assert_eq!(v("2").value, "€ 5 “x”");
        assert_eq!(v("3").value, "naïve");
        assert!(!v("1").is_encoding_problem && !v("2").is_encoding_problem);
        // The blob is the transfer-decoded octets, not re-encoded text.
        assert_eq!(part(&body, "1").content, b"Gr\xfc\xdfe caf\xe9");
    }

    #[test]
    fn truncation_respects_characters_and_tags() {
        let raw = crlf(
            "Content-Type: multipart/mixed; boundary=x\n\n\
--x\nContent-Type: text/plain; charset=utf-8\n\nh\u{e9}llo w\u{f6}rld\n\
--x\nContent-Type: text/html; charset=utf-8\nContent-Disposition: inline\n\n<p>ab <a href=\"https://example.com\">x</a></p>\n\
--x--\n",
        );
        let body = Body::parse(&raw, "E1").unwrap();
        // "hé" is 3 octets: 2 would split the é.
        let t = body.value(1, 2).unwrap();
        assert_eq!((t.value.as_str(), t.is_truncated), ("h", true));
        let t = body.value(1, 3).unwrap();
        assert_eq!(t.value, "hé");
        let t = body.value(1, 100).unwrap();
        assert_eq!((t.value.as_str(), t.is_truncated), ("héllo wörld", false));
        // Not inside <a href=…>.
        let h = body.value(2, 20).unwrap();
        assert_eq!((h.value.as_str(), h.is_truncated), ("<p>ab ", true));
    }

    #[test]
    fn broken_mime_still_renders() {
        // Multipart without a boundary parameter.
        let raw = crlf("Subject: x\nContent-Type: multipart/mixed\n\nsome text\n");
        let body = Body::parse(&raw, "E1").unwrap();
        assert_eq!(body.parts.len(), 1);
        assert_eq!(body.parts[0].content_type, "text/plain");
        assert_eq!(body.parts[0].part_id.as_deref(), Some("1"));
        let v = body.value(0, 0).unwrap();
        assert!(v.value.contains("some text"));
        assert!(v.is_encoding_problem);

        // Broken base64, unknown charset, unknown transfer encoding.
        let raw = crlf(
            "Content-Type: multipart/mixed; boundary=x\n\n\
--x\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n!!not base64!!\n\
--x\nContent-Type: text/plain; charset=x-klingon\nContent-Disposition: inline\n\nqapla'\n\
--x\nContent-Type: text/plain\nContent-Disposition: inline\nContent-Transfer-Encoding: x-uuencode\n\nbegin\n\
--x\nContent-Type: text/plain; charset=utf-8\nContent-Disposition: inline\n\nok\n\
--x--\n",
        );
        let body = Body::parse(&raw, "E1").unwrap();
        let problem = |i: usize| body.value(i, 0).unwrap().is_encoding_problem;
        assert!(problem(1), "bad base64");
        assert_eq!(body.value(1, 0).unwrap().value, "!!not base64!!");
        assert!(problem(2), "unknown charset");
        assert_eq!(body.value(2, 0).unwrap().value, "qapla'");
        assert!(problem(3), "unknown transfer encoding");
        assert!(!problem(4));

        // Not a message at all, and a message cut off mid-part.
        assert!(Body::parse(b"", "E1").is_none());
        let lenient = Body::parse_lenient(b"", "E1");
        assert_eq!(ids(&lenient, &lenient.text_body), ["1"]);
        let cut = crlf(
            "Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\nunfinish",
        );
        let body = Body::parse(&cut, "E1").unwrap();
        assert!(
            body.parts
                .iter()
                .any(|p| p.content.starts_with(b"unfinish"))
        );
    }

    #[test]
    fn single_part_and_blob_ids() {
        let raw = crlf("Subject: hi\n\nHello\n");
        let body = Body::parse(&raw, "Eab_c-1").unwrap();
        assert_eq!(body.parts[0].part_id.as_deref(), Some("1"));
        assert_eq!(body.parts[0].content_type, "text/plain");
        assert_eq!(body.parts[0].charset.as_deref(), Some("us-ascii"));
        assert_eq!(body.parts[0].blob_id.as_deref(), Some("BEab_c-1_1"));
        assert_eq!(ids(&body, &body.text_body), ["1"]);
        assert_eq!(ids(&body, &body.html_body), ["1"]);

        assert_eq!(part_blob_id("Eab_c-1", "2.1.3"), "BEab_c-1_2-1-3");
        assert_eq!(
            parse_part_blob_id("BEab_c-1_2-1-3"),
            Some(("Eab_c-1", "2.1.3".to_owned()))
        );
        assert_eq!(
            parse_part_blob_id("BBE1_2_1"),
            Some(("BE1_2", "1".to_owned()))
        );
        for not_part in ["E1", "Gabc", "BE1_", "B_1", "BE1_x", "BE1_1--2", "BE1"] {
            assert_eq!(parse_part_blob_id(not_part), None, "{not_part}");
        }
        let (bytes, ty) = part_bytes(&raw, "1").unwrap();
        assert_eq!(
            (bytes.as_slice(), ty.as_str()),
            (&b"Hello\r\n"[..], "text/plain")
        );
        assert!(part_bytes(&raw, "2").is_none());
    }

    #[test]
    fn digest_parts_default_to_messages() {
        let raw = crlf(
            "Content-Type: multipart/digest; boundary=d\n\n\
--d\n\nSubject: one\n\nfirst\n\
--d\nContent-Type: text/plain\n\nnot a message\n\
--d--\n",
        );
        let body = Body::parse(&raw, "E1").unwrap();
        assert_eq!(part(&body, "1").content_type, "message/rfc822");
        assert_eq!(part(&body, "1").content, b"Subject: one\r\n\r\nfirst");
        assert_eq!(part(&body, "2").content_type, "text/plain");
        assert_eq!(ids(&body, &body.attachments), ["1"]);
        assert_eq!(ids(&body, &body.text_body), ["2"]);
    }

    #[test]
    fn body_properties_are_checked() {
        assert_eq!(BodyProperty::parse_list(None).unwrap().len(), 10);
        let p =
            BodyProperty::parse_list(Some(&["type".into(), "header:Content-Type:asText".into()]))
                .unwrap();
        assert_eq!(p[0], BodyProperty::Type);
        assert!(BodyProperty::parse_list(Some(&["bogus".into()])).is_err());
        assert!(BodyProperty::parse_list(Some(&["header:From:asDate".into()])).is_err());

        let raw = crlf("Content-Type: text/plain; charset=utf-8\nX-A: 1\nX-A: 2\n\nx\n");
        let body = Body::parse(&raw, "E1").unwrap();
        let props = BodyProperty::parse_list(Some(&[
            "headers".into(),
            "header:x-a:all".into(),
            "header:Content-Type:asText".into(),
        ]))
        .unwrap();
        let j = body.part_json(0, &props);
        assert_eq!(j["header:x-a:all"], json!([" 1", " 2"]));
        assert_eq!(j["header:Content-Type:asText"], "text/plain; charset=utf-8");
        assert_eq!(
            j["headers"][0],
            json!({ "name": "Content-Type", "value": " text/plain; charset=utf-8" })
        );
        assert_eq!(j.as_object().unwrap().len(), 3);
    }

    /// A part fetched on its own (its MIME header, the empty line, its body as an IMAP
    /// server cuts it: without the line break that belongs to the next boundary) decodes to
    /// what the whole message gives for that part.
    #[test]
    fn a_standalone_part_decodes_as_the_part_of_the_whole_message() {
        let raw = crlf(
            "From: a@example.test\nSubject: parts\nMIME-Version: 1.0\n\
             Content-Type: multipart/mixed; boundary=\"o\"\n\n\
             --o\nContent-Type: text/plain; charset=iso-8859-1\n\
             Content-Transfer-Encoding: quoted-printable\n\nSch=F6n=\n gr=FC=DFe\n\
             --o\nContent-Type: multipart/alternative; boundary=\"i\"\n\n\
             --i\nContent-Type: text/plain\n\nalt text\n\
             --i\nContent-Type: text/html\n\n<p>x</p>\n--i--\n\
             --o\nContent-Type: message/rfc822\n\n\
             From: c@example.test\nSubject: inner\nContent-Type: text/plain\n\ninner body\n\
             --o\nContent-Type: application/pdf; name=\"a.pdf\"\n\
             Content-Disposition: attachment; filename=\"a.pdf\"\n\
             Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\nJSVFT0YK\n\
             --o\n\nno headers\n\
             --o--\n",
        );
        let entities: [(&str, &str); 5] = [
            (
                "1",
                "Content-Type: text/plain; charset=iso-8859-1\n\
                 Content-Transfer-Encoding: quoted-printable\n\nSch=F6n=\n gr=FC=DFe",
            ),
            ("2.1", "Content-Type: text/plain\n\nalt text"),
            ("2.2", "Content-Type: text/html\n\n<p>x</p>"),
            (
                "3",
                "Content-Type: message/rfc822\n\n\
                 From: c@example.test\nSubject: inner\nContent-Type: text/plain\n\ninner body",
            ),
            (
                "4",
                "Content-Type: application/pdf; name=\"a.pdf\"\n\
                 Content-Disposition: attachment; filename=\"a.pdf\"\n\
                 Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK\nJSVFT0YK",
            ),
        ];
        for (part_id, entity) in entities {
            let whole = part_bytes(&raw, part_id).unwrap();
            assert_eq!(entity_part_bytes(&crlf(entity)), Some(whole), "{part_id}");
        }
        assert_eq!(
            part_bytes(&raw, "4").unwrap(),
            (b"%PDF-1.4\n%%EOF\n".to_vec(), "application/pdf".to_owned())
        );
        assert_eq!(
            entity_part_bytes(&crlf(entities[0].1)).unwrap().0,
            b"Sch\xf6n gr\xfc\xdfe"
        );
        let (inner, ty) = part_bytes(&raw, "3").unwrap();
        assert_eq!(ty, "message/rfc822");
        assert!(inner.ends_with(b"inner body"));

        // A multipart has no content of its own; without a Content-Type the part's type
        // depends on its parent, which the entity does not show.
        let alternative = crlf(
            "Content-Type: multipart/alternative; boundary=\"i\"\n\n\
             --i\nContent-Type: text/plain\n\nalt text\n--i--",
        );
        assert!(part_bytes(&raw, "2").is_none());
        assert_eq!(entity_part_bytes(&alternative), None);
        assert_eq!(part_bytes(&raw, "5").unwrap().1, "text/plain");
        assert_eq!(entity_part_bytes(&crlf("\nno headers")), None);

        // Part 1 of a single-part message: the message is its own entity.
        let single = crlf(
            "From: a@example.test\nContent-Type: text/plain; charset=utf-8\n\
             Content-Transfer-Encoding: base64\n\nR3LDvMOfZQ==\n",
        );
        assert_eq!(
            entity_part_bytes(&single),
            Some(("Grüße".as_bytes().to_vec(), "text/plain".to_owned()))
        );
        assert_eq!(entity_part_bytes(&single), part_bytes(&single, "1"));
    }
}
