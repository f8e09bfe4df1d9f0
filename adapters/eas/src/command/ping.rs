//! Ping (MS-ASCMD 2.2.1.13): a long poll on folders.

use wbxml::Element;
use wbxml::tag::ping as p;

use super::{ParseError, expect_root, leaf, number, opt_number};

const PING: &str = "Ping";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingFolder {
    pub id: String,
    /// `"Email"` for mail folders.
    pub class: String,
}

/// A `Ping` request: watch these folders for `heartbeat` seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping {
    pub heartbeat: u32,
    pub folders: Vec<PingFolder>,
}

impl Ping {
    pub fn to_element(&self) -> Element {
        let folders = self.folders.iter().map(|f| {
            Element::new(p::Folder)
                .child(leaf(p::Id, &f.id))
                .child(leaf(p::Class, &f.class))
        });
        Element::new(p::Ping)
            .child(leaf(p::HeartbeatInterval, self.heartbeat.to_string()))
            .child(Element::new(p::Folders).children(folders))
    }
}

/// A `Ping` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingResponse {
    /// 1 nothing changed, 2 changes in `folders`, 3/4 request problems, 5 heartbeat out of
    /// range (`heartbeat` holds the limit), 6 too many folders (`max_folders`), 7 hierarchy
    /// changed, 8 server error.
    pub status: u32,
    pub folders: Vec<String>,
    pub heartbeat: Option<u32>,
    pub max_folders: Option<u32>,
}

impl PingResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, p::Ping, PING)?;
        let folders = match root.find(p::Folders) {
            Some(list) => list
                .find_all(p::Folder)
                .map(|f| {
                    f.text_value()
                        .map(str::to_owned)
                        .ok_or_else(|| ParseError::new(PING, "Folder does not hold plain text"))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(PingResponse {
            status: number(root, p::Status, PING)?,
            folders,
            heartbeat: opt_number(root, p::HeartbeatInterval, PING)?,
            max_folders: opt_number(root, p::MaxFolders, PING)?,
        })
    }
}
