//! Fixture loading shared by the test modules.

use std::path::{Path, PathBuf};

/// One recorded exchange: its name, the request and response bodies, and the XML the
/// recording shows for each.
pub struct Exchange {
    pub name: String,
    pub request: Vec<u8>,
    pub request_xml: String,
    /// The hex dump the recording gives for the request, when it gives one.
    pub request_hex: Option<String>,
    pub response: Vec<u8>,
    /// `None` for an empty response body.
    pub response_xml: Option<String>,
}

pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every exchange with a WBXML request under `tests/fixtures`, in file-name order.
pub fn exchanges() -> Vec<Exchange> {
    let dir = fixtures_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".req.wbxml").map(str::to_owned)
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let read = |suffix: &str| std::fs::read(dir.join(format!("{name}{suffix}"))).unwrap();
            let txt = String::from_utf8(read(".txt")).unwrap();
            let (request_xml, request_hex) = request_section(&txt);
            Exchange {
                request: read(".req.wbxml"),
                response: read(".resp.wbxml"),
                response_xml: response_section(&txt),
                request_xml,
                request_hex,
                name,
            }
        })
        .collect()
}

/// The single XML line after `## request XML (...)`, and the hex the heading quotes.
fn request_section(txt: &str) -> (String, Option<String>) {
    let start = txt.find("## request XML (").expect("request heading");
    let heading_end = start + txt[start..].find('\n').unwrap();
    let heading = &txt[start..heading_end];
    let hex = heading
        .rsplit_once("bytes: ")
        .map(|(_, rest)| rest.trim_end_matches(')').to_owned())
        .filter(|hex| hex != "...");
    let body = &txt[heading_end + 1..];
    let line = &body[..body.find('\n').unwrap()];
    (line.to_owned(), hex)
}

/// Everything after the `## response XML (...)` heading line, byte for byte.
fn response_section(txt: &str) -> Option<String> {
    let start = txt.find("## response XML (").expect("response heading");
    let body = &txt[start + txt[start..].find('\n').unwrap() + 1..];
    (body.trim_end() != "(empty body)").then(|| body.to_owned())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
