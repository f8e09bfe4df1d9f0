//! FolderSync, FolderCreate, FolderUpdate, FolderDelete (MS-ASCMD 2.2.1.2–2.2.1.5).

use wbxml::Element;
use wbxml::tag::folderhierarchy as fh;

use super::{ParseError, expect_root, leaf, number, opt_text, text};

/// An EAS folder type (MS-ASCMD 2.2.3.186.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FolderType(pub u32);

impl FolderType {
    pub const USER_GENERIC: FolderType = FolderType(1);
    pub const INBOX: FolderType = FolderType(2);
    pub const DRAFTS: FolderType = FolderType(3);
    pub const DELETED_ITEMS: FolderType = FolderType(4);
    pub const SENT_ITEMS: FolderType = FolderType(5);
    pub const OUTBOX: FolderType = FolderType(6);
    pub const USER_MAIL: FolderType = FolderType(12);

    /// Whether the folder holds email (calendar, contacts, tasks, notes and journal do not).
    pub fn is_mail(self) -> bool {
        matches!(self.0, 1..=6 | 12)
    }
}

/// One folder as FolderSync reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    pub server_id: String,
    /// `"0"` at the top level.
    pub parent_id: String,
    pub display_name: String,
    pub folder_type: FolderType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderChange {
    Add(Folder),
    Update(Folder),
    Delete { server_id: String },
}

/// `FolderSync` request: the hierarchy sync key (`"0"` for a full listing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSync {
    pub sync_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSyncResponse {
    pub status: u32,
    /// Absent when the status is not 1.
    pub sync_key: Option<String>,
    pub changes: Vec<FolderChange>,
}

const FOLDER_SYNC: &str = "FolderSync";

impl FolderSync {
    pub fn to_element(&self) -> Element {
        Element::new(fh::FolderSync).child(leaf(fh::SyncKey, &self.sync_key))
    }
}

fn folder(element: &Element, command: &'static str) -> Result<Folder, ParseError> {
    Ok(Folder {
        server_id: text(element, fh::ServerId, command)?.to_owned(),
        parent_id: opt_text(element, fh::ParentId, command)?
            .unwrap_or("0")
            .to_owned(),
        display_name: text(element, fh::DisplayName, command)?.to_owned(),
        folder_type: FolderType(number(element, fh::Type, command)?),
    })
}

impl FolderSyncResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, fh::FolderSync, FOLDER_SYNC)?;
        let status = number(root, fh::Status, FOLDER_SYNC)?;
        let sync_key = opt_text(root, fh::SyncKey, FOLDER_SYNC)?.map(str::to_owned);
        let mut changes = Vec::new();
        if let Some(list) = root.find(fh::Changes) {
            for change in list.elements() {
                if change.tag == fh::Add {
                    changes.push(FolderChange::Add(folder(change, FOLDER_SYNC)?));
                } else if change.tag == fh::Update {
                    changes.push(FolderChange::Update(folder(change, FOLDER_SYNC)?));
                } else if change.tag == fh::Delete {
                    changes.push(FolderChange::Delete {
                        server_id: text(change, fh::ServerId, FOLDER_SYNC)?.to_owned(),
                    });
                }
                // Count and unknown elements carry nothing we need.
            }
        }
        if status == 1 && sync_key.is_none() {
            return Err(ParseError::new(FOLDER_SYNC, "Status 1 without a SyncKey"));
        }
        Ok(FolderSyncResponse {
            status,
            sync_key,
            changes,
        })
    }
}

/// `FolderCreate` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCreate {
    pub sync_key: String,
    /// `"0"` for the top level.
    pub parent_id: String,
    pub display_name: String,
    pub folder_type: FolderType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCreateResponse {
    pub status: u32,
    pub sync_key: Option<String>,
    pub server_id: Option<String>,
}

const FOLDER_CREATE: &str = "FolderCreate";

impl FolderCreate {
    pub fn to_element(&self) -> Element {
        Element::new(fh::FolderCreate)
            .child(leaf(fh::SyncKey, &self.sync_key))
            .child(leaf(fh::ParentId, &self.parent_id))
            .child(leaf(fh::DisplayName, &self.display_name))
            .child(leaf(fh::Type, self.folder_type.0.to_string()))
    }
}

impl FolderCreateResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, fh::FolderCreate, FOLDER_CREATE)?;
        let response = FolderCreateResponse {
            status: number(root, fh::Status, FOLDER_CREATE)?,
            sync_key: opt_text(root, fh::SyncKey, FOLDER_CREATE)?.map(str::to_owned),
            server_id: opt_text(root, fh::ServerId, FOLDER_CREATE)?.map(str::to_owned),
        };
        if response.status == 1 && (response.sync_key.is_none() || response.server_id.is_none()) {
            return Err(ParseError::new(
                FOLDER_CREATE,
                "Status 1 without SyncKey and ServerId",
            ));
        }
        Ok(response)
    }
}

/// `FolderUpdate` request: rename and/or move a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderUpdate {
    pub sync_key: String,
    pub server_id: String,
    pub parent_id: String,
    pub display_name: String,
}

/// The answer to FolderUpdate and FolderDelete: a status and the next hierarchy key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderUpdateResponse {
    pub status: u32,
    pub sync_key: Option<String>,
}

impl FolderUpdate {
    pub fn to_element(&self) -> Element {
        Element::new(fh::FolderUpdate)
            .child(leaf(fh::SyncKey, &self.sync_key))
            .child(leaf(fh::ServerId, &self.server_id))
            .child(leaf(fh::ParentId, &self.parent_id))
            .child(leaf(fh::DisplayName, &self.display_name))
    }
}

/// `FolderDelete` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderDelete {
    pub sync_key: String,
    pub server_id: String,
}

impl FolderDelete {
    pub fn to_element(&self) -> Element {
        Element::new(fh::FolderDelete)
            .child(leaf(fh::SyncKey, &self.sync_key))
            .child(leaf(fh::ServerId, &self.server_id))
    }
}

impl FolderUpdateResponse {
    /// Reads a FolderUpdate (`delete == false`) or FolderDelete response.
    pub fn from_element(root: &Element, delete: bool) -> Result<Self, ParseError> {
        let (tag, command) = if delete {
            (fh::FolderDelete, "FolderDelete")
        } else {
            (fh::FolderUpdate, "FolderUpdate")
        };
        expect_root(root, tag, command)?;
        let status = number(root, fh::Status, command)?;
        let sync_key = opt_text(root, fh::SyncKey, command)?.map(str::to_owned);
        if status == 1 && sync_key.is_none() {
            return Err(ParseError::new(command, "Status 1 without a SyncKey"));
        }
        Ok(FolderUpdateResponse { status, sync_key })
    }
}
