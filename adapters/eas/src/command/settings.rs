//! Settings Oof (MS-ASCMD 2.2.1.18, 2.2.3.122): read and write the out-of-office auto-reply.
//!
//! Times travel as the EAS datetime form (`2030-01-02T03:04:05.000Z`) and are held here as
//! seconds since the Unix epoch. A response whose `Settings` has no `Oof` element is kept
//! apart (`oof: None`): that is how a server that ignores the property answers (SOGo with
//! vacation turned off), and the account turns it into "not supported".

use wbxml::Element;
use wbxml::tag::settings as st;

use super::{ParseError, expect_root, leaf, number, opt_number, opt_text};

const SETTINGS: &str = "Settings";

/// `OofState`: whether and when the auto-reply is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OofState {
    /// 0: off.
    Disabled,
    /// 1: on until turned off.
    Global,
    /// 2: on between `StartTime` and `EndTime`.
    TimeBased,
}

impl OofState {
    fn code(self) -> u32 {
        match self {
            OofState::Disabled => 0,
            OofState::Global => 1,
            OofState::TimeBased => 2,
        }
    }

    fn from_code(code: u32) -> Option<OofState> {
        match code {
            0 => Some(OofState::Disabled),
            1 => Some(OofState::Global),
            2 => Some(OofState::TimeBased),
            _ => None,
        }
    }
}

/// `BodyType` of an OOF message: `Text` or `HTML`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OofBodyType {
    Text,
    Html,
}

impl OofBodyType {
    fn as_str(self) -> &'static str {
        match self {
            OofBodyType::Text => "Text",
            OofBodyType::Html => "HTML",
        }
    }

    /// Case-insensitive: SOGo answers `TEXT`.
    fn parse(value: &str) -> Option<OofBodyType> {
        let v = value.trim();
        if v.eq_ignore_ascii_case("text") {
            Some(OofBodyType::Text)
        } else if v.eq_ignore_ascii_case("html") {
            Some(OofBodyType::Html)
        } else {
            None
        }
    }
}

/// Who an OOF message is for (`AppliesToInternal`, `…ExternalKnown`, `…ExternalUnknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OofAudience {
    /// Senders in the user's organisation.
    Internal,
    /// Outside senders in the user's contacts.
    ExternalKnown,
    /// Any other outside sender.
    ExternalUnknown,
}

impl OofAudience {
    const ALL: [OofAudience; 3] = [
        OofAudience::Internal,
        OofAudience::ExternalKnown,
        OofAudience::ExternalUnknown,
    ];

    fn tag(self) -> wbxml::Tag {
        match self {
            OofAudience::Internal => st::AppliesToInternal,
            OofAudience::ExternalKnown => st::AppliesToExternalKnown,
            OofAudience::ExternalUnknown => st::AppliesToExternalUnknown,
        }
    }
}

/// One `OofMessage`: the reply one audience gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OofMessage {
    pub audience: OofAudience,
    /// `Enabled`; `None` when the server did not say (never sent as `None` by builders here).
    pub enabled: Option<bool>,
    /// `ReplyMessage`; an empty element reads as `None`.
    pub reply_message: Option<String>,
    /// Required on the wire whenever `reply_message` is present; `to_element` sends `Text`
    /// if it is missing.
    pub body_type: Option<OofBodyType>,
}

/// The out-of-office setting as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OofSettings {
    pub state: OofState,
    /// Seconds since the epoch; only meaningful (and only sent) with [`OofState::TimeBased`].
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub messages: Vec<OofMessage>,
}

/// The end used for a time-based reply that has a start but no end: 2100-01-01T00:00:00Z
/// (EAS needs both StartTime and EndTime).
pub const OPEN_END: i64 = 4_102_444_800;

impl OofSettings {
    /// The auto-reply off, no message sent.
    pub fn disabled() -> OofSettings {
        OofSettings {
            state: OofState::Disabled,
            start_time: None,
            end_time: None,
            messages: Vec::new(),
        }
    }

    /// A vacation reply as JMAP describes one, in EAS terms.
    ///
    /// No dates: [`OofState::Global`]. Any date: [`OofState::TimeBased`], since EAS cannot
    /// say "from X on" or "until Y" alone: a missing start is `now`, a missing end
    /// [`OPEN_END`]. The text (else the HTML) body becomes the reply for all three audiences;
    /// with neither, the messages carry only `Enabled`. Disabled is state 0 with every
    /// audience disabled; the text still goes along, so the server keeps it.
    pub fn vacation(
        enabled: bool,
        from: Option<i64>,
        to: Option<i64>,
        text: Option<&str>,
        html: Option<&str>,
        now: i64,
    ) -> OofSettings {
        let (state, start_time, end_time) = match (from, to) {
            (None, None) => (OofState::Global, None, None),
            (from, to) => (
                OofState::TimeBased,
                Some(from.unwrap_or(now)),
                Some(to.unwrap_or(OPEN_END)),
            ),
        };
        let reply = match (text, html) {
            (Some(t), _) => Some((t.to_owned(), OofBodyType::Text)),
            (None, Some(h)) => Some((h.to_owned(), OofBodyType::Html)),
            (None, None) => None,
        };
        let messages = OofAudience::ALL
            .into_iter()
            .map(|audience| OofMessage {
                audience,
                enabled: Some(enabled),
                reply_message: reply.as_ref().map(|(r, _)| r.clone()),
                body_type: reply.as_ref().map(|(_, b)| *b),
            })
            .collect();
        OofSettings {
            state: if enabled { state } else { OofState::Disabled },
            start_time,
            end_time,
            messages,
        }
    }

    /// The message for `audience`, if the server reported or the caller set one.
    pub fn message(&self, audience: OofAudience) -> Option<&OofMessage> {
        self.messages.iter().find(|m| m.audience == audience)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.000Z`, the EAS datetime form.
pub fn format_datetime(epoch: i64) -> String {
    let (y, m, d) = upstream::civil::civil_from_days(epoch.div_euclid(86_400));
    let secs = epoch.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// A Settings request with one Oof operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsOof {
    /// Read the setting, messages in this format.
    Get(OofBodyType),
    /// Replace the setting.
    Set(OofSettings),
}

impl SettingsOof {
    pub fn to_element(&self) -> Element {
        let operation = match self {
            SettingsOof::Get(body_type) => {
                Element::new(st::Get).child(leaf(st::BodyType, body_type.as_str()))
            }
            SettingsOof::Set(s) => {
                let mut set =
                    Element::new(st::Set).child(leaf(st::OofState, s.state.code().to_string()));
                if s.state == OofState::TimeBased {
                    // Both or neither: one alone is status 2.
                    if let (Some(start), Some(end)) = (s.start_time, s.end_time) {
                        set = set
                            .child(leaf(st::StartTime, format_datetime(start)))
                            .child(leaf(st::EndTime, format_datetime(end)));
                    }
                }
                set.children(s.messages.iter().map(message_element))
            }
        };
        Element::new(st::Settings).child(Element::new(st::Oof).child(operation))
    }
}

fn message_element(m: &OofMessage) -> Element {
    let mut e = Element::new(st::OofMessage).child(Element::new(m.audience.tag()));
    if let Some(enabled) = m.enabled {
        e = e.child(leaf(st::Enabled, if enabled { "1" } else { "0" }));
    }
    if let Some(reply) = &m.reply_message {
        let body_type = m.body_type.unwrap_or(OofBodyType::Text);
        e = e
            .child(leaf(st::ReplyMessage, reply))
            .child(leaf(st::BodyType, body_type.as_str()));
    } else if let Some(body_type) = m.body_type {
        e = e.child(leaf(st::BodyType, body_type.as_str()));
    }
    e
}

/// What the `Oof` element of a Settings response holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OofResult {
    /// The Oof status; `None` when the server left it out (SOGo does in Get answers).
    pub status: Option<u32>,
    /// The setting, in a Get answer.
    pub settings: Option<OofSettings>,
}

/// A Settings response to an Oof request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsOofResponse {
    /// The Settings status (1 success, 2 protocol error, 3 access denied, 4 server
    /// unavailable, 5 invalid arguments, 6 conflicting arguments, 7 denied by policy).
    pub status: u32,
    /// `None`: the server answered without an Oof element, i.e. ignored the request.
    pub oof: Option<OofResult>,
}

impl SettingsOofResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, st::Settings, SETTINGS)?;
        let status = number(root, st::Status, SETTINGS)?;
        let oof = match root.find(st::Oof) {
            None => None,
            Some(oof) => Some(OofResult {
                status: opt_number(oof, st::Status, SETTINGS)?,
                settings: match oof.find(st::Get) {
                    Some(get) => Some(parse_get(get)?),
                    None => None,
                },
            }),
        };
        Ok(SettingsOofResponse { status, oof })
    }
}

fn time(parent: &Element, tag: wbxml::Tag) -> Result<Option<i64>, ParseError> {
    match opt_text(parent, tag, SETTINGS)? {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => crate::email::parse_utc(v).map(Some).ok_or_else(|| {
            ParseError::new(SETTINGS, format!("{} is {v:?}, not a date", tag.xml_name()))
        }),
    }
}

fn parse_get(get: &Element) -> Result<OofSettings, ParseError> {
    let state = match opt_number(get, st::OofState, SETTINGS)? {
        None => OofState::Disabled,
        Some(code) => OofState::from_code(code).ok_or_else(|| {
            ParseError::new(SETTINGS, format!("OofState {code} is not 0, 1 or 2"))
        })?,
    };
    let messages = get
        .find_all(st::OofMessage)
        .map(|m| {
            let audience = OofAudience::ALL
                .into_iter()
                .find(|a| m.find(a.tag()).is_some())
                .ok_or_else(|| ParseError::new(SETTINGS, "OofMessage names no audience"))?;
            let enabled = match opt_number(m, st::Enabled, SETTINGS)? {
                None => None,
                Some(0) => Some(false),
                Some(1) => Some(true),
                Some(n) => {
                    return Err(ParseError::new(
                        SETTINGS,
                        format!("Enabled is {n}, not 0 or 1"),
                    ));
                }
            };
            let body_type = match opt_text(m, st::BodyType, SETTINGS)? {
                None => None,
                Some(v) if v.trim().is_empty() => None,
                Some(v) => Some(OofBodyType::parse(v).ok_or_else(|| {
                    ParseError::new(SETTINGS, format!("BodyType is {v:?}, not Text or HTML"))
                })?),
            };
            Ok(OofMessage {
                audience,
                enabled,
                reply_message: opt_text(m, st::ReplyMessage, SETTINGS)?
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned),
                body_type,
            })
        })
        .collect::<Result<_, ParseError>>()?;
    Ok(OofSettings {
        state,
        start_time: time(get, st::StartTime)?,
        end_time: time(get, st::EndTime)?,
        messages,
    })
}

/// What a Settings or Oof status code means (MS-ASCMD 2.2.3.177.15).
pub fn settings_status_meaning(code: u32) -> &'static str {
    match code {
        1 => "success",
        2 => "protocol error",
        3 => "access denied",
        4 => "server unavailable",
        5 => "invalid arguments",
        6 => "conflicting arguments",
        7 => "denied by policy",
        _ => "unexpected status",
    }
}
