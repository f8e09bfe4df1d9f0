//! ItemOperations Fetch (MS-ASCMD 2.2.1.10), MoveItems (2.2.1.12), GetItemEstimate (2.2.1.9).

use wbxml::Element;
use wbxml::tag::{
    airsync as s, airsyncbase as base, getitemestimate as gie, itemoperations as io, r#move as mv,
};

use super::{ParseError, expect_root, leaf, number, opt_number, opt_text, text};

/// `ItemOperations` with one `Fetch` of a mail item's full MIME.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetch {
    pub collection_id: String,
    pub server_id: String,
}

impl Fetch {
    pub fn to_element(&self) -> Element {
        Element::new(io::ItemOperations).child(
            Element::new(io::Fetch)
                .child(leaf(io::Store, "Mailbox"))
                .child(leaf(s::CollectionId, &self.collection_id))
                .child(leaf(s::ServerId, &self.server_id))
                .child(
                    Element::new(io::Options)
                        .child(Element::new(base::BodyPreference).child(leaf(base::Type, "4"))),
                ),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchResponse {
    /// The ItemOperations status.
    pub status: u32,
    /// The Fetch status (1 success, 6 conversion error, 15 not found in some servers).
    pub fetch_status: Option<u32>,
    /// The body data (for type 4, the raw MIME message).
    pub data: Option<Vec<u8>>,
}

const ITEM_OPERATIONS: &str = "ItemOperations";

impl FetchResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, io::ItemOperations, ITEM_OPERATIONS)?;
        let status = number(root, io::Status, ITEM_OPERATIONS)?;
        let fetch = root.find_path(&[io::Response, io::Fetch]);
        let fetch_status = match fetch {
            Some(f) => Some(number(f, io::Status, ITEM_OPERATIONS)?),
            None => None,
        };
        let data = match fetch.and_then(|f| f.find_path(&[io::Properties, base::Body, base::Data]))
        {
            Some(d) => Some(
                d.bytes_value()
                    .ok_or_else(|| ParseError::new(ITEM_OPERATIONS, "Body Data is not text"))?
                    .to_vec(),
            ),
            None => None,
        };
        Ok(FetchResponse {
            status,
            fetch_status,
            data,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveItem {
    pub src_msg_id: String,
    pub src_fld_id: String,
    pub dst_fld_id: String,
}

/// A `MoveItems` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveItems {
    pub moves: Vec<MoveItem>,
}

impl MoveItems {
    pub fn to_element(&self) -> Element {
        Element::new(mv::MoveItems).children(self.moves.iter().map(|m| {
            Element::new(mv::Move)
                .child(leaf(mv::SrcMsgId, &m.src_msg_id))
                .child(leaf(mv::SrcFldId, &m.src_fld_id))
                .child(leaf(mv::DstFldId, &m.dst_fld_id))
        }))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveResult {
    pub src_msg_id: String,
    /// 3 success; 1 bad source, 2 bad destination, 4 same folder, 5 failure, 7 locked.
    pub status: u32,
    pub dst_msg_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveItemsResponse {
    pub results: Vec<MoveResult>,
}

const MOVE_ITEMS: &str = "MoveItems";

impl MoveItemsResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, mv::MoveItems, MOVE_ITEMS)?;
        let results = root
            .find_all(mv::Response)
            .map(|r| {
                Ok(MoveResult {
                    src_msg_id: text(r, mv::SrcMsgId, MOVE_ITEMS)?.to_owned(),
                    status: number(r, mv::Status, MOVE_ITEMS)?,
                    dst_msg_id: opt_text(r, mv::DstMsgId, MOVE_ITEMS)?.map(str::to_owned),
                })
            })
            .collect::<Result<_, ParseError>>()?;
        Ok(MoveItemsResponse { results })
    }
}

/// `GetItemEstimate` for one mail collection at a sync key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetItemEstimate {
    pub sync_key: String,
    pub collection_id: String,
}

impl GetItemEstimate {
    pub fn to_element(&self) -> Element {
        Element::new(gie::GetItemEstimate).child(
            Element::new(gie::Collections).child(
                Element::new(gie::Collection)
                    .child(leaf(s::SyncKey, &self.sync_key))
                    .child(leaf(gie::CollectionId, &self.collection_id))
                    .child(Element::new(s::Options).child(leaf(s::FilterType, "0"))),
            ),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemEstimate {
    pub status: u32,
    pub collection_id: Option<String>,
    pub estimate: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetItemEstimateResponse {
    /// A request-level status, when the server sent one.
    pub status: Option<u32>,
    pub responses: Vec<ItemEstimate>,
}

const GET_ITEM_ESTIMATE: &str = "GetItemEstimate";

impl GetItemEstimateResponse {
    pub fn from_element(root: &Element) -> Result<Self, ParseError> {
        expect_root(root, gie::GetItemEstimate, GET_ITEM_ESTIMATE)?;
        let responses =
            root.find_all(gie::Response)
                .map(|r| {
                    let c = r.find(gie::Collection);
                    Ok(ItemEstimate {
                        status: number(r, gie::Status, GET_ITEM_ESTIMATE)?,
                        collection_id: match c {
                            Some(c) => opt_text(c, gie::CollectionId, GET_ITEM_ESTIMATE)?
                                .map(str::to_owned),
                            None => None,
                        },
                        estimate: match c {
                            Some(c) => opt_number(c, gie::Estimate, GET_ITEM_ESTIMATE)?,
                            None => None,
                        },
                    })
                })
                .collect::<Result<_, ParseError>>()?;
        Ok(GetItemEstimateResponse {
            status: opt_number(root, gie::Status, GET_ITEM_ESTIMATE)?,
            responses,
        })
    }
}
