//! The typed request/response layer: one type per EAS command body, built on `wbxml::Element`.
//!
//! Requests turn into element trees with `to_element`; responses are read from decoded trees
//! with `from_element`, which checks the root tag and every element the adapter relies on and
//! reports a [`ParseError`] naming the command and the problem. Nothing here panics on what a
//! server sends, and nothing here does I/O.

mod folder;
mod items;
mod ping;
mod provision;
mod send;
mod settings;
mod sync;

pub use folder::{
    Folder, FolderChange, FolderCreate, FolderCreateResponse, FolderDelete, FolderSync,
    FolderSyncResponse, FolderType, FolderUpdate, FolderUpdateResponse,
};
pub use items::{
    Fetch, FetchResponse, GetItemEstimate, GetItemEstimateResponse, ItemEstimate, MoveItem,
    MoveItems, MoveItemsResponse, MoveResult,
};
pub use ping::{Ping, PingFolder, PingResponse};
pub use provision::{Provision, ProvisionResponse, ProvisionedPolicy};
pub use send::{SendMail, SendMailResponse, SmartKind, SmartSend, SmartSendResponse};
pub use settings::{
    OPEN_END, OofAudience, OofBodyType, OofMessage, OofResult, OofSettings, OofState, SettingsOof,
    SettingsOofResponse, format_datetime, settings_status_meaning,
};
pub(crate) use sync::node_text;
pub use sync::{
    BodyPreference, ClientCommand, ClientResponse, ServerCommand, Sync, SyncCollection,
    SyncCollectionResponse, SyncOptions, SyncResponse,
};

use wbxml::{Element, Tag};

/// A response body that does not have the shape the command's specification gives it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command} response: {problem}")]
pub struct ParseError {
    /// The command whose response this is (`"Sync"`).
    pub command: &'static str,
    /// What was wrong, naming the element.
    pub problem: String,
}

impl ParseError {
    pub(crate) fn new(command: &'static str, problem: impl Into<String>) -> ParseError {
        ParseError {
            command,
            problem: problem.into(),
        }
    }
}

/// Checks that `root` is the command's top-level element.
pub(crate) fn expect_root(
    root: &Element,
    tag: Tag,
    command: &'static str,
) -> Result<(), ParseError> {
    if root.tag == tag {
        Ok(())
    } else {
        Err(ParseError::new(
            command,
            format!(
                "top-level element is {}:{}, expected {}:{}",
                root.tag.page().name(),
                root.tag.xml_name(),
                tag.page().name(),
                tag.xml_name()
            ),
        ))
    }
}

/// The text of a required child.
pub(crate) fn text<'a>(
    parent: &'a Element,
    tag: Tag,
    command: &'static str,
) -> Result<&'a str, ParseError> {
    match parent.find(tag) {
        None => Err(ParseError::new(
            command,
            format!("{} lacks {}", parent.tag.xml_name(), tag.xml_name()),
        )),
        Some(element) => element.text_value().ok_or_else(|| {
            ParseError::new(
                command,
                format!("{} does not hold plain text", tag.xml_name()),
            )
        }),
    }
}

/// The text of an optional child; an element that holds more than text is an error.
pub(crate) fn opt_text<'a>(
    parent: &'a Element,
    tag: Tag,
    command: &'static str,
) -> Result<Option<&'a str>, ParseError> {
    match parent.find(tag) {
        None => Ok(None),
        Some(_) => text(parent, tag, command).map(Some),
    }
}

/// An optional unsigned number child.
pub(crate) fn opt_number(
    parent: &Element,
    tag: Tag,
    command: &'static str,
) -> Result<Option<u32>, ParseError> {
    match opt_text(parent, tag, command)? {
        None => Ok(None),
        Some(value) => value.trim().parse().map(Some).map_err(|_| {
            ParseError::new(
                command,
                format!("{} is {value:?}, not a number", tag.xml_name()),
            )
        }),
    }
}

/// A required unsigned number child.
pub(crate) fn number(parent: &Element, tag: Tag, command: &'static str) -> Result<u32, ParseError> {
    opt_number(parent, tag, command)?.ok_or_else(|| {
        ParseError::new(
            command,
            format!("{} lacks {}", parent.tag.xml_name(), tag.xml_name()),
        )
    })
}

/// `<tag>text</tag>`.
pub(crate) fn leaf(tag: Tag, value: impl Into<String>) -> Element {
    Element::with_text(tag, value)
}
