//! EAS Email items (MS-ASEMAIL) → the backend-neutral [`RemoteMessage`].
//!
//! Sync sends parsed fields, not the raw message (SOGo ignores TruncationSize and would send
//! whole MIME messages), so the header block is synthesised from the fields in a fixed order:
//! the same item gives the same bytes wherever it is stored, and the fingerprint is a digest
//! of those bytes plus the conversation id and body start, none of which change on MoveItems.
//! The message is marked `headers_complete: false`: Email/get reads Message-ID, References,
//! Date and the other fields this block lacks from the MIME (ItemOperations) when asked.

use std::collections::BTreeSet;

use upstream::RemoteMessage;
use wbxml::Element;
use wbxml::tag::{airsyncbase as base, email as em, email2 as em2};

use crate::command::node_text;

/// How many characters of plain text make a preview (RFC 8621 `preview`).
const PREVIEW_CHARS: usize = 256;

fn field(data: &Element, tag: wbxml::Tag) -> Option<String> {
    data.find(tag).and_then(node_text)
}

/// JMAP keywords from the fields that carry them. Fields absent from `data` count as unset.
pub(crate) fn keywords(data: &Element) -> BTreeSet<String> {
    let mut keywords = BTreeSet::new();
    if field(data, em::Read).as_deref().map(str::trim) == Some("1") {
        keywords.insert("$seen".to_owned());
    }
    // FlagStatus 2 is "flagged"; 1 is "complete", which JMAP has no keyword for.
    let flag = data
        .find(em::Flag)
        .and_then(|f| f.find(em::FlagStatus))
        .and_then(node_text);
    if flag.as_deref().map(str::trim) == Some("2") {
        keywords.insert("$flagged".to_owned());
    }
    // LastVerbExecuted: 1 reply to sender, 2 reply to all, 3 forward.
    match field(data, em2::LastVerbExecuted).as_deref().map(str::trim) {
        Some("1" | "2") => {
            keywords.insert("$answered".to_owned());
        }
        Some("3") => {
            keywords.insert("$forwarded".to_owned());
        }
        _ => {}
    }
    keywords
}

#[cfg(test)]
/// Whether `data` is a full item (SOGo's changes are) rather than a few changed fields.
pub(crate) fn is_full_item(data: &Element) -> bool {
    data.find(em::DateReceived).is_some() && data.find(em::From).is_some()
}

/// Removes what would break a header line: CR, LF and other controls.
fn header_value(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Builds the message model from one item's `ApplicationData`.
pub(crate) fn remote_message(server_id: &str, data: &Element) -> RemoteMessage {
    let received_at = field(data, em::DateReceived)
        .and_then(|d| parse_utc(&d))
        .unwrap_or(0);
    let mut header_block = String::new();
    let mut add = |name: &str, value: Option<String>| {
        if let Some(v) = value.map(|v| header_value(&v)).filter(|v| !v.is_empty()) {
            header_block.push_str(name);
            header_block.push_str(": ");
            header_block.push_str(&v);
            header_block.push_str("\r\n");
        }
    };
    add("From", field(data, em::From));
    add("To", field(data, em::To));
    add("Cc", field(data, em::Cc));
    add("Reply-To", field(data, em::ReplyTo));
    add("Subject", field(data, em::Subject));
    add("Date", Some(format_rfc5322(received_at)));
    add(
        "Importance",
        match field(data, em::Importance).as_deref().map(str::trim) {
            Some("0") => Some("low".to_owned()),
            Some("2") => Some("high".to_owned()),
            _ => None,
        },
    );
    header_block.push_str("\r\n");

    let conversation = data.find(em2::ConversationId).and_then(|c| c.bytes_value());
    let body = data.find(base::Body);
    let text = body
        .filter(|b| b.find(base::Type).and_then(node_text).as_deref() == Some("1"))
        .and_then(|b| b.find(base::Data))
        .and_then(node_text);
    let preview = text.as_deref().map(|t| {
        t.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(PREVIEW_CHARS)
            .collect::<String>()
    });
    let body_size = body
        .and_then(|b| b.find(base::EstimatedDataSize))
        .and_then(node_text)
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let attachments: Vec<&Element> = data
        .find(base::Attachments)
        .map(|a| a.find_all(base::Attachment).collect())
        .unwrap_or_default();
    let attachment_size: u64 = attachments
        .iter()
        .filter_map(|a| a.find(base::EstimatedDataSize).and_then(node_text))
        .filter_map(|s| s.trim().parse::<u64>().ok())
        .sum();
    let has_attachment = attachments
        .iter()
        .any(|a| a.find(base::IsInline).and_then(node_text).as_deref() != Some("1"));

    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    digest.update(header_block.as_bytes());
    digest.update(b"\0");
    digest.update(conversation.unwrap_or_default());
    digest.update(b"\0");
    digest.update(preview.as_deref().unwrap_or_default().as_bytes());
    let fingerprint = hex(digest.finish().as_ref());

    RemoteMessage {
        uid: server_id.to_owned(),
        fingerprint: format!("eas:{fingerprint}"),
        thread_hint: conversation.filter(|c| !c.is_empty()).map(hex),
        keywords: keywords(data),
        received_at,
        size: header_block.len() as u64 + body_size + attachment_size,
        header_block: header_block.into_bytes(),
        preview: preview.filter(|p| !p.is_empty()),
        has_attachment,
        headers_complete: false,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the EAS date form `2026-11-26T14:05:52.000Z` to seconds since the epoch.
pub(crate) fn parse_utc(value: &str) -> Option<i64> {
    let v = value.trim();
    let num = |r: std::ops::Range<usize>| v.get(r)?.parse::<i64>().ok();
    if v.len() < 19 || v.as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(upstream::civil::days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s)
}

/// `Thu, 26 Nov 2026 14:05:52 +0000`.
pub(crate) fn format_rfc5322(epoch: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let (y, m, d) = upstream::civil::civil_from_days(days);
    let weekday = DAYS[days.rem_euclid(7) as usize];
    let month = MONTHS[((m - 1).clamp(0, 11)) as usize];
    format!(
        "{weekday}, {d} {month} {y} {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        let t = parse_utc("2026-11-26T14:05:52.000Z").unwrap();
        assert_eq!(format_rfc5322(t), "Thu, 26 Nov 2026 14:05:52 +0000");
        assert_eq!(parse_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(format_rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(parse_utc("2000-02-29T12:00:00.000Z"), Some(951_825_600));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-26 14:05:52",
            "2026-1",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn header_values_cannot_inject_lines() {
        assert_eq!(header_value(" a\r\nBcc: x "), "a  Bcc: x");
    }
}

#[cfg(test)]
mod fixture_tests {
    use super::*;
    use crate::command::{ServerCommand, SyncResponse};

    fn commands(bytes: &[u8]) -> Vec<ServerCommand> {
        let root = wbxml::decode(bytes).unwrap();
        let mut r = SyncResponse::from_element(&root).unwrap();
        r.collections.remove(0).commands
    }

    #[test]
    fn recorded_sogo_adds_become_messages() {
        let adds = commands(include_bytes!(
            "../../wbxml/tests/fixtures/07-Sync-Inbox-getchanges.resp.wbxml"
        ));
        let messages: Vec<RemoteMessage> = adds
            .iter()
            .map(|c| match c {
                ServerCommand::Add { server_id, data } => remote_message(server_id, data),
                other => panic!("{other:?}"),
            })
            .collect();
        let m = &messages[0];
        assert_eq!(m.uid, "1");
        assert_eq!(
            String::from_utf8(m.header_block.clone()).unwrap(),
            "From: \"Bob\" <bob@example.test>\r\nTo: \"Alice\" <alice@example.test>\r\n\
             Reply-To: Bob <bob@example.test>\r\nSubject: EAS lab message 1 (14.1)\r\n\
             Date: Thu, 26 Nov 2026 14:05:52 +0000\r\n\r\n"
        );
        assert!(!m.headers_complete, "a synthesised block is marked so");
        assert_eq!(m.received_at, parse_utc("2026-11-26T14:05:52Z").unwrap());
        assert!(m.keywords.is_empty());
        assert_eq!(m.preview.as_deref(), Some("Body of message 1."));
        assert!(!m.has_attachment);
        assert_eq!(
            m.thread_hint.as_deref().map(|h| h.len()),
            Some(2 * "<179570195282.17364.13745668579306879173@example.test>".len())
        );
        let mut fingerprints: Vec<_> = messages.iter().map(|m| &m.fingerprint).collect();
        fingerprints.dedup();
        assert_eq!(
            fingerprints.len(),
            3,
            "distinct messages, distinct fingerprints"
        );
    }

    #[test]
    fn recorded_sogo_change_carries_seen_and_flagged() {
        let changes = commands(include_bytes!(
            "../../wbxml/tests/fixtures/16-Sync-after-imap-changes.resp.wbxml"
        ));
        let ServerCommand::Change { data, .. } = &changes[1] else {
            panic!("{changes:?}")
        };
        assert!(is_full_item(data));
        assert_eq!(
            keywords(data).into_iter().collect::<Vec<_>>(),
            ["$flagged", "$seen"]
        );
    }
}
