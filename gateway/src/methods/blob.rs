//! Blob/copy (RFC 8620 §6.3) and the blob naming shared with upload and download.

use jmap_engine::{
    Arguments, Handler, HandlerFuture, Id, MethodCall, MethodError, MethodOutput, SetError,
};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{Directory, store_error};

/// Uploaded blobs are named by their content: `G` and the hex SHA-256, so uploading the same
/// bytes twice gives the same blobId and a blobId says nothing but what the bytes are.
pub fn new_blob_id(data: &[u8]) -> Id {
    let digest = Sha256::digest(data);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Id::new(format!("G{hex}")).expect("G and hex digits are a valid Id")
}

/// The store key of a blob id (the store keeps blobs per account, so accounts never share).
pub fn blob_key(id: &str) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// Blob/copy: copies blobs between two of the user's accounts.
#[derive(Debug, Clone, Copy)]
pub struct BlobCopy;

impl Handler<Directory> for BlobCopy {
    fn call<'a>(&'a self, call: MethodCall<'a, Directory>) -> HandlerFuture<'a> {
        Box::pin(async move {
            let mut args = Arguments::new(call.arguments.clone());
            let from_account_id: Id = args.required("fromAccountId")?;
            let account_id: Id = args.required("accountId")?;
            let blob_ids: Vec<Id> = args.required("blobIds")?;
            args.finish()?;
            let from = call.from_account()?;
            let to = call.account()?;
            let mut copied = Map::new();
            let mut not_copied = Map::new();
            for blob_id in blob_ids {
                let data = from
                    .store
                    .blob_get(from.entry.store_id, blob_key(blob_id.as_str()))
                    .await
                    .map_err(store_error)?;
                match data {
                    Some(data) => {
                        let stored = to
                            .store
                            .blob_put(to.entry.store_id, blob_key(blob_id.as_str()), data)
                            .await
                            .map_err(store_error)?;
                        if stored {
                            copied.insert(blob_id.as_str().to_owned(), json!(blob_id));
                        } else {
                            not_copied.insert(
                                blob_id.as_str().to_owned(),
                                serde_json::to_value(SetError::too_large()).unwrap_or(Value::Null),
                            );
                        }
                    }
                    None => {
                        not_copied.insert(
                            blob_id.as_str().to_owned(),
                            serde_json::to_value(SetError::not_found()).unwrap_or(Value::Null),
                        );
                    }
                }
            }
            let opt = |m: Map<String, Value>| {
                if m.is_empty() {
                    Value::Null
                } else {
                    Value::Object(m)
                }
            };
            let mut out = Map::new();
            out.insert("fromAccountId".into(), json!(from_account_id));
            out.insert("accountId".into(), json!(account_id));
            out.insert("copied".into(), opt(copied));
            out.insert("notCopied".into(), opt(not_copied));
            Ok::<_, MethodError>(MethodOutput::new(call.name.clone(), out))
        })
    }
}
