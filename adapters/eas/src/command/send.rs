//! SendMail (MS-ASCMD 2.2.1.17): submit a MIME message.

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
