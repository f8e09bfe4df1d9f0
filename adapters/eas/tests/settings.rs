//! Settings Oof: requests encode to hand-assembled WBXML, responses (hand-assembled in the
//! shape SOGo 5.8 sends, and SOGo's real answer with vacation turned off) parse.

use eas::command::*;
use wbxml::{decode, encode};

/// WBXML 1.3, public id 1, UTF-8, no string table, then SWITCH_PAGE to Settings (18).
const HEAD: [u8; 6] = [0x03, 0x01, 0x6a, 0x00, 0x00, 0x12];
const END: u8 = 0x01;

/// `<tag>text</tag>` for a Settings tag code (content bit set, STR_I, END).
fn text(code: u8, value: &str) -> Vec<u8> {
    let mut b = vec![code | 0x40, 0x03];
    b.extend_from_slice(value.as_bytes());
    b.extend_from_slice(&[0x00, END]);
    b
}

fn doc(parts: &[&[u8]]) -> Vec<u8> {
    let mut b = HEAD.to_vec();
    for p in parts {
        b.extend_from_slice(p);
    }
    b
}

// Settings page tag codes (MS-ASWBXML code page 18).
const SETTINGS: u8 = 0x05;
const STATUS: u8 = 0x06;
const GET: u8 = 0x07;
const SET: u8 = 0x08;
const OOF: u8 = 0x09;
const OOF_STATE: u8 = 0x0A;
const START_TIME: u8 = 0x0B;
const END_TIME: u8 = 0x0C;
const OOF_MESSAGE: u8 = 0x0D;
const INTERNAL: u8 = 0x0E;
const EXTERNAL_KNOWN: u8 = 0x0F;
const EXTERNAL_UNKNOWN: u8 = 0x10;
const ENABLED: u8 = 0x11;
const REPLY_MESSAGE: u8 = 0x12;
const BODY_TYPE: u8 = 0x13;

fn open(code: u8) -> u8 {
    code | 0x40
}

const JAN_1_2030: i64 = 1_893_456_000;
const JAN_15_2030: i64 = 1_894_665_600;

#[test]
fn oof_get_request_bytes() {
    let built = encode(&SettingsOof::Get(OofBodyType::Text).to_element()).unwrap();
    let expected = doc(&[
        &[open(SETTINGS), open(OOF), open(GET)],
        &text(BODY_TYPE, "Text"),
        &[END, END, END],
    ]);
    assert_eq!(built, expected);
    // The exact request SOGo was probed with.
    assert_eq!(
        built,
        [
            0x03, 0x01, 0x6a, 0x00, 0x00, 0x12, 0x45, 0x49, 0x47, 0x53, 0x03, b'T', b'e', b'x',
            b't', 0x00, 0x01, 0x01, 0x01, 0x01
        ]
    );
}

#[test]
fn oof_set_request_bytes() {
    let settings = OofSettings {
        state: OofState::TimeBased,
        start_time: Some(JAN_1_2030),
        end_time: Some(JAN_15_2030),
        messages: vec![
            OofMessage {
                audience: OofAudience::Internal,
                enabled: Some(true),
                reply_message: Some("Away".into()),
                body_type: Some(OofBodyType::Text),
            },
            OofMessage {
                audience: OofAudience::ExternalUnknown,
                enabled: Some(false),
                reply_message: None,
                body_type: None,
            },
        ],
    };
    let built = encode(&SettingsOof::Set(settings).to_element()).unwrap();
    let expected = doc(&[
        &[open(SETTINGS), open(OOF), open(SET)],
        &text(OOF_STATE, "2"),
        &text(START_TIME, "2030-01-01T00:00:00.000Z"),
        &text(END_TIME, "2030-01-15T00:00:00.000Z"),
        &[open(OOF_MESSAGE), INTERNAL],
        &text(ENABLED, "1"),
        &text(REPLY_MESSAGE, "Away"),
        &text(BODY_TYPE, "Text"),
        &[END],
        &[open(OOF_MESSAGE), EXTERNAL_UNKNOWN],
        &text(ENABLED, "0"),
        &[END],
        &[END, END, END],
    ]);
    assert_eq!(built, expected);
}

#[test]
fn oof_set_sends_times_only_for_the_time_based_state() {
    let mut s = OofSettings::vacation(true, None, None, None, Some("<p>x</p>"), 0);
    assert_eq!(s.state, OofState::Global);
    s.start_time = Some(JAN_1_2030);
    s.end_time = Some(JAN_15_2030);
    let xml = wbxml::to_xml(&SettingsOof::Set(s).to_element());
    assert!(
        !xml.contains("StartTime") && !xml.contains("EndTime"),
        "{xml}"
    );
    assert!(xml.contains("<BodyType>HTML</BodyType>"), "{xml}");
    assert!(xml.contains("<OofState>1</OofState>"), "{xml}");
}

#[test]
fn oof_get_response_parses() {
    // The shape SOGo 5.8 answers with vacation enabled (no Oof Status, BodyType "TEXT",
    // empty ReplyMessage for the external audiences).
    let bytes = doc(&[
        &[open(SETTINGS)],
        &text(STATUS, "1"),
        &[open(OOF), open(GET)],
        &text(OOF_STATE, "2"),
        &text(START_TIME, "2030-01-01T00:00:00.000Z"),
        &text(END_TIME, "2030-01-15T00:00:00.000Z"),
        &[open(OOF_MESSAGE), INTERNAL],
        &text(ENABLED, "1"),
        &text(REPLY_MESSAGE, "Away"),
        &text(BODY_TYPE, "TEXT"),
        &[END],
        &[open(OOF_MESSAGE), EXTERNAL_KNOWN],
        &text(ENABLED, "0"),
        &[REPLY_MESSAGE, END],
        &[open(OOF_MESSAGE), EXTERNAL_UNKNOWN],
        &text(ENABLED, "0"),
        &[REPLY_MESSAGE, END],
        &[END, END, END],
    ]);
    let r = SettingsOofResponse::from_element(&decode(&bytes).unwrap()).unwrap();
    assert_eq!(r.status, 1);
    let oof = r.oof.unwrap();
    assert_eq!(oof.status, None);
    let s = oof.settings.unwrap();
    assert_eq!(s.state, OofState::TimeBased);
    assert_eq!(
        (s.start_time, s.end_time),
        (Some(JAN_1_2030), Some(JAN_15_2030))
    );
    assert_eq!(
        s.message(OofAudience::Internal),
        Some(&OofMessage {
            audience: OofAudience::Internal,
            enabled: Some(true),
            reply_message: Some("Away".into()),
            body_type: Some(OofBodyType::Text),
        })
    );
    let known = s.message(OofAudience::ExternalKnown).unwrap();
    assert_eq!(
        (known.enabled, known.reply_message.as_deref()),
        (Some(false), None)
    );
    assert_eq!(s.messages.len(), 3);
}

#[test]
fn sogo_without_vacation_answers_no_oof_element() {
    // Recorded from the test stack (SOGo 5.8, SOGoVacationEnabled = NO) for an Oof Get.
    let bytes = [
        0x03, 0x01, 0x6a, 0x00, 0x00, 0x12, 0x45, 0x46, 0x03, 0x31, 0x00, 0x01, 0x01,
    ];
    let r = SettingsOofResponse::from_element(&decode(&bytes).unwrap()).unwrap();
    assert_eq!((r.status, r.oof), (1, None));
}

#[test]
fn oof_set_and_error_statuses_parse() {
    let answer = |settings: &str, oof: &str| {
        let mut parts = vec![vec![open(SETTINGS)], text(STATUS, settings)];
        parts.push(vec![open(OOF)]);
        parts.push(text(STATUS, oof));
        parts.push(vec![END, END]);
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        SettingsOofResponse::from_element(&decode(&doc(&refs)).unwrap()).unwrap()
    };
    let ok = answer("1", "1");
    assert_eq!(ok.status, 1);
    assert_eq!(
        ok.oof,
        Some(OofResult {
            status: Some(1),
            settings: None
        })
    );
    let denied = answer("1", "5");
    assert_eq!(denied.oof.unwrap().status, Some(5));
    assert_eq!(answer("3", "1").status, 3);
    assert_eq!(settings_status_meaning(3), "access denied");
    assert_eq!(settings_status_meaning(5), "invalid arguments");
}

#[test]
fn malformed_oof_answers_are_errors() {
    let check = |xml: &str, expected: &str| {
        let root = wbxml::from_xml(xml).unwrap();
        let err = SettingsOofResponse::from_element(&root).unwrap_err();
        assert!(err.to_string().contains(expected), "{xml}: {err}");
    };
    check(
        r#"<Settings xmlns="Settings:"><Oof/></Settings>"#,
        "Settings lacks Status",
    );
    check(
        r#"<Settings xmlns="Settings:"><Status>1</Status><Oof><Get><OofState>7</OofState></Get></Oof></Settings>"#,
        "OofState 7",
    );
    check(
        r#"<Settings xmlns="Settings:"><Status>1</Status><Oof><Get><OofMessage><Enabled>1</Enabled></OofMessage></Get></Oof></Settings>"#,
        "names no audience",
    );
    check(
        r#"<Settings xmlns="Settings:"><Status>1</Status><Oof><Get><StartTime>soon</StartTime></Get></Oof></Settings>"#,
        "StartTime is \"soon\"",
    );
    check(
        r#"<Settings xmlns="Settings:"><Status>1</Status><Oof><Get><OofMessage><AppliesToInternal/><BodyType>RTF</BodyType></OofMessage></Get></Oof></Settings>"#,
        "not Text or HTML",
    );
    check(r#"<Ping xmlns="Ping:"/>"#, "top-level element is Ping:Ping");
}

#[test]
fn vacation_maps_to_states_dates_and_audiences() {
    let now = 1_800_000_000;
    let v = OofSettings::vacation(true, None, None, Some("Back soon"), Some("<b>x</b>"), now);
    assert_eq!(
        (v.state, v.start_time, v.end_time),
        (OofState::Global, None, None)
    );
    assert_eq!(v.messages.len(), 3);
    for m in &v.messages {
        assert_eq!(m.enabled, Some(true));
        assert_eq!(m.reply_message.as_deref(), Some("Back soon"));
        assert_eq!(m.body_type, Some(OofBodyType::Text));
    }

    let both = OofSettings::vacation(true, Some(JAN_1_2030), Some(JAN_15_2030), None, None, now);
    assert_eq!(
        (both.state, both.start_time, both.end_time),
        (OofState::TimeBased, Some(JAN_1_2030), Some(JAN_15_2030))
    );
    assert!(
        both.messages
            .iter()
            .all(|m| m.reply_message.is_none() && m.body_type.is_none())
    );

    let from_only = OofSettings::vacation(true, Some(JAN_1_2030), None, None, None, now);
    assert_eq!(
        (from_only.start_time, from_only.end_time),
        (Some(JAN_1_2030), Some(OPEN_END))
    );
    let to_only = OofSettings::vacation(true, None, Some(JAN_15_2030), None, None, now);
    assert_eq!(
        (to_only.start_time, to_only.end_time),
        (Some(now), Some(JAN_15_2030))
    );

    let html = OofSettings::vacation(true, None, None, None, Some("<b>x</b>"), now);
    assert_eq!(html.messages[0].body_type, Some(OofBodyType::Html));
    assert_eq!(html.messages[0].reply_message.as_deref(), Some("<b>x</b>"));

    let off = OofSettings::vacation(
        false,
        Some(JAN_1_2030),
        Some(JAN_15_2030),
        Some("t"),
        None,
        now,
    );
    assert_eq!(off.state, OofState::Disabled);
    assert!(off.messages.iter().all(|m| m.enabled == Some(false)));
    let xml = wbxml::to_xml(&SettingsOof::Set(off).to_element());
    assert!(
        xml.contains("<OofState>0</OofState>") && !xml.contains("StartTime"),
        "{xml}"
    );
}

#[test]
fn datetimes_are_formatted_the_eas_way() {
    assert_eq!(format_datetime(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(
        format_datetime(JAN_1_2030 + 3_723),
        "2030-01-01T01:02:03.000Z"
    );
    assert_eq!(format_datetime(OPEN_END), "2100-01-01T00:00:00.000Z");
}

/// Every truncation of a Get answer decodes to an error or parses without a panic.
#[test]
fn truncated_oof_answers_never_panic() {
    let bytes = doc(&[
        &[open(SETTINGS)],
        &text(STATUS, "1"),
        &[open(OOF), open(GET)],
        &text(OOF_STATE, "1"),
        &[open(OOF_MESSAGE), INTERNAL],
        &text(REPLY_MESSAGE, "Away"),
        &[END, END, END, END],
    ]);
    for cut in 0..bytes.len() {
        if let Ok(root) = decode(&bytes[..cut]) {
            let _ = SettingsOofResponse::from_element(&root);
        }
    }
}
