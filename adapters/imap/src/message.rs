//! From FETCH items to the contract's model: flags ↔ keywords, INTERNALDATE, BODYSTRUCTURE,
//! the header-block fingerprint.

use std::collections::BTreeSet;

use base64::Engine;
use upstream::RemoteMessage;

use crate::proto::Value;

/// IMAP system flags and their JMAP keywords (RFC 8621 §4.1.1).
const SYSTEM_FLAGS: [(&str, &str); 4] = [
    ("\\Seen", "$seen"),
    ("\\Flagged", "$flagged"),
    ("\\Answered", "$answered"),
    ("\\Draft", "$draft"),
];

/// IMAP keywords with a conventional spelling (RFC 5788 registry).
const CONVENTIONAL: [&str; 5] = ["$Forwarded", "$Junk", "$NotJunk", "$MDNSent", "$Phishing"];

/// FLAGS → JMAP keywords: system flags mapped, `\Recent`/`\Deleted` dropped, keywords
/// lowercased (JMAP keywords are case-insensitive and stored lowercase).
pub fn keywords_from_flags(flags: &[Value]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in flags {
        let Some(f) = f.atom() else { continue };
        if let Some((_, k)) = SYSTEM_FLAGS.iter().find(|(s, _)| s.eq_ignore_ascii_case(f)) {
            out.insert((*k).to_owned());
        } else if !f.starts_with('\\') && is_keyword(f) {
            out.insert(f.to_ascii_lowercase());
        }
    }
    out
}

/// A JMAP keyword that is also a valid IMAP flag-keyword atom.
pub fn is_keyword(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 255
        && k.bytes().all(|c| {
            c.is_ascii_graphic()
                && !matches!(c, b'(' | b')' | b'{' | b']' | b'%' | b'*' | b'"' | b'\\')
        })
}

/// A JMAP keyword → the IMAP flag to store.
pub fn flag_for_keyword(k: &str) -> Option<String> {
    if let Some((f, _)) = SYSTEM_FLAGS
        .iter()
        .find(|(_, kw)| kw.eq_ignore_ascii_case(k))
    {
        return Some((*f).to_owned());
    }
    if let Some(c) = CONVENTIONAL.iter().find(|c| c.eq_ignore_ascii_case(k)) {
        return Some((*c).to_owned());
    }
    is_keyword(k).then(|| k.to_owned())
}

/// Parses IMAP's date-time (`17-Jul-1996 02:44:25 -0700`) to seconds since the epoch (UTC).
pub fn parse_internaldate(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(' ')?;
    let rest = rest.trim_start();
    let (time, zone) = rest.split_once(' ')?;
    let mut d = date.trim().split('-');
    let day: i64 = d.next()?.trim().parse().ok()?;
    let month = month_number(d.next()?)?;
    let year: i64 = d.next()?.parse().ok()?;
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let m: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.parse().ok()?;
    let zone = zone.trim();
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zh: i64 = zone.get(1..3)?.parse().ok()?;
    let zm: i64 = zone.get(3..5)?.parse().ok()?;
    let days = upstream::civil::days_from_civil(year, month, day);
    Some(days * 86400 + h * 3600 + m * 60 + sec - sign * (zh * 3600 + zm * 60))
}

/// Formats seconds since the epoch as an IMAP date-time in UTC, for APPEND.
pub fn format_internaldate(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = upstream::civil::civil_from_days(days);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{:2}-{}-{:04} {:02}:{:02}:{:02} +0000",
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn month_number(m: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    MONTHS
        .iter()
        .position(|x| x.eq_ignore_ascii_case(m))
        .map(|i| i as i64 + 1)
}

/// True when a BODYSTRUCTURE has a part that is an attachment: an explicit
/// `Content-Disposition: attachment`, or a named leaf part that is not text.
pub fn has_attachment(bs: &Value) -> bool {
    let Some(items) = bs.list() else {
        return false;
    };
    if items.first().is_some_and(|v| v.list().is_some()) {
        // multipart: (part)(part)... "subtype" [ext]
        return items
            .iter()
            .take_while(|v| v.list().is_some())
            .any(has_attachment);
    }
    let media = items
        .first()
        .and_then(Value::text)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let sub = items
        .get(1)
        .and_then(Value::text)
        .unwrap_or_default()
        .to_ascii_lowercase();
    if media == "message" && sub == "rfc822" {
        return true;
    }
    // Disposition is a list ("attachment" (params)) among the extension data.
    let disposition = items.iter().skip(7).find_map(|v| {
        let l = v.list()?;
        let kind = l.first()?.text()?.to_ascii_lowercase();
        (kind == "attachment" || kind == "inline").then(|| (kind, l.get(1).cloned()))
    });
    let named = |params: Option<&Value>, key: &str| {
        params.and_then(Value::list).is_some_and(|p| {
            p.chunks(2)
                .any(|kv| kv[0].text().is_some_and(|k| k.eq_ignore_ascii_case(key)))
        })
    };
    match disposition {
        Some((kind, _)) if kind == "attachment" => true,
        Some((_, params)) if named(params.as_ref(), "filename") && media != "text" => true,
        _ => media != "text" && named(items.get(2), "name"),
    }
}

/// The fingerprint of a header block: base64url(SHA-256), prefixed so another kind of
/// fingerprint can never collide with it.
pub fn header_fingerprint(header: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, header);
    format!(
        "h:{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
    )
}

/// Which identity the adapter reports as a message's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FingerprintSource {
    /// A digest of the raw header block: the same for the same message wherever it lives,
    /// including copies re-appended by another client (which is what re-matching after a
    /// UIDVALIDITY change or a rebuilt mailbox needs).
    #[default]
    HeaderDigest,
    /// The server's immutable id (RFC 8474 EMAILID, Dovecot X-GUID) when offered, else the
    /// digest. Tells apart identical copies, but a message deleted and appended again gets a
    /// new id.
    ServerId,
}

/// The items of one FETCH response, by name.
#[derive(Debug, Default)]
pub struct FetchItems<'a> {
    pub uid: Option<u32>,
    pub flags: Option<&'a [Value]>,
    pub internaldate: Option<String>,
    pub size: Option<u64>,
    pub bodystructure: Option<&'a Value>,
    pub header: Option<&'a [u8]>,
    pub body: Option<&'a [u8]>,
    pub modseq: Option<u64>,
    pub guid: Option<String>,
    pub emailid: Option<String>,
    pub threadid: Option<String>,
    pub preview: Option<String>,
}

pub fn fetch_items(items: &[Value]) -> FetchItems<'_> {
    let mut f = FetchItems::default();
    let mut i = 0;
    while i + 1 < items.len() {
        let (k, v) = (&items[i], &items[i + 1]);
        i += 2;
        let Some(name) = k.atom() else { continue };
        let name = name.to_ascii_uppercase();
        match name.as_str() {
            "UID" => f.uid = v.number().map(|n| n as u32),
            "FLAGS" => f.flags = v.list(),
            "INTERNALDATE" => f.internaldate = v.text(),
            "RFC822.SIZE" => f.size = v.number(),
            "BODYSTRUCTURE" => f.bodystructure = Some(v),
            "BODY[HEADER]" | "RFC822.HEADER" => f.header = v.bytes(),
            "BODY[]" | "RFC822" => f.body = v.bytes(),
            "MODSEQ" => f.modseq = v.list().and_then(|l| l.first()).and_then(Value::number),
            "X-GUID" => f.guid = v.text(),
            "EMAILID" => f.emailid = v.list().and_then(|l| l.first()).and_then(Value::text),
            "THREADID" => f.threadid = v.list().and_then(|l| l.first()).and_then(Value::text),
            "PREVIEW" => f.preview = v.text(),
            _ => {}
        }
    }
    f
}

/// Up to 256 characters of a preview, whitespace collapsed.
fn clip_preview(p: &str) -> String {
    let mut out = String::new();
    for (n, w) in p.split_whitespace().enumerate() {
        if n > 0 {
            out.push(' ');
        }
        out.push_str(w);
    }
    out.chars().take(256).collect()
}

impl FetchItems<'_> {
    /// The contract's message, when the metadata items are all present.
    pub fn to_remote(&self, source: FingerprintSource) -> Option<RemoteMessage> {
        let uid = self.uid?;
        let header = self.header?;
        let fingerprint = match (source, &self.emailid, &self.guid) {
            (FingerprintSource::ServerId, Some(id), _) => format!("e:{id}"),
            (FingerprintSource::ServerId, None, Some(g)) => format!("g:{g}"),
            _ => header_fingerprint(header),
        };
        Some(RemoteMessage {
            uid: uid.to_string(),
            fingerprint,
            thread_hint: self.threadid.clone(),
            keywords: keywords_from_flags(self.flags.unwrap_or(&[])),
            received_at: self
                .internaldate
                .as_deref()
                .and_then(parse_internaldate)
                .unwrap_or(0),
            size: self.size.unwrap_or(0),
            header_block: header.to_vec(),
            preview: self.preview.as_deref().map(clip_preview),
            has_attachment: self.bodystructure.is_some_and(has_attachment),
            headers_complete: true,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::{Response, parse_response};

    fn items(s: &str) -> Vec<Value> {
        match parse_response(s.as_bytes()).unwrap() {
            Response::Data(mut v) => match v.pop() {
                Some(Value::List(l)) => l,
                _ => panic!(),
            },
            _ => panic!(),
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(
            parse_internaldate("17-Jul-1996 02:44:25 -0700"),
            Some(837596665)
        );
        assert_eq!(parse_internaldate(" 1-Jan-1970 00:00:00 +0000"), Some(0));
        assert_eq!(format_internaldate(837596665), "17-Jul-1996 09:44:25 +0000");
        assert_eq!(
            parse_internaldate(&format_internaldate(1767225600)),
            Some(1767225600)
        );
        assert_eq!(parse_internaldate("garbage"), None);
    }

    #[test]
    fn flags_and_keywords() {
        let v = items("* 1 FETCH (FLAGS (\\Seen \\Recent \\Deleted $Forwarded Work))\r\n");
        let kw = keywords_from_flags(v[1].list().unwrap());
        let kw: Vec<_> = kw.iter().map(String::as_str).collect();
        assert_eq!(kw, ["$forwarded", "$seen", "work"]);
        assert_eq!(flag_for_keyword("$seen").unwrap(), "\\Seen");
        assert_eq!(flag_for_keyword("$forwarded").unwrap(), "$Forwarded");
        assert_eq!(flag_for_keyword("custom").unwrap(), "custom");
        assert!(flag_for_keyword("bad word").is_none());
    }

    #[test]
    fn attachments_from_bodystructure() {
        let plain = items(
            "* 1 FETCH (BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL))\r\n",
        );
        assert!(!has_attachment(&plain[1]));
        let mixed = items(
            "* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7bit\" 5 1 NIL NIL NIL NIL)\
             (\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 100 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL) \
             \"mixed\" (\"boundary\" \"b\") NIL NIL NIL))\r\n",
        );
        assert!(has_attachment(&mixed[1]));
    }
}
