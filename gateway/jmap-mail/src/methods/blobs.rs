//! Blob ids a mail account answers, whatever made them: uploads (in the store), an Email's
//! own blobId (its Email id: the raw message, from the blob cache, a local draft's stored
//! raw (see `local`) or fetched upstream) and body-part blobIds (`B{source}_{partId}`, see
//! [`crate::body::part_blob_id`]). The download endpoint, Email/import, Email/parse,
//! Email/set create and EmailSubmission all read blobs through here.
//!
//! A part of an Email (`B{E…}_{part}`) whose message is not in the blob cache is fetched
//! alone upstream and cached under its own blob id ([`crate::AccountSync::raw_part`]);
//! parts of attached messages (`BB{E…}_{part}_{part}`) are cut from the whole message.

use state::ObjectId;
use upstream::UpstreamError;

use super::MailAccount;
use crate::SyncError;

/// How deep part blob ids may nest (a part of an attached message of an attached message …).
const MAX_NESTING: usize = 8;

/// A blob's octets and, when known, its media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobData {
    pub bytes: Vec<u8>,
    pub media_type: Option<String>,
}

/// Why a blob could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the store failed: {0}")]
    Store(#[from] state::Error),
    #[error("upstream: {0}")]
    Upstream(SyncError),
}

/// The octets of `blob_id` in `account`; `Ok(None)` when there is no such blob.
pub async fn read_blob<A: MailAccount>(
    account: &A,
    blob_id: &str,
) -> Result<Option<BlobData>, BlobError> {
    let mut id = blob_id;
    let mut parts: Vec<String> = Vec::new();
    // Peel part suffixes until a blob the store or the driver knows.
    let source = loop {
        if let Some(b) = account
            .store()
            .blob_get(account.store_id(), id.as_bytes().to_vec())
            .await?
        {
            break Some(b);
        }
        if let [part] = parts.as_slice()
            && let Some(found) = email_part(account, id, part).await?
        {
            return Ok(found);
        }
        if let Some(b) = email_raw(account, id).await? {
            break Some(b);
        }
        match crate::body::parse_part_blob_id(id) {
            Some((inner, part)) if parts.len() < MAX_NESTING => {
                parts.push(part);
                id = inner;
            }
            _ => break None,
        }
    };
    let Some(mut bytes) = source else {
        return Ok(None);
    };
    let mut media_type = parts.is_empty().then(|| "message/rfc822".to_owned());
    if email_id(id).is_none() {
        // An upload: its type is whatever the client said, which the store does not keep.
        media_type = None;
    }
    for part in parts.iter().rev() {
        match crate::body::part_bytes(&bytes, part) {
            Some((b, t)) => {
                bytes = b;
                media_type = Some(t);
            }
            None => return Ok(None),
        }
    }
    Ok(Some(BlobData { bytes, media_type }))
}

fn email_id(id: &str) -> Option<ObjectId> {
    id.starts_with('E')
        .then(|| ObjectId::new(id).ok())
        .flatten()
}

/// Part `part` of the Email `id` (exactly one level: a part blob id `B{E…}_{part}`) whose
/// message is not in the blob cache, read by fetching only that part upstream
/// ([`AccountSync::raw_part`](crate::AccountSync::raw_part)). `None` when `id` is no Email
/// of a live account or is a local draft: then the whole message is the way.
/// `Some(None)`: there is no such Email or part.
async fn email_part<A: MailAccount>(
    account: &A,
    id: &str,
    part: &str,
) -> Result<Option<Option<BlobData>>, BlobError> {
    let Some(email) = email_id(id) else {
        return Ok(None);
    };
    let Some(sync) = account.sync() else {
        return Ok(None);
    };
    if super::local::raw(account, id).await?.is_some() {
        return Ok(None);
    }
    match sync.raw_part(&email, part).await {
        Ok((bytes, media_type)) => Ok(Some(Some(BlobData { bytes, media_type }))),
        Err(SyncError::UnknownEmail(_) | SyncError::Upstream(UpstreamError::NotFound(_))) => {
            Ok(Some(None))
        }
        Err(e) => Err(BlobError::Upstream(e)),
    }
}

/// The raw message of the Email `id`, if `id` is one of the account's Emails.
async fn email_raw<A: MailAccount>(account: &A, id: &str) -> Result<Option<Vec<u8>>, BlobError> {
    let Some(email) = email_id(id) else {
        return Ok(None);
    };
    // A local draft's raw lives in the store only; upstream has never seen it.
    if let Some(raw) = super::local::raw(account, id).await? {
        return Ok(Some(raw));
    }
    let Some(sync) = account.sync() else {
        // Without a driver only the blob cache can answer, and it did not.
        return Ok(None);
    };
    match sync.raw_message(&email).await {
        Ok(raw) => Ok(Some(raw)),
        Err(SyncError::UnknownEmail(_) | SyncError::Upstream(UpstreamError::NotFound(_))) => {
            Ok(None)
        }
        Err(e) => Err(BlobError::Upstream(e)),
    }
}
