//! Cross-checks against libwbxml2's command-line tools (Debian package libwbxml2-utils).
//!
//! libwbxml is an independent implementation, so agreeing with it checks both our code pages
//! and our byte handling. Its known differences are normalized here, not hidden:
//! - it names a few tags differently from MS-ASWBXML (`LIBWBXML_NAMES`);
//! - it writes GAL's namespace as `Gal:` (our namespace lookup ignores case);
//! - it renders opaque data as base64 text;
//! - it trims leading and trailing whitespace of text, even with `-k`;
//! - `xml2wbxml` applies XML end-of-line normalization (CRLF becomes LF);
//! - with a string table it splits a string into adjacent pieces.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine as _;
use wbxml::{Element, Node, Page, Tag, decode, encode, from_xml};

use crate::support::exchanges;

/// libwbxml 0.11.8 tag names that differ from MS-ASWBXML, as (libwbxml, specification).
const LIBWBXML_NAMES: &[(&str, &str)] = &[
    ("AttOId", "AttOid"),
    ("Reply-To", "ReplyTo"),
    ("DTStamp", "DtStamp"),
    ("Recurrence_Type", "Type"),
    ("Recurrence_Until", "Until"),
    ("Recurrence_Occurrences", "Occurrences"),
    ("Recurrence_Interval", "Interval"),
    ("Recurrence_DayOfWeek", "DayOfWeek"),
    ("Recurrence_DayOfMonth", "DayOfMonth"),
    ("Recurrence_WeekOfMonth", "WeekOfMonth"),
    ("Recurrence_MonthOfYear", "MonthOfYear"),
    ("Recurrence_Start", "Start"),
    ("Recurrence_Regenerate", "Regenerate"),
    ("Recurrence_DeadOccur", "DeadOccur"),
    ("Attendee_Email", "Email"),
    ("Attendee_Name", "Name"),
    ("Attendee_Status", "AttendeeStatus"),
    ("Attendee_Type", "AttendeeType"),
    ("Compressed_RTF", "CompressedRTF"),
    ("Exception_Deleted", "Deleted"),
    ("Exception_StartTime", "ExceptionStartTime"),
    ("Organizer_Email", "OrganizerEmail"),
    ("Organizer_Name", "OrganizerName"),
    ("UTCDueDate", "UtcDueDate"),
    ("UTCStartDate", "UtcStartDate"),
    ("DeviceEncryptionEnabled", "RequireStorageCardEncryption"),
    ("ihsManagementInformation", "RightsManagementInformation"),
    ("MIME", "Mime"),
    ("RMOwner", "Owner"),
];

/// Tokens newer than libwbxml 0.11.8's tables.
const NOT_IN_LIBWBXML: &[(Page, u8)] = &[
    (Page::MeetingResponse, 0x10), // ProposedStartTime
    (Page::MeetingResponse, 0x11), // ProposedEndTime
    (Page::Provision, 0x3B),       // AccountOnlyRemoteWipe
];

const INSTALL_HINT: &str = "libwbxml2's tools are missing: run `apt-get install libwbxml2-utils` (this test fails rather than skips)";

/// Runs a libwbxml tool with `input` on stdin and returns its stdout.
fn run(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e}. {INSTALL_HINT}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && !output.stdout.is_empty(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn wbxml2xml(bytes: &[u8]) -> String {
    let xml = run(
        "wbxml2xml",
        &["-m", "0", "-k", "-l", "ACTIVESYNC", "-o", "-", "-"],
        bytes,
    );
    String::from_utf8(xml).unwrap()
}

fn xml2wbxml(xml: &str, string_table: bool) -> Vec<u8> {
    let mut args = vec!["-v", "1.3", "-o", "-", "-"];
    if !string_table {
        args.insert(0, "-n");
    }
    run("xml2wbxml", &args, xml.as_bytes())
}

/// libwbxml's XML with its tag names replaced by the specification's.
fn from_libwbxml_xml(xml: &str) -> Element {
    let mut xml = xml.to_owned();
    for (theirs, ours) in LIBWBXML_NAMES {
        for (a, b) in [("<", " "), ("<", ">"), ("<", "/>"), ("</", ">")] {
            xml = xml.replace(&format!("{a}{theirs}{b}"), &format!("{a}{ours}{b}"));
        }
    }
    from_xml(&xml).unwrap_or_else(|e| panic!("libwbxml XML does not parse: {e}\n{xml}"))
}

/// Undoes libwbxml's known changes (see the module comment): adjacent strings merged, text
/// trimmed and its CRLF made LF, empty strings dropped; with `opaque_as_base64` opaque data
/// becomes the base64 text libwbxml's XML shows.
fn normalize(element: &Element, opaque_as_base64: bool) -> Element {
    let mut merged: Vec<Node> = Vec::new();
    for node in &element.children {
        let node = match node {
            Node::Element(child) => Node::Element(normalize(child, opaque_as_base64)),
            Node::Opaque(bytes) if opaque_as_base64 => {
                Node::Text(base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            other => other.clone(),
        };
        match (merged.last_mut(), node) {
            (Some(Node::Text(last)), Node::Text(text)) => last.push_str(&text),
            (_, node) => merged.push(node),
        }
    }
    let mut out = Element::new(element.tag);
    for node in merged {
        let node = match node {
            Node::Text(text) => Node::Text(text.trim().replace("\r\n", "\n")),
            other => other,
        };
        if node != Node::Text(String::new()) {
            out.children.push(node);
        }
    }
    out
}

/// The trees the cross-checks use: every recorded message, and requests built here that
/// reach code pages the recordings do not.
fn sample_trees() -> Vec<(String, Element)> {
    use wbxml::tag::{
        airsync, calendar, composemail, folderhierarchy as fh, gal, itemoperations, r#move,
        provision, search, settings,
    };
    let mut trees = Vec::new();
    for x in exchanges() {
        trees.push((format!("{} request", x.name), decode(&x.request).unwrap()));
        if !x.response.is_empty() {
            trees.push((format!("{} response", x.name), decode(&x.response).unwrap()));
        }
    }
    trees.push((
        "MoveItems".into(),
        Element::new(r#move::MoveItems).child(
            Element::new(r#move::Move)
                .child(Element::with_text(r#move::SrcMsgId, "5"))
                .child(Element::with_text(r#move::SrcFldId, "a"))
                .child(Element::with_text(r#move::DstFldId, "b")),
        ),
    ));
    trees.push((
        "Search GAL".into(),
        Element::new(search::Search).child(
            Element::new(search::Response).child(
                Element::new(search::Store).child(
                    Element::new(search::Result).child(
                        Element::new(search::Properties)
                            .child(Element::with_text(gal::DisplayName, "Bob"))
                            .child(Element::with_text(gal::EmailAddress, "bob@example.test")),
                    ),
                ),
            ),
        ),
    ));
    trees.push((
        "Provision ack".into(),
        Element::new(provision::Provision).child(
            Element::new(provision::Policies).child(
                Element::new(provision::Policy)
                    .child(Element::with_text(
                        provision::PolicyType,
                        "MS-EAS-Provisioning-WBXML",
                    ))
                    .child(Element::with_text(provision::PolicyKey, "1307199584"))
                    .child(Element::with_text(provision::Status, "1")),
            ),
        ),
    ));
    trees.push((
        "FolderCreate".into(),
        Element::new(fh::FolderCreate)
            .child(Element::with_text(fh::SyncKey, "1"))
            .child(Element::with_text(fh::ParentId, "0"))
            .child(Element::with_text(fh::DisplayName, "Projekte Ä"))
            .child(Element::with_text(fh::Type, "12")),
    ));
    trees.push((
        "ItemOperations EmptyFolderContents".into(),
        Element::new(itemoperations::ItemOperations).child(
            Element::new(itemoperations::EmptyFolderContents)
                .child(Element::with_text(airsync::CollectionId, "9"))
                .child(
                    Element::new(itemoperations::Options)
                        .child(Element::new(itemoperations::DeleteSubFolders)),
                ),
        ),
    ));
    trees.push((
        "SmartReply with calendar tags".into(),
        Element::new(composemail::SmartReply)
            .child(Element::with_text(composemail::ClientId, "c1"))
            .child(
                Element::new(composemail::Source)
                    .child(Element::with_text(composemail::FolderId, "f"))
                    .child(Element::with_text(composemail::ItemId, "i")),
            )
            .child(Element::new(composemail::Mime).opaque(b"Subject: x\r\n\r\nbody\r\n".to_vec()))
            .child(
                Element::new(calendar::Attendees).child(
                    Element::new(calendar::Attendee)
                        .child(Element::with_text(calendar::Email, "a@x"))
                        .child(Element::with_text(calendar::AttendeeStatus, "3")),
                ),
            ),
    ));
    trees.push((
        "Settings Oof".into(),
        Element::new(settings::Settings).child(Element::new(settings::Oof).child(
            Element::new(settings::Get).child(Element::with_text(settings::BodyType, "Text")),
        )),
    ));
    trees
}

#[test]
fn code_pages_agree_with_libwbxml() {
    let mut differences = Vec::new();
    for &page in Page::ALL {
        // One document per page: an AirSync Sync root holding every tag of the page, empty.
        let mut root = Element::new(wbxml::tag::airsync::Sync);
        for (token, _) in page.tags() {
            root = root.child(Element::new(Tag::from_token(page, *token).unwrap()));
        }
        let xml = wbxml2xml(&encode(&root).unwrap());
        let mut theirs = xml
            .split('<')
            .skip_while(|piece| !piece.starts_with("Sync "))
            .skip(1)
            .map(|piece| piece.split([' ', '/', '>']).next().unwrap_or(""))
            .filter(|name| !name.is_empty());
        for (token, ours) in page.tags() {
            let their_name = theirs.next().unwrap_or("<missing>");
            let mapped = LIBWBXML_NAMES
                .iter()
                .find(|(t, _)| *t == their_name)
                .map_or(their_name, |(_, o)| *o);
            let absent = NOT_IN_LIBWBXML.contains(&(page, *token)) && their_name == "unknown";
            if mapped != *ours && !absent {
                differences.push(format!(
                    "{page:?} {token:#04x}: ours {ours}, libwbxml {their_name}"
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

#[test]
fn wbxml2xml_reads_what_we_encode() {
    for (name, tree) in sample_trees() {
        let xml = wbxml2xml(&encode(&tree).unwrap());
        assert_eq!(
            normalize(&from_libwbxml_xml(&xml), true),
            normalize(&tree, true),
            "{name}: libwbxml read our bytes differently:\n{xml}"
        );
    }
}

#[test]
fn we_read_what_xml2wbxml_encodes() {
    for (name, tree) in sample_trees() {
        // libwbxml's own XML for the tree (our bytes → wbxml2xml), encoded by xml2wbxml with
        // and without a string table, must decode with ours to the same tree.
        let xml = wbxml2xml(&encode(&tree).unwrap());
        for string_table in [false, true] {
            let bytes = xml2wbxml(&xml, string_table);
            let ours = decode(&bytes)
                .unwrap_or_else(|e| panic!("{name}: xml2wbxml bytes do not decode: {e}"));
            assert_eq!(
                normalize(&ours, false),
                normalize(&tree, false),
                "{name} (string table: {string_table})"
            );
        }
    }
}

#[test]
fn recorded_bodies_survive_a_libwbxml_round_trip_byte_for_byte() {
    // Where libwbxml keeps the content exactly (no text with edge whitespace), its encoder
    // and ours must agree on the body bytes after the header.
    let mut compared = 0;
    for x in exchanges() {
        for bytes in [&x.request, &x.response] {
            if bytes.is_empty() {
                continue;
            }
            let tree = decode(bytes).unwrap();
            if normalize(&tree, false) != tree {
                continue;
            }
            let theirs = xml2wbxml(&wbxml2xml(bytes), false);
            assert!(
                theirs.ends_with(&bytes[4..]),
                "{}: libwbxml body differs from ours",
                x.name
            );
            compared += 1;
        }
    }
    assert!(compared >= 25, "only {compared} recordings compared");
}
