//! Known-answer tests of the typed command layer against the recorded SOGo 14.1 exchanges
//! (the `wbxml` crate's fixtures): requests encode to the recorded bytes, responses parse to
//! the recorded values, and malformed bodies give errors, not panics.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

mod settings;

use eas::command::*;
use wbxml::{Element, decode, encode, tag};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../wbxml/tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn response(name: &str) -> Element {
    decode(&fixture(&format!("{name}.resp.wbxml"))).unwrap()
}

/// A request builder gives exactly the bytes the recorded client sent.
fn check_request(name: &str, built: Element) {
    assert_eq!(
        encode(&built).unwrap(),
        fixture(&format!("{name}.req.wbxml")),
        "{name}: {}",
        wbxml::to_xml(&built)
    );
}

const INBOX: &str = "mail%2F29a15518b73c086b0d42000083ecc375";

#[test]
fn folder_sync_request_and_response() {
    check_request(
        "03-FolderSync-0",
        FolderSync {
            sync_key: "0".into(),
        }
        .to_element(),
    );
    let r = FolderSyncResponse::from_element(&response("03-FolderSync-0")).unwrap();
    assert_eq!(r.status, 1);
    assert_eq!(r.sync_key.as_deref(), Some("vm_4269_30b87440_0"));
    assert_eq!(r.changes.len(), 9);
    let FolderChange::Add(inbox) = &r.changes[0] else {
        panic!("{:?}", r.changes[0])
    };
    assert_eq!(inbox.server_id, INBOX);
    assert_eq!(inbox.display_name, "INBOX");
    assert_eq!(inbox.parent_id, "0");
    assert_eq!(inbox.folder_type, FolderType::INBOX);
    let mail: Vec<_> = r
        .changes
        .iter()
        .filter_map(|c| match c {
            FolderChange::Add(f) if f.folder_type.is_mail() => Some(f.display_name.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        mail,
        ["INBOX", "Drafts", "Sent", "Trash", "Junk", "Templates"]
    );
    let again = FolderSyncResponse::from_element(&response("05-FolderSync-again")).unwrap();
    assert_eq!((again.status, again.changes.len()), (1, 0));
}

#[test]
fn provision_request_and_no_policy_answer() {
    check_request(
        "04-Provision-1-request",
        Provision::Request {
            model: "eas-lab".into(),
            friendly_name: "eas-lab proof".into(),
            user_agent: "eas-lab-proof/1.0".into(),
        }
        .to_element(),
    );
    let r = ProvisionResponse::from_element(&response("04-Provision-1-request")).unwrap();
    assert_eq!(r.status, 1);
    assert_eq!(
        r.policy,
        Some(ProvisionedPolicy {
            status: 2,
            policy_key: None
        })
    );
    assert!(!r.remote_wipe);
}

fn getchanges(key: &str) -> SyncCollection {
    SyncCollection {
        sync_key: key.into(),
        collection_id: INBOX.into(),
        get_changes: true,
        window_size: Some(50),
        deletes_as_moves: Some(true),
        options: Some(SyncOptions {
            filter_type: Some(0),
            body_preference: Some(BodyPreference {
                body_type: 1,
                truncation_size: Some(2000),
            }),
            mime_support: None,
        }),
        commands: vec![],
    }
}

#[test]
fn sync_requests_match_the_recorded_bytes() {
    check_request(
        "06-Sync-Inbox-key0",
        Sync {
            collections: vec![SyncCollection::initial(INBOX)],
        }
        .to_element(),
    );
    check_request(
        "07-Sync-Inbox-getchanges",
        Sync {
            collections: vec![getchanges("-1")],
        }
        .to_element(),
    );
    let mut change = getchanges("5-5");
    change.commands = vec![ClientCommand::Change {
        server_id: "1".into(),
        data: vec![Element::with_text(tag::email::Read, "1")],
    }];
    check_request(
        "15-Sync-client-change-read",
        Sync {
            collections: vec![change],
        }
        .to_element(),
    );
}

#[test]
fn sync_responses_parse() {
    let key0 = SyncResponse::from_element(&response("06-Sync-Inbox-key0")).unwrap();
    let c = key0.collection(INBOX).unwrap();
    assert_eq!((c.status, c.sync_key.as_deref()), (1, Some("-1")));
    assert!(c.commands.is_empty() && !c.more_available);

    let adds = SyncResponse::from_element(&response("07-Sync-Inbox-getchanges")).unwrap();
    let c = adds.collection(INBOX).unwrap();
    assert_eq!(c.sync_key.as_deref(), Some("1-4"));
    let ids: Vec<_> = c
        .commands
        .iter()
        .map(|cmd| match cmd {
            ServerCommand::Add { server_id, data } => {
                assert_eq!(data.tag, tag::airsync::ApplicationData);
                server_id.as_str()
            }
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);

    let changed = SyncResponse::from_element(&response("16-Sync-after-imap-changes")).unwrap();
    let c = changed.collection(INBOX).unwrap();
    assert_eq!(c.sync_key.as_deref(), Some("5-9"));
    assert!(
        matches!(&c.commands[0], ServerCommand::Delete { server_id, soft: false } if server_id == "3")
    );
    assert!(matches!(&c.commands[1], ServerCommand::Change { server_id, .. } if server_id == "2"));

    let responded = SyncResponse::from_element(&response("15-Sync-client-change-read")).unwrap();
    assert_eq!(
        responded.collection(INBOX).unwrap().responses,
        [ClientResponse {
            kind: "Change",
            server_id: Some("1".into()),
            status: 1
        }]
    );
}

#[test]
fn ping_request_and_responses() {
    check_request(
        "09-Ping-with-append",
        Ping {
            heartbeat: 30,
            folders: vec![PingFolder {
                id: INBOX.into(),
                class: "Email".into(),
            }],
        }
        .to_element(),
    );
    let changed = PingResponse::from_element(&response("09-Ping-with-append")).unwrap();
    assert_eq!(
        (changed.status, changed.folders.as_slice()),
        (2, [INBOX.to_owned()].as_slice())
    );
    let idle = PingResponse::from_element(&response("13-Ping-idle-10s")).unwrap();
    assert_eq!((idle.status, idle.folders.len()), (1, 0));
    let over = PingResponse::from_element(&response("14-Ping-idle-70s-over-max")).unwrap();
    assert_eq!((over.status, over.heartbeat), (5, Some(60)));
}

#[test]
fn item_operations_fetch_gives_the_mime() {
    check_request(
        "17-ItemOperations-Fetch-MIME",
        Fetch {
            collection_id: INBOX.into(),
            server_id: "2".into(),
        }
        .to_element(),
    );
    let r = FetchResponse::from_element(&response("17-ItemOperations-Fetch-MIME")).unwrap();
    assert_eq!((r.status, r.fetch_status), (1, Some(1)));
    let mime = String::from_utf8(r.data.unwrap()).unwrap();
    assert!(mime.starts_with("From: Bob <bob@example.test>"), "{mime}");
    assert!(mime.contains("Subject: EAS lab message 2 (14.1)"), "{mime}");
    assert!(mime.ends_with("Body of message 2.\n") || mime.ends_with("Body of message 2.\r\n"));
}

#[test]
fn get_item_estimate_request_and_response() {
    check_request(
        "18-GetItemEstimate",
        GetItemEstimate {
            sync_key: "5-9".into(),
            collection_id: INBOX.into(),
        }
        .to_element(),
    );
    let r = GetItemEstimateResponse::from_element(&response("18-GetItemEstimate")).unwrap();
    assert_eq!(
        r.responses,
        [ItemEstimate {
            status: 1,
            collection_id: Some(INBOX.into()),
            estimate: Some(0)
        }]
    );
}

#[test]
fn send_mail_request_carries_the_mime_as_opaque() {
    let recorded = decode(&fixture("20-SendMail.req.wbxml")).unwrap();
    let mime = recorded
        .find(tag::composemail::Mime)
        .and_then(Element::bytes_value)
        .unwrap()
        .to_vec();
    check_request(
        "20-SendMail",
        SendMail {
            client_id: "easlab-1795702030014".into(),
            save_in_sent_items: true,
            mime,
        }
        .to_element(),
    );
}

#[test]
fn move_items_round_trip() {
    let request = MoveItems {
        moves: vec![MoveItem {
            src_msg_id: "4".into(),
            src_fld_id: "a".into(),
            dst_fld_id: "b".into(),
        }],
    };
    let bytes = encode(&request.to_element()).unwrap();
    assert_eq!(decode(&bytes).unwrap(), request.to_element());
    let answer = wbxml::from_xml(
        r#"<MoveItems xmlns="Move:"><Response><SrcMsgId>4</SrcMsgId><Status>3</Status><DstMsgId>9</DstMsgId></Response></MoveItems>"#,
    )
    .unwrap();
    assert_eq!(
        MoveItemsResponse::from_element(&answer).unwrap().results,
        [MoveResult {
            src_msg_id: "4".into(),
            status: 3,
            dst_msg_id: Some("9".into())
        }]
    );
}

/// Every malformed shape gives a ParseError naming the command.
#[test]
fn malformed_responses_are_errors() {
    let check = |xml: &str, expected: &str| {
        let root = wbxml::from_xml(xml).unwrap();
        let errors = [
            FolderSyncResponse::from_element(&root).err(),
            SyncResponse::from_element(&root).err(),
            PingResponse::from_element(&root).err(),
            FetchResponse::from_element(&root).err(),
            MoveItemsResponse::from_element(&root).err(),
            ProvisionResponse::from_element(&root).err(),
        ];
        let hit = errors
            .iter()
            .flatten()
            .any(|e| e.to_string().contains(expected));
        assert!(hit, "{xml}: {errors:?}");
        // None of them accepts it.
        assert!(errors.iter().all(Option::is_some), "{xml}: {errors:?}");
    };
    check(
        r#"<Sync xmlns="AirSync:"/>"#,
        "neither Status nor Collections",
    );
    check(
        r#"<Sync xmlns="AirSync:"><Collections><Collection><Status>1</Status></Collection></Collections></Sync>"#,
        "Collection lacks CollectionId",
    );
    check(
        r#"<Sync xmlns="AirSync:"><Collections><Collection><CollectionId>x</CollectionId><Status>one</Status></Collection></Collections></Sync>"#,
        "Status is \"one\", not a number",
    );
    check(
        r#"<FolderSync xmlns="FolderHierarchy:"><Status>1</Status></FolderSync>"#,
        "Status 1 without a SyncKey",
    );
    check(
        r#"<FolderSync xmlns="FolderHierarchy:"><Status>1</Status><SyncKey>k</SyncKey><Changes><Add><ServerId>a</ServerId><DisplayName>x</DisplayName></Add></Changes></FolderSync>"#,
        "Add lacks Type",
    );
    check(
        r#"<Ping xmlns="Ping:"><Folders/></Ping>"#,
        "Ping lacks Status",
    );
    check(
        r#"<Settings xmlns="Settings:"><Status>1</Status></Settings>"#,
        "top-level element is Settings:Settings",
    );
}

/// Decoding any truncation of a recorded response and parsing it never panics.
#[test]
fn truncated_bodies_never_panic() {
    for name in [
        "03-FolderSync-0",
        "07-Sync-Inbox-getchanges",
        "09-Ping-with-append",
        "17-ItemOperations-Fetch-MIME",
    ] {
        let bytes = fixture(&format!("{name}.resp.wbxml"));
        for cut in 0..bytes.len() {
            if let Ok(root) = decode(&bytes[..cut]) {
                let _ = SyncResponse::from_element(&root);
                let _ = FolderSyncResponse::from_element(&root);
                let _ = PingResponse::from_element(&root);
                let _ = FetchResponse::from_element(&root);
            }
        }
    }
}
