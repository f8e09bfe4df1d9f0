//! Sync (MS-ASCMD 2.2.1.21): one or more collections, client changes up, server changes down.

use wbxml::tag::{airsync as s, airsyncbase as base};
use wbxml::{Element, Node};

use super::{ParseError, expect_root, leaf, number, opt_text, text};

const SYNC: &str = "Sync";

/// `airsyncbase:BodyPreference`: which body representation to send, truncated to a size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyPreference {
    /// 1 plain text, 2 HTML, 3 RTF, 4 MIME.
    pub body_type: u32,
    pub truncation_size: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOptions {
    /// 0: no date filter, every item.
    pub filter_type: Option<u32>,
    pub body_preference: Option<BodyPreference>,
    /// 2: MIME for every message (only then do servers honour a type 4 preference in Sync).
    pub mime_support: Option<u32>,
}

/// A change the client sends up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand {
    /// `ApplicationData` children, e.g. `<email:Read>1</email:Read>`.
    Change {
        server_id: String,
        data: Vec<Element>,
    },
    Delete {
        server_id: String,
    },
}

/// One collection of a Sync request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCollection {
    pub sync_key: String,
    pub collection_id: String,
    /// False moves a folder's key forward without fetching server changes (used for writes).
    pub get_changes: bool,
    pub window_size: Option<u32>,
    /// `Some(false)` asks the server to delete for good rather than move to Deleted Items.
    pub deletes_as_moves: Option<bool>,
    pub options: Option<SyncOptions>,
    pub commands: Vec<ClientCommand>,
}

impl SyncCollection {
    /// The first request of a sync relationship: key `"0"`, which only yields a key.
    pub fn initial(collection_id: impl Into<String>) -> SyncCollection {
        SyncCollection {
            sync_key: "0".into(),
            collection_id: collection_id.into(),
            get_changes: false,
            window_size: None,
            deletes_as_moves: None,
            options: None,
            commands: Vec::new(),
        }
    }
}

/// A `Sync` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    pub collections: Vec<SyncCollection>,
}

fn flag(value: bool) -> &'static str {
    if value { "1" } else { "0" }
}

impl Sync {
    pub fn to_element(&self) -> Element {
        let collections = self.collections.iter().map(|c| {
            let mut e = Element::new(s::Collection)
                .child(leaf(s::SyncKey, &c.sync_key))
                .child(leaf(s::CollectionId, &c.collection_id));
            if let Some(d) = c.deletes_as_moves {
                e = e.child(leaf(s::DeletesAsMoves, flag(d)));
            }
            // Key 0 must not carry GetChanges (MS-ASCMD 2.2.3.84).
            if c.sync_key != "0" {
                e = e.child(leaf(s::GetChanges, flag(c.get_changes)));
            }
            if let Some(w) = c.window_size {
                e = e.child(leaf(s::WindowSize, w.to_string()));
            }
            if let Some(o) = &c.options {
                let mut opt = Element::new(s::Options);
                if let Some(f) = o.filter_type {
                    opt = opt.child(leaf(s::FilterType, f.to_string()));
                }
                if let Some(b) = o.body_preference {
                    let mut pref = Element::new(base::BodyPreference)
                        .child(leaf(base::Type, b.body_type.to_string()));
                    if let Some(t) = b.truncation_size {
                        pref = pref.child(leaf(base::TruncationSize, t.to_string()));
                    }
                    opt = opt.child(pref);
                }
                if let Some(m) = o.mime_support {
                    opt = opt.child(leaf(s::MIMESupport, m.to_string()));
                }
                e = e.child(opt);
            }
            if !c.commands.is_empty() {
                let commands = c.commands.iter().map(|cmd| match cmd {
                    ClientCommand::Change { server_id, data } => Element::new(s::Change)
                        .child(leaf(s::ServerId, server_id))
                        .child(Element::new(s::ApplicationData).children(data.iter().cloned())),
                    ClientCommand::Delete { server_id } => {
                        Element::new(s::Delete).child(leaf(s::ServerId, server_id))
                    }
                });
                e = e.child(Element::new(s::Commands).children(commands));
            }
            e
        });
        Element::new(s::Sync).child(Element::new(s::Collections).children(collections))
    }
}

/// A change the server sends down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    /// A new item with its `ApplicationData`.
    Add { server_id: String, data: Element },
    /// A changed item; Exchange sends only the changed fields, SOGo all of them.
    Change { server_id: String, data: Element },
    /// The item is gone (`Delete`), or left the sync window (`SoftDelete`).
    Delete { server_id: String, soft: bool },
}

/// The server's answer to one client command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// `"Add"`, `"Change"`, `"Delete"` or `"Fetch"`.
    pub kind: &'static str,
    pub server_id: Option<String>,
    pub status: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCollectionResponse {
    pub collection_id: String,
    pub status: u32,
    pub sync_key: Option<String>,
    pub more_available: bool,
    pub commands: Vec<ServerCommand>,
    pub responses: Vec<ClientResponse>,
}

/// A `Sync` response. An empty HTTP body (nothing changed) is [`SyncResponse::default`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResponse {
    /// A request-level status (errors such as 4 or 12 arrive here without collections).
    pub status: Option<u32>,
    pub collections: Vec<SyncCollectionResponse>,
}

fn application_data(item: &Element) -> Element {
    item.find(s::ApplicationData)
        .cloned()
        .unwrap_or_else(|| Element::new(s::ApplicationData))
}

fn collection(c: &Element) -> Result<SyncCollectionResponse, ParseError> {
    let mut commands = Vec::new();
    if let Some(list) = c.find(s::Commands) {
        for item in list.elements() {
            let server_id = || text(item, s::ServerId, SYNC).map(str::to_owned);
            if item.tag == s::Add {
                commands.push(ServerCommand::Add {
                    server_id: server_id()?,
                    data: application_data(item),
                });
            } else if item.tag == s::Change {
                commands.push(ServerCommand::Change {
                    server_id: server_id()?,
                    data: application_data(item),
                });
            } else if item.tag == s::Delete || item.tag == s::SoftDelete {
                commands.push(ServerCommand::Delete {
                    server_id: server_id()?,
                    soft: item.tag == s::SoftDelete,
                });
            }
        }
    }
    let mut responses = Vec::new();
    if let Some(list) = c.find(s::Responses) {
        for item in list.elements() {
            let kind = match item.tag {
                t if t == s::Add => "Add",
                t if t == s::Change => "Change",
                t if t == s::Delete => "Delete",
                t if t == s::Fetch => "Fetch",
                _ => continue,
            };
            responses.push(ClientResponse {
                kind,
                server_id: opt_text(item, s::ServerId, SYNC)?.map(str::to_owned),
                status: number(item, s::Status, SYNC)?,
            });
        }
    }
    Ok(SyncCollectionResponse {
        collection_id: text(c, s::CollectionId, SYNC)?.to_owned(),
        status: number(c, s::Status, SYNC)?,
        sync_key: opt_text(c, s::SyncKey, SYNC)?.map(str::to_owned),
        more_available: c.find(s::MoreAvailable).is_some(),
        commands,
        responses,
    })
}

impl SyncResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, s::Sync, SYNC)?;
        let status = super::opt_number(root, s::Status, SYNC)?;
        let collections = match root.find(s::Collections) {
            Some(list) => list
                .find_all(s::Collection)
                .map(collection)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        if status.is_none() && collections.is_empty() {
            return Err(ParseError::new(SYNC, "neither Status nor Collections"));
        }
        Ok(SyncResponse {
            status,
            collections,
        })
    }

    /// The answer for one collection.
    pub fn collection(&self, collection_id: &str) -> Option<&SyncCollectionResponse> {
        self.collections
            .iter()
            .find(|c| c.collection_id == collection_id)
    }
}

/// The text of a field of `ApplicationData` and the like, whatever node holds it.
pub(crate) fn node_text(element: &Element) -> Option<String> {
    match element.children.as_slice() {
        [] => Some(String::new()),
        [Node::Text(t)] => Some(t.clone()),
        [Node::Opaque(b)] => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}
