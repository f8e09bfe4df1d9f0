//! Upload and download of binary data (RFC 8620 §6.1, §6.2).

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use jmap_engine::RequestLimit;
use serde_json::json;

use super::api::upload_limit;
use super::{AppState, problem, query_param, read_limited};
use crate::methods::{blob_key, new_blob_id, upload_expiry};

pub(crate) async fn upload(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let user = match state.authenticate(&req, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let Some(account) = user.account(&path) else {
        return problem(StatusCode::NOT_FOUND, "about:blank", "no such account");
    };
    let max_concurrent = state.limits().max_concurrent_upload.get();
    let Some(_slot) = AppState::slot(&state.upload_slots, &user.name, max_concurrent) else {
        return upload_limit(
            RequestLimit::MaxConcurrentUpload,
            format!("More than {max_concurrent} concurrent uploads."),
        );
    };
    let max_size = state.limits().max_size_upload.get();
    let data = match read_limited(payload, max_size).await {
        Ok(d) => d,
        Err(Ok(_)) => {
            return upload_limit(
                RequestLimit::MaxSizeUpload,
                format!("The upload is larger than maxSizeUpload ({max_size} octets)."),
            );
        }
        Err(Err(e)) => return e.error_response(),
    };
    let media_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let blob_id = new_blob_id(&data);
    let size = data.len();
    match state
        .store
        .blob_put_pinned(
            account.store_id,
            blob_key(blob_id.as_str()),
            data,
            upload_expiry(),
        )
        .await
    {
        Ok(()) => HttpResponse::Created().json(json!({
            "accountId": account.id,
            "blobId": blob_id,
            "type": media_type,
            "size": size,
        })),
        Err(e) => {
            tracing::error!("blob upload: {e}");
            problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "about:blank",
                "the store failed",
            )
        }
    }
}

/// A media type safe to echo in Content-Type: `type/subtype` with optional parameters, no
/// control characters; anything else becomes `application/octet-stream`.
fn safe_media_type(requested: Option<&str>) -> String {
    let Some(t) = requested.map(str::trim) else {
        return "application/octet-stream".into();
    };
    let essence = t.split(';').next().unwrap_or("");
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    let ok = essence
        .split_once('/')
        .is_some_and(|(a, b)| token(a) && token(b))
        && t.bytes().all(|b| (0x20..0x7f).contains(&b));
    if ok {
        t.to_owned()
    } else {
        "application/octet-stream".into()
    }
}

/// `attachment` with an ASCII fallback `filename` and the exact name as RFC 5987 `filename*`
/// (RFC 6266 §4.3), so no name can break out of the header.
pub fn content_disposition(name: &str) -> String {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' && c != '%' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

pub(crate) async fn download(
    req: HttpRequest,
    path: web::Path<(String, String, String)>,
    state: web::Data<AppState>,
) -> HttpResponse {
    let user = match state.authenticate(&req, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let (account_id, blob_id, name) = path.into_inner();
    let Some(account) = user.account(&account_id) else {
        return problem(StatusCode::NOT_FOUND, "about:blank", "no such account");
    };
    let handle = crate::methods::AccountHandle {
        entry: account.clone(),
        store: state.store.clone(),
        live: state.mail.as_ref().and_then(|m| m.get(account.store_id)),
    };
    let data = match jmap_mail::methods::read_blob(&handle, &blob_id).await {
        Ok(Some(d)) => d.bytes,
        Ok(None) => return problem(StatusCode::NOT_FOUND, "about:blank", "no such blob"),
        Err(jmap_mail::methods::BlobError::Upstream(e)) => {
            tracing::warn!("blob download from upstream: {e}");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "about:blank",
                "the mail server could not be reached for this blob; try again later",
            );
        }
        Err(e) => {
            tracing::error!("blob download: {e}");
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "about:blank",
                "the store failed",
            );
        }
    };
    let accept = query_param(req.query_string(), "accept");
    HttpResponse::Ok()
        .content_type(safe_media_type(accept.as_deref()))
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&name)))
        .insert_header((
            header::CACHE_CONTROL,
            "private, immutable, max-age=31536000",
        ))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .body(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            content_disposition("a\"b\r\nX: y.txt"),
            "attachment; filename=\"a_b__X: y.txt\"; filename*=UTF-8''a%22b%0D%0AX%3A%20y.txt"
        );
        assert_eq!(
            content_disposition("Grüße €.txt"),
            "attachment; filename=\"Gr__e _.txt\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%20%E2%82%AC.txt"
        );
    }

    #[test]
    fn media_types() {
        assert_eq!(safe_media_type(Some("image/png")), "image/png");
        assert_eq!(
            safe_media_type(Some("text/plain; charset=utf-8")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            safe_media_type(Some("text/html\r\nX: y")),
            "application/octet-stream"
        );
        assert_eq!(
            safe_media_type(Some("nonsense")),
            "application/octet-stream"
        );
        assert_eq!(safe_media_type(None), "application/octet-stream");
    }
}
