//! SendMail (MS-ASCMD 2.2.1.17): submit a MIME message; SmartReply and SmartForward
//! (2.2.1.20, 2.2.1.19): submit one that answers or passes on a message the server holds.

use wbxml::Element;
use wbxml::tag::composemail as cm;

use super::{ParseError, expect_root, leaf, number};

/// A `SendMail` request with the message as opaque MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMail {
    /// Unique per submission: the server drops a repeated ClientId (status 118).
    pub client_id: String,
    pub save_in_sent_items: bool,
    pub mime: Vec<u8>,
}

impl SendMail {
    pub fn to_element(&self) -> Element {
        let mut e = Element::new(cm::SendMail).child(leaf(cm::ClientId, &self.client_id));
        if self.save_in_sent_items {
            e = e.child(Element::new(cm::SaveInSentItems));
        }
        e.child(Element::new(cm::Mime).opaque(self.mime.clone()))
    }
}

/// What a non-empty SendMail response says (success is an empty body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendMailResponse {
    pub status: u32,
}

impl SendMailResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, cm::SendMail, "SendMail")?;
        Ok(SendMailResponse {
            status: number(root, cm::Status, "SendMail")?,
        })
    }
}

/// Which of the two "smart" commands: both share one body shape (MS-ASCMD 2.2.1.19/20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmartKind {
    Reply,
    Forward,
}

impl SmartKind {
    /// The command name, as the `Cmd` of the request URL.
    pub fn command(self) -> &'static str {
        match self {
            SmartKind::Reply => "SmartReply",
            SmartKind::Forward => "SmartForward",
        }
    }

    fn tag(self) -> wbxml::Tag {
        match self {
            SmartKind::Reply => cm::SmartReply,
            SmartKind::Forward => cm::SmartForward,
        }
    }
}

/// A `SmartReply` or `SmartForward` request (protocol 14.0 and later): the message as opaque
/// MIME, and the item it answers or forwards as `Source` (FolderId + ItemId).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartSend {
    pub kind: SmartKind,
    /// Unique per submission, as for SendMail.
    pub client_id: String,
    /// The source's folder ServerId.
    pub folder_id: String,
    /// The source's item ServerId.
    pub item_id: String,
    pub save_in_sent_items: bool,
    /// The MIME is the whole message: the server must not add the source's body or
    /// attachments to it (MS-ASCMD 2.2.3.148).
    pub replace_mime: bool,
    pub mime: Vec<u8>,
}

impl SmartSend {
    /// Children in the order of MS-ASCMD's examples: ClientId, Source, SaveInSentItems,
    /// ReplaceMime, Mime (the schema allows any order).
    pub fn to_element(&self) -> Element {
        let source = Element::new(cm::Source)
            .child(leaf(cm::FolderId, &self.folder_id))
            .child(leaf(cm::ItemId, &self.item_id));
        let mut e = Element::new(self.kind.tag())
            .child(leaf(cm::ClientId, &self.client_id))
            .child(source);
        if self.save_in_sent_items {
            e = e.child(Element::new(cm::SaveInSentItems));
        }
        if self.replace_mime {
            e = e.child(Element::new(cm::ReplaceMime));
        }
        e.child(Element::new(cm::Mime).opaque(self.mime.clone()))
    }
}

/// What a non-empty SmartReply / SmartForward response says (success is an empty body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartSendResponse {
    pub status: u32,
}

impl SmartSendResponse {
    pub fn from_element(kind: SmartKind, root: &Element) -> Result<Self, ParseError> {
        let command = kind.command();
        expect_root(root, kind.tag(), command)?;
        Ok(SmartSendResponse {
            status: number(root, cm::Status, command)?,
        })
    }
}
