//! The header fields JMAP exposes, parsed from a raw header block with mail-parser, and the
//! base subject threading compares.

use std::sync::OnceLock;

use mail_parser::{Address, HeaderName, HeaderValue, MessageParser};

use crate::records::EmailAddress;

/// What the records keep from a header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedHeaders {
    pub message_id: Vec<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub subject: Option<String>,
    pub sent_at: Option<i64>,
    pub from: Vec<EmailAddress>,
    pub sender: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    pub to: Vec<EmailAddress>,
    pub cc: Vec<EmailAddress>,
    pub bcc: Vec<EmailAddress>,
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    v.as_text_list()
        .map(|l| l.iter().map(|s| s.trim().to_owned()).collect())
        .unwrap_or_default()
}

fn addresses(a: Option<&Address<'_>>) -> Vec<EmailAddress> {
    let Some(a) = a else { return Vec::new() };
    a.iter()
        .filter_map(|x| {
            Some(EmailAddress {
                name: x.name().map(str::to_owned),
                email: x.address()?.to_owned(),
            })
        })
        .collect()
}

/// A parser for the fields [`ParsedHeaders`] keeps, each with the parser mail-parser uses
/// for it by default; every other field is skipped unparsed. Real mail carries many
/// `Received`, `DKIM-Signature` and list fields, and parsing them was a large part of an
/// initial sync's header work.
fn parser() -> &'static MessageParser {
    static PARSER: OnceLock<MessageParser> = OnceLock::new();
    PARSER.get_or_init(|| {
        MessageParser::new()
            .with_message_ids()
            .header_text(HeaderName::Subject)
            .header_date(HeaderName::Date)
            .header_address(HeaderName::From)
            .header_address(HeaderName::Sender)
            .header_address(HeaderName::ReplyTo)
            .header_address(HeaderName::To)
            .header_address(HeaderName::Cc)
            .header_address(HeaderName::Bcc)
            .default_header_ignore()
    })
}

pub fn parse(header_block: &[u8]) -> ParsedHeaders {
    parse_with(parser(), header_block)
}

fn parse_with(parser: &MessageParser, header_block: &[u8]) -> ParsedHeaders {
    let Some(m) = parser.parse_headers(header_block) else {
        return ParsedHeaders::default();
    };
    ParsedHeaders {
        message_id: m
            .message_id()
            .map(|s| vec![s.trim().to_owned()])
            .unwrap_or_default(),
        in_reply_to: ids(m.in_reply_to()),
        references: ids(m.references()),
        subject: m.subject().map(str::to_owned),
        sent_at: m.date().map(|d| d.to_timestamp()),
        from: addresses(m.from()),
        sender: addresses(m.sender()),
        reply_to: addresses(m.reply_to()),
        to: addresses(m.to()),
        cc: addresses(m.cc()),
        bcc: addresses(m.bcc()),
    }
}

/// The base subject (after RFC 5256 §2.1, simplified): reply and forward prefixes (also
/// common non-English ones), `[list]` tags and a trailing `(fwd)` removed, whitespace
/// collapsed, lowercased.
pub fn base_subject(subject: Option<&str>) -> String {
    const PREFIXES: [&str; 12] = [
        "re", "fw", "fwd", "aw", "sv", "vs", "antw", "wg", "tr", "rif", "ref", "res",
    ];
    let mut s: String = subject
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    loop {
        let before = s.clone();
        if let Some(rest) = s.strip_suffix("(fwd)") {
            s = rest.trim_end().to_owned();
        }
        let t = s.trim_start();
        if t.starts_with('[')
            && let Some(end) = t.find(']')
            && !t[end + 1..].trim().is_empty()
        {
            s = t[end + 1..].trim_start().to_owned();
            continue;
        }
        if let Some(colon) = t.find(':') {
            let head = t[..colon].trim_end();
            // "re", "re[2]", "re (2)"
            let word: String = head.chars().take_while(|c| c.is_alphabetic()).collect();
            let tail = head[word.len()..].trim();
            let counter_ok = tail.is_empty()
                || (tail.starts_with('[') && tail.ends_with(']'))
                || (tail.starts_with('(') && tail.ends_with(')'));
            if PREFIXES.contains(&word.as_str()) && counter_ok {
                s = t[colon + 1..].trim_start().to_owned();
                continue;
            }
        }
        if s == before {
            break;
        }
    }
    s.trim().to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn base_subjects() {
        for (input, want) in [
            ("Re: Hello", "hello"),
            ("RE: Fwd: [list] Hello  world (fwd)", "hello world"),
            ("AW: Re[2]: Treffen", "treffen"),
            ("Hello: there", "hello: there"),
            ("[only a tag]", "[only a tag]"),
            ("", ""),
        ] {
            assert_eq!(base_subject(Some(input)), want, "{input}");
        }
    }

    #[test]
    fn parses_the_fields_jmap_exposes() {
        let h = b"From: =?utf-8?q?J=C3=B6rg?= <jorg@example.test>\r\nTo: a@example.test, \"B\" <b@example.test>\r\n\
Subject: =?iso-8859-1?q?Gr=FC=DFe?=\r\nDate: Thu, 01 Jan 2026 10:00:00 +0100\r\nMessage-ID: <m1@example.test>\r\n\
In-Reply-To: <m0@example.test>\r\nReferences: <r1@example.test> <m0@example.test>\r\n\r\n";
        let p = parse(h);
        assert_eq!(p.message_id, ["m1@example.test"]);
        assert_eq!(p.in_reply_to, ["m0@example.test"]);
        assert_eq!(p.references, ["r1@example.test", "m0@example.test"]);
        assert_eq!(p.subject.as_deref(), Some("Grüße"));
        assert_eq!(p.sent_at, Some(1767258000));
        assert_eq!(p.from[0].name.as_deref(), Some("Jörg"));
        assert_eq!(p.to.len(), 2);
    }

    #[test]
    fn skipping_other_fields_changes_nothing_that_is_kept() {
        let blocks: [&[u8]; 4] = [
            b"Received: from mx.example.test (mx [192.0.2.1]) by in.example.test\r\n\t(Postfix) with ESMTPS id 4F; Thu, 01 Jan 2026 10:00:00 +0100\r\n\
DKIM-Signature: v=1; a=rsa-sha256; d=example.test; s=s1;\r\n h=from:to:subject; bh=abc=; b=def=\r\n\
List-Id: <list.example.test>\r\nList-Unsubscribe: <mailto:u@example.test>\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\nX-Custom: =?utf-8?q?x?=\r\n\
From: \"Ann\" <ann@example.test>\r\nSender: s@example.test\r\nReply-To: r@example.test\r\n\
To: undisclosed-recipients:;\r\nCc: G: a@example.test, b@example.test;\r\nBcc: c@example.test\r\n\
Subject: =?utf-8?b?w5xiZXI=?= folded\r\n  subject\r\nDate: 1 Jan 2026 10:00 -0000\r\n\
Message-ID: <one@example.test>\r\nIn-Reply-To: <p@example.test> (comment)\r\n\
References: <a@example.test>\r\n <b@example.test>\r\n\r\n",
            b"Subject: twice\r\nSubject: second\r\nMessage-ID: <a@x>\r\nMessage-ID: <b@x>\r\n\r\n",
            b"Date: not a date\r\nFrom: broken <\r\nReferences: no angle brackets\r\n\r\n",
            b"X-Only: other fields\r\nReceived: by x; Thu, 01 Jan 2026 10:00:00 +0000\r\n\
Subject: after skipped fields\r\n\r\n",
        ];
        for b in blocks {
            let kept = parse(b);
            assert_eq!(kept, parse_with(&MessageParser::default(), b));
            assert_ne!(
                kept,
                ParsedHeaders::default(),
                "{}",
                String::from_utf8_lossy(b)
            );
        }
    }
}
