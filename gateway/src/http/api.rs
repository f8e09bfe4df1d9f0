//! `POST /jmap/api` (RFC 8620 §3).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use jmap_engine::{RequestError, RequestLimit};

use super::{AppState, read_limited, request_error};

/// True for `application/json`, with or without parameters.
pub(crate) fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

pub(crate) async fn post(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let user = match state.authenticate(&req, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)"));
    if !is_json(content_type) {
        return request_error(&RequestError::wrong_content_type(
            content_type.unwrap_or("(none)"),
        ));
    }
    let max_concurrent = state.limits().max_concurrent_requests.get();
    let Some(_slot) = AppState::slot(&state.api_slots, &user.name, max_concurrent) else {
        return request_error(&RequestError::too_many_concurrent(max_concurrent));
    };
    let max_size = state.limits().max_size_request.get();
    let body = match read_limited(payload, max_size).await {
        Ok(b) => b,
        Err(Ok(size)) => return request_error(&RequestError::too_large(size, max_size)),
        Err(Err(e)) => return e.error_response(),
    };
    match state.engine.handle(&user, &body, &user.session_state).await {
        Ok(response) => {
            for call in &response.method_responses {
                state.metrics.method_called(&call.name);
            }
            HttpResponse::Ok()
                .content_type("application/json")
                .body(response.to_json().to_string())
        }
        Err(e) => request_error(&e),
    }
}

/// The `limit` problem of an upload over `maxSizeUpload` or `maxConcurrentUpload`.
pub(crate) fn upload_limit(limit: RequestLimit, detail: String) -> HttpResponse {
    request_error(&RequestError::Limit { limit, detail })
}
