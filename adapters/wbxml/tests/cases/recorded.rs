//! Known-answer tests from the recorded SOGo 14.1 exchanges (tests/fixtures, copied from
//! shared/specs/eas-sogo-14.1).

use wbxml::{Element, decode, encode, from_xml, to_xml};

use crate::support::{exchanges, hex};

/// Bytes must decode to `expected`, and the tree must re-encode to the same bytes.
fn check(what: &str, bytes: &[u8], expected: &Element, failures: &mut Vec<String>) {
    match decode(bytes) {
        Ok(tree) if &tree == expected => {}
        Ok(tree) => failures.push(format!(
            "{what}: decoded tree differs\n--- decoded\n{}--- recorded\n{}",
            to_xml(&tree),
            to_xml(expected)
        )),
        Err(e) => failures.push(format!("{what}: decode failed: {e}")),
    }
    match encode(expected) {
        Ok(out) if out == bytes => {}
        Ok(out) => failures.push(format!(
            "{what}: re-encoding differs\n ours {}\n recd {}",
            hex(&out),
            hex(bytes)
        )),
        Err(e) => failures.push(format!("{what}: encode failed: {e}")),
    }
}

#[test]
fn every_recorded_exchange_decodes_to_its_xml_and_reencodes_byte_for_byte() {
    let exchanges = exchanges();
    assert!(
        exchanges.len() >= 18,
        "expected the 18 recorded WBXML exchanges, found {}",
        exchanges.len()
    );
    let mut failures = Vec::new();
    let mut checked = 0;
    for x in &exchanges {
        if let Some(recorded_hex) = &x.request_hex {
            assert_eq!(&hex(&x.request), recorded_hex, "{}: hex in .txt", x.name);
        }
        let request_tree = from_xml(&x.request_xml)
            .unwrap_or_else(|e| panic!("{}: request XML does not parse: {e}", x.name));
        check(
            &format!("{} request", x.name),
            &x.request,
            &request_tree,
            &mut failures,
        );
        checked += 1;

        match &x.response_xml {
            None => assert!(x.response.is_empty(), "{}: body but no XML", x.name),
            Some(xml) => {
                let response_tree = from_xml(xml)
                    .unwrap_or_else(|e| panic!("{}: response XML does not parse: {e}", x.name));
                check(
                    &format!("{} response", x.name),
                    &x.response,
                    &response_tree,
                    &mut failures,
                );
                // Our rendering is the recording's rendering, byte for byte.
                if let Ok(tree) = decode(&x.response) {
                    let ours = to_xml(&tree);
                    if &ours != xml {
                        failures.push(format!(
                            "{} response: rendering differs\n--- ours\n{ours}--- recorded\n{xml}",
                            x.name
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_eq!(checked, 35, "18 requests and 17 non-empty responses");
}

#[test]
fn empty_sendmail_response_is_incomplete_not_malformed() {
    let x = exchanges()
        .into_iter()
        .find(|x| x.name.contains("SendMail"))
        .unwrap();
    assert!(x.response.is_empty());
    assert!(decode(&x.response).unwrap_err().is_incomplete());
}

#[test]
fn truncated_recordings_are_incomplete_at_every_length() {
    for x in exchanges() {
        for bytes in [&x.request, &x.response] {
            for len in 0..bytes.len() {
                let err = decode(&bytes[..len]).expect_err("a prefix is not a document");
                assert!(err.is_incomplete(), "{} at {len}: {err}", x.name);
                assert!(
                    err.offset() <= len,
                    "{} at {len}: offset {}",
                    x.name,
                    err.offset()
                );
            }
        }
    }
}

#[test]
fn typed_builder_writes_the_recorded_ping_request() {
    use wbxml::tag::ping;
    let request = Element::new(ping::Ping)
        .child(Element::with_text(ping::HeartbeatInterval, "30"))
        .child(
            Element::new(ping::Folders).child(
                Element::new(ping::Folder)
                    .child(Element::with_text(
                        ping::Id,
                        "mail%2F29a15518b73c086b0d42000083ecc375",
                    ))
                    .child(Element::with_text(ping::Class, "Email")),
            ),
        );
    let recorded = exchanges()
        .into_iter()
        .find(|x| x.name == "09-Ping-with-append")
        .unwrap();
    assert_eq!(encode(&request).unwrap(), recorded.request);
}

#[test]
fn accessors_read_a_recorded_sync_response() {
    use wbxml::tag::{airsync, airsyncbase, email, email2};
    let x = exchanges()
        .into_iter()
        .find(|x| x.name == "07-Sync-Inbox-getchanges")
        .unwrap();
    let sync = decode(&x.response).unwrap();
    let collection = sync
        .find_path(&[airsync::Collections, airsync::Collection])
        .unwrap();
    assert_eq!(collection.child_text(airsync::SyncKey), Some("1-4"));
    let adds: Vec<&Element> = collection
        .find(airsync::Commands)
        .unwrap()
        .find_all(airsync::Add)
        .collect();
    assert_eq!(adds.len(), 3);
    let data = adds[0].find(airsync::ApplicationData).unwrap();
    assert_eq!(
        data.child_text(email::Subject),
        Some("EAS lab message 1 (14.1)")
    );
    assert_eq!(
        data.find_path(&[airsyncbase::Body, airsyncbase::Data])
            .and_then(Element::text_value),
        Some("Body of message 1.\r\n")
    );
    assert_eq!(
        data.find(email2::ConversationId)
            .and_then(Element::bytes_value),
        Some(&b"<179570195282.17364.13745668579306879173@example.test>"[..])
    );
}
