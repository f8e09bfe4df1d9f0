//! A small, lenient IMAP response parser (sans-IO), our own instead of imap-proto's.
//!
//! Why not async-imap's parser: it drops the values of items it does not know (X-GUID,
//! PREVIEW), has no QRESYNC, and one unparseable line closes its connection for good. Here a
//! response is split into generic tokens (atoms, strings, literals, lists, NIL) and the
//! callers pick what they need; an unknown response is just tokens, never an error.
//!
//! Framing: a response is one line; a line ending in `{n}` or `{n+}` is followed by `n` raw
//! bytes and the rest of the line. [`frame_len`] finds where a complete response ends in a
//! buffer, so the reader never has to understand more than the framing.

use std::fmt;

/// One token of a response.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom or number, including flags (`\Seen`) and section specs (`BODY[HEADER]`).
    Atom(String),
    /// A quoted string or a literal, as bytes.
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Atom(a) => write!(f, "{a}"),
            Value::Str(s) if s.len() > 80 => write!(f, "{{{} bytes}}", s.len()),
            Value::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Value::Nil => f.write_str("NIL"),
            Value::List(l) => f.debug_list().entries(l).finish(),
        }
    }
}

impl Value {
    pub fn atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// True when this is an atom equal to `s`, ignoring ASCII case.
    pub fn is(&self, s: &str) -> bool {
        self.atom().is_some_and(|a| a.eq_ignore_ascii_case(s))
    }

    pub fn number(&self) -> Option<u64> {
        self.atom().and_then(|a| a.parse().ok())
    }

    /// The bytes of a string, literal or atom; `None` for NIL and lists.
    pub fn bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Str(s) => Some(s),
            Value::Atom(a) => Some(a.as_bytes()),
            _ => None,
        }
    }

    /// A string, literal or atom as text (lossy for 8-bit bytes).
    pub fn text(&self) -> Option<String> {
        self.bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub fn list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    Bye,
    PreAuth,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        Some(match s.to_ascii_uppercase().as_str() {
            "OK" => Status::Ok,
            "NO" => Status::No,
            "BAD" => Status::Bad,
            "BYE" => Status::Bye,
            "PREAUTH" => Status::PreAuth,
            _ => return None,
        })
    }
}

/// `OK`/`NO`/`BAD`/`BYE`/`PREAUTH` with an optional `[code]` and free text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub status: Status,
    /// The response code's tokens (`[APPENDUID 38505 3955]` → `APPENDUID`, `38505`, `3955`).
    pub code: Vec<Value>,
    pub text: String,
}

impl StatusLine {
    /// The response code's name, uppercased (`APPENDUID`), if there is a code.
    pub fn code_name(&self) -> Option<String> {
        self.code
            .first()
            .and_then(Value::atom)
            .map(str::to_ascii_uppercase)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    Tagged {
        tag: String,
        line: StatusLine,
    },
    /// `* OK ...`, `* BYE ...` and the other status responses.
    Status(StatusLine),
    /// Every other untagged response, as tokens (`* 3 EXISTS` → `3`, `EXISTS`).
    Data(Vec<Value>),
    Continue(String),
}

impl Response {
    /// `* n FETCH (...)`: the sequence number and the item list.
    pub fn fetch(&self) -> Option<(u32, &[Value])> {
        match self {
            Response::Data(v) if v.len() == 3 && v[1].is("FETCH") => {
                Some((v[0].number()? as u32, v[2].list()?))
            }
            _ => None,
        }
    }

    /// The name of an untagged data response (`EXISTS`, `LIST`, `VANISHED`, ...), uppercased.
    pub fn data_name(&self) -> Option<String> {
        match self {
            Response::Data(v) => {
                let first = v.first()?;
                let name = if first.number().is_some() {
                    v.get(1)?
                } else {
                    first
                };
                name.atom().map(str::to_ascii_uppercase)
            }
            _ => None,
        }
    }
}

/// A malformed response (the connection carrying it should be closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where the first complete response in `buf` ends (just after its final CRLF), or `None` if
/// more bytes are needed. Errors on a malformed literal size.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let mut pos = 0;
    loop {
        let Some(nl) = buf[pos..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line_end = pos + nl;
        let line = &buf[pos..line_end];
        match literal_size(line)? {
            Some(n) => {
                let next = line_end + 2 + n;
                if next > buf.len() {
                    return Ok(None);
                }
                pos = next;
            }
            None => return Ok(Some(line_end + 2)),
        }
    }
}

/// `{n}` or `{n+}` at the end of a line segment.
fn literal_size(line: &[u8]) -> Result<Option<usize>, ParseError> {
    if line.last() != Some(&b'}') {
        return Ok(None);
    }
    let Some(open) = line.iter().rposition(|&c| c == b'{') else {
        return Ok(None);
    };
    let mut digits = &line[open + 1..line.len() - 1];
    if digits.last() == Some(&b'+') {
        digits = &digits[..digits.len() - 1];
    }
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        // Text that merely ends in a brace (e.g. in a BAD message), not a literal.
        return Ok(None);
    }
    std::str::from_utf8(digits)
        .ok()
        .and_then(|d| d.parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| ParseError("literal size out of range".into()))
}

/// Parses one complete response (as delimited by [`frame_len`], CRLF included).
pub fn parse_response(raw: &[u8]) -> Result<Response, ParseError> {
    let body = raw.strip_suffix(b"\r\n").unwrap_or(raw);
    if let Some(rest) = body.strip_prefix(b"+") {
        let text = String::from_utf8_lossy(rest.strip_prefix(b" ").unwrap_or(rest));
        return Ok(Response::Continue(text.into_owned()));
    }
    if let Some(rest) = body.strip_prefix(b"* ") {
        let mut p = Parser { b: rest, pos: 0 };
        let first = p.peek_atom();
        if let Some(status) = first.as_deref().and_then(Status::parse) {
            p.pos += first.map_or(0, |f| f.len());
            return Ok(Response::Status(p.status_line(status)?));
        }
        let values = p.values(false)?;
        return Ok(Response::Data(values));
    }
    let mut p = Parser { b: body, pos: 0 };
    let tag = p
        .peek_atom()
        .ok_or_else(|| ParseError(format!("unparseable response {:?}", excerpt(body))))?;
    p.pos += tag.len();
    p.skip_spaces();
    let status = p
        .peek_atom()
        .and_then(|s| Status::parse(&s))
        .ok_or_else(|| {
            ParseError(format!(
                "tagged response without status {:?}",
                excerpt(body)
            ))
        })?;
    p.pos += p.peek_atom().map_or(0, |s| s.len());
    Ok(Response::Tagged {
        tag,
        line: p.status_line(status)?,
    })
}

/// Parses each of `lines` as a whole response, for unit tests of code that reads replies.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn parse_lines(lines: &[&[u8]]) -> Vec<Response> {
    lines.iter().map(|l| parse_response(l).unwrap()).collect()
}

fn excerpt(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned()
}

struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.b.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    /// The next plain atom (no brackets), without consuming it.
    fn peek_atom(&self) -> Option<String> {
        let start = self.pos;
        let end = self.b[start..]
            .iter()
            .position(|&c| c == b' ' || c == b'(' || c == b')' || c == b'[' || c == b'"')
            .map_or(self.b.len(), |n| start + n);
        (end > start).then(|| String::from_utf8_lossy(&self.b[start..end]).into_owned())
    }

    fn status_line(&mut self, status: Status) -> Result<StatusLine, ParseError> {
        self.skip_spaces();
        let mut code = Vec::new();
        if self.b.get(self.pos) == Some(&b'[') {
            let start = self.pos + 1;
            let end = matching_bracket(self.b, self.pos)
                .ok_or_else(|| ParseError("unterminated response code".into()))?;
            let mut inner = Parser {
                b: &self.b[start..end],
                pos: 0,
            };
            code = inner.values(false)?;
            self.pos = end + 1;
            self.skip_spaces();
        }
        let text = String::from_utf8_lossy(&self.b[self.pos..]).into_owned();
        Ok(StatusLine { status, code, text })
    }

    /// Tokens up to the end of input, or up to the `)` closing a list when `in_list`.
    fn values(&mut self, in_list: bool) -> Result<Vec<Value>, ParseError> {
        let mut out = Vec::new();
        loop {
            self.skip_spaces();
            let Some(&c) = self.b.get(self.pos) else {
                return if in_list {
                    Err(ParseError("unterminated list".into()))
                } else {
                    Ok(out)
                };
            };
            match c {
                b'(' => {
                    self.pos += 1;
                    out.push(Value::List(self.values(true)?));
                }
                b')' => {
                    if !in_list {
                        return Err(ParseError("unbalanced ')'".into()));
                    }
                    self.pos += 1;
                    return Ok(out);
                }
                b'"' => out.push(Value::Str(self.quoted()?)),
                b'{' => out.push(Value::Str(self.literal()?)),
                _ => {
                    let a = self.atom()?;
                    if a.eq_ignore_ascii_case("NIL") {
                        out.push(Value::Nil);
                    } else {
                        out.push(Value::Atom(a));
                    }
                }
            }
        }
    }

    fn quoted(&mut self) -> Result<Vec<u8>, ParseError> {
        let mut out = Vec::new();
        self.pos += 1;
        loop {
            match self.b.get(self.pos) {
                None => return Err(ParseError("unterminated quoted string".into())),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let c = *self
                        .b
                        .get(self.pos + 1)
                        .ok_or_else(|| ParseError("dangling escape".into()))?;
                    out.push(c);
                    self.pos += 2;
                }
                Some(&c) => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn literal(&mut self) -> Result<Vec<u8>, ParseError> {
        let close = self.b[self.pos..]
            .iter()
            .position(|&c| c == b'}')
            .map(|n| self.pos + n)
            .ok_or_else(|| ParseError("unterminated literal size".into()))?;
        let digits = String::from_utf8_lossy(&self.b[self.pos + 1..close]);
        let n: usize = digits
            .trim_end_matches('+')
            .parse()
            .map_err(|_| ParseError(format!("bad literal size {digits:?}")))?;
        let start = close + 3; // "}\r\n"
        if self.b.get(close + 1..start) != Some(b"\r\n") || start + n > self.b.len() {
            return Err(ParseError("truncated literal".into()));
        }
        self.pos = start + n;
        Ok(self.b[start..start + n].to_vec())
    }

    /// An atom; `[...]` sections (with spaces and parentheses inside) and a `<n>` suffix are
    /// part of it, as in `BODY[HEADER.FIELDS (SUBJECT)]<0>`.
    fn atom(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(&c) = self.b.get(self.pos) {
            match c {
                b'[' => depth += 1,
                b']' if depth > 0 => depth -= 1,
                b' ' | b'(' | b')' | b'"' | b'\r' | b'\n' if depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        if self.pos == start {
            return Err(ParseError(format!(
                "unexpected byte {:?}",
                self.b.get(self.pos).map(|&c| c as char)
            )));
        }
        Ok(String::from_utf8_lossy(&self.b[start..self.pos]).into_owned())
    }
}

/// The index of the `]` matching the `[` at `open`, skipping quoted strings.
fn matching_bracket(b: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    let mut quoted = false;
    while i < b.len() {
        match b[i] {
            b'\\' if quoted => i += 1,
            b'"' => quoted = !quoted,
            b'[' if !quoted => depth += 1,
            b']' if !quoted => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Quotes a string as an IMAP astring: atom when safe, quoted when possible, else `None`
/// (the caller must send a literal).
pub fn astring(s: &[u8]) -> Option<Vec<u8>> {
    let atom_safe = !s.is_empty()
        && s.iter().all(|&c| {
            c.is_ascii_graphic() && !matches!(c, b'(' | b')' | b'{' | b'"' | b'\\' | b'%' | b'*')
        });
    if atom_safe && !s.eq_ignore_ascii_case(b"NIL") {
        return Some(s.to_vec());
    }
    if s.iter()
        .any(|&c| c == b'\r' || c == b'\n' || c == 0 || c >= 0x80)
    {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Response {
        let raw = s.as_bytes();
        assert_eq!(frame_len(raw).unwrap(), Some(raw.len()), "{s:?}");
        parse_response(raw).unwrap()
    }

    #[test]
    fn fetch_with_literal_section_and_unknown_items() {
        let r = parse(
            "* 12 FETCH (UID 5 FLAGS (\\Seen $Label) BODY[HEADER] {14}\r\nSubject: x\r\n\r\n \
             X-GUID 7d3db2 PREVIEW \"hello (world\" MODSEQ (77))\r\n",
        );
        let (seq, items) = r.fetch().unwrap();
        assert_eq!(seq, 12);
        assert!(items[0].is("UID"));
        assert_eq!(items[1].number(), Some(5));
        assert_eq!(items[3].list().unwrap().len(), 2);
        assert!(items[4].is("BODY[HEADER]"));
        assert_eq!(items[5].bytes().unwrap(), b"Subject: x\r\n\r\n");
        assert_eq!(items[7].text().unwrap(), "7d3db2");
        assert_eq!(items[9].text().unwrap(), "hello (world");
        assert_eq!(items[11].list().unwrap()[0].number(), Some(77));
    }

    #[test]
    fn quoted_strings_with_escapes_and_broken_ones() {
        let r = parse("* 1 FETCH (PREVIEW \"say \\\"hi\\\" to C:\\\\dir\" X \"\" Y \"\\\\\")\r\n");
        let (_, items) = r.fetch().unwrap();
        assert_eq!(items[1].bytes().unwrap(), b"say \"hi\" to C:\\dir");
        assert_eq!(items[3].bytes().unwrap(), b"");
        assert_eq!(items[5].bytes().unwrap(), b"\\");
        for broken in [
            "* 1 FETCH (PREVIEW \"no end)\r\n",
            "* 1 FETCH (PREVIEW \"dangling\\",
            "* 1 FETCH (PREVIEW \"",
        ] {
            assert!(parse_response(broken.as_bytes()).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn status_codes_and_tagged() {
        let r = parse("a3 OK [APPENDUID 38505 3955] APPEND completed\r\n");
        let Response::Tagged { tag, line } = r else {
            panic!()
        };
        assert_eq!(tag, "a3");
        assert_eq!(line.code_name().unwrap(), "APPENDUID");
        assert_eq!(line.code[2].number(), Some(3955));
        assert_eq!(line.text, "APPEND completed");
        let r = parse("* OK [PERMANENTFLAGS (\\Answered \\*)] Flags permitted.\r\n");
        let Response::Status(line) = r else { panic!() };
        assert_eq!(line.code[1].list().unwrap().len(), 2);
        let r = parse("* OK [NOMODSEQ] no modseq\r\n");
        let Response::Status(line) = r else { panic!() };
        assert_eq!(line.code_name().unwrap(), "NOMODSEQ");
        let r = parse("* OK Still here\r\n");
        assert!(matches!(
            r,
            Response::Status(StatusLine {
                status: Status::Ok,
                ..
            })
        ));
    }

    #[test]
    fn vanished_list_esearch_and_partial_frames() {
        let r = parse("* VANISHED (EARLIER) 41,43:116,118\r\n");
        assert_eq!(r.data_name().unwrap(), "VANISHED");
        let r = parse("* LIST (\\HasNoChildren \\Sent) \"/\" {5}\r\nSent2\r\n");
        let Response::Data(v) = r else { panic!() };
        assert_eq!(v[3].bytes().unwrap(), b"Sent2");
        let r = parse("* ESEARCH (TAG \"a5\") UID ALL 1:3,5\r\n");
        assert_eq!(r.data_name().unwrap(), "ESEARCH");
        assert_eq!(frame_len(b"* 1 FETCH (BODY[] {10}\r\nabc").unwrap(), None);
        assert_eq!(frame_len(b"* 1 EXISTS\r").unwrap(), None);
        assert_eq!(parse("+ idling\r\n"), Response::Continue("idling".into()));
        assert!(parse_response(b"* 1 FETCH (UID 1\r\n").is_err());
    }

    #[test]
    fn astrings() {
        assert_eq!(astring(b"INBOX").unwrap(), b"INBOX");
        assert_eq!(astring(b"a b").unwrap(), b"\"a b\"");
        assert_eq!(astring(b"q\"\\").unwrap(), b"\"q\\\"\\\\\"");
        assert!(astring(b"caf\xc3\xa9").is_none());
        assert_eq!(astring(b"").unwrap(), b"\"\"");
    }
}
