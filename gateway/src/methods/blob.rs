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

/// How long an uploaded (or copied) blob is kept without being used: a day, well over the
/// hour RFC 8620 §6.1 asks for.
pub const UPLOAD_LIFETIME_SECS: u64 = 24 * 3600;

/// When a blob uploaded now expires (seconds since the epoch).
pub fn upload_expiry() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + UPLOAD_LIFETIME_SECS
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
                // Any blob the source account answers: uploads, Emails, body parts.
                let data = jmap_mail::methods::read_blob(from, blob_id.as_str())
                    .await
                    .map_err(jmap_mail::methods::blob_error)?;
                match data {
                    Some(data) => {
                        to.store
                            .blob_put_pinned(
                                to.entry.store_id,
                                blob_key(blob_id.as_str()),
                                data.bytes,
                                upload_expiry(),
                            )
                            .await
                            .map_err(store_error)?;
                        copied.insert(blob_id.as_str().to_owned(), json!(blob_id));
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
