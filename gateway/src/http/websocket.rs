//! JMAP over WebSocket (RFC 8887): Request/Response/RequestError objects tagged with `@type`
//! and correlated by `id`/`requestId`, and push with WebSocketPushEnable/Disable, each
//! StateChange carrying a `pushState` the client can hand back to catch up after a reconnect.

use std::collections::HashSet;
use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason, Session};
use jmap_engine::{Request, RequestError, RequestLimit, StateChange};
use serde_json::{Map, Value, json};

use super::{AppState, problem};
use crate::accounts::UserEntry;
use crate::push::{StateWatcher, decode_push_state, encode_push_state};

/// The subprotocol RFC 8887 registers.
pub const SUBPROTOCOL: &str = "jmap";

pub(crate) async fn get(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    let user = match state.authenticate(&req, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let offers_jmap = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offers_jmap {
        return problem(
            StatusCode::BAD_REQUEST,
            "about:blank",
            "a JMAP WebSocket must offer the \"jmap\" subprotocol",
        );
    }
    let (response, session, messages) =
        match actix_ws::handle_with_protocols(&req, body, &[SUBPROTOCOL]) {
            Ok(parts) => parts,
            Err(e) => return e.error_response(),
        };
    let max = usize::try_from(state.limits().max_size_request.get()).unwrap_or(usize::MAX);
    let messages = messages
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    actix_web::rt::spawn(run(state.into_inner(), user, session, messages));
    response
}

async fn next_push(watcher: &mut Option<StateWatcher>) -> StateChange {
    match watcher {
        Some(w) => w.next().await,
        None => std::future::pending().await,
    }
}

async fn send_change(session: &mut Session, watcher: &StateWatcher, change: &StateChange) -> bool {
    let mut object = match change.to_json() {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    object.insert(
        "pushState".into(),
        json!(encode_push_state(watcher.reported())),
    );
    session
        .text(Value::Object(object).to_string())
        .await
        .is_ok()
}

async fn run(
    state: Arc<AppState>,
    user: Arc<UserEntry>,
    mut session: Session,
    mut messages: actix_ws::AggregatedMessageStream,
) {
    let _open = state.metrics.push_stream();
    let mut push: Option<StateWatcher> = None;
    let mut shutdown = state.store.blocking().shutdown_signal();
    loop {
        tokio::select! {
            r = shutdown.wait_for(|s| *s) => {
                // 1001 Going Away: the client reconnects (to the next instance).
                let _ = r;
                let reason = CloseReason {
                    code: CloseCode::Away,
                    description: Some("the server is shutting down".into()),
                };
                let _ = session.close(Some(reason)).await;
                return;
            }
            message = messages.recv() => match message {
                Some(Ok(AggregatedMessage::Text(text))) => {
                    if !handle_text(&state, &user, &mut session, &mut push, text.as_bytes()).await {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Ping(bytes))) => {
                    if session.pong(&bytes).await.is_err() {
                        return;
                    }
                }
                Some(Ok(AggregatedMessage::Pong(_))) => {}
                Some(Ok(AggregatedMessage::Binary(_))) => {
                    let reason = CloseReason {
                        code: CloseCode::Unsupported,
                        description: Some("JMAP messages are text".into()),
                    };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
                Some(Ok(AggregatedMessage::Close(_))) | None => {
                    let _ = session.close(None).await;
                    return;
                }
                Some(Err(e)) => {
                    let reason = CloseReason {
                        code: CloseCode::Size,
                        description: Some(e.to_string()),
                    };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
            },
            change = next_push(&mut push) => {
                if let Some(w) = &push && !send_change(&mut session, w, &change).await {
                    return;
                }
            }
        }
    }
}

fn request_error(e: &RequestError, request_id: Option<&Value>) -> String {
    let mut object = match e.to_json() {
        Value::Object(o) => o,
        _ => Map::new(),
    };
    object.insert("@type".into(), json!("RequestError"));
    if let Some(id) = request_id {
        object.insert("requestId".into(), id.clone());
    }
    Value::Object(object).to_string()
}

/// Handles one text message; false when the connection is gone.
async fn handle_text(
    state: &AppState,
    user: &Arc<UserEntry>,
    session: &mut Session,
    push: &mut Option<StateWatcher>,
    text: &[u8],
) -> bool {
    let max = state.limits().max_size_request.get();
    if u64::try_from(text.len()).unwrap_or(u64::MAX) > max {
        let e = RequestError::Limit {
            limit: RequestLimit::MaxSizeRequest,
            detail: format!("The message is larger than maxSizeRequest ({max})."),
        };
        return session.text(request_error(&e, None)).await.is_ok();
    }
    let mut object = match jmap_engine::parse_ijson(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => {
            let e = RequestError::NotRequest("the message must be a JSON object".into());
            return session.text(request_error(&e, None)).await.is_ok();
        }
        Err(e) => {
            let e = RequestError::NotJson(e.to_string());
            return session.text(request_error(&e, None)).await.is_ok();
        }
    };
    let kind = object.remove("@type");
    match kind.as_ref().and_then(Value::as_str) {
        Some("Request") => {
            let request_id = object.remove("id");
            let answer = match Request::from_json(Value::Object(object)) {
                Ok(request) => match state
                    .engine
                    .execute(user, request, &user.session_state)
                    .await
                {
                    Ok(response) => {
                        for call in &response.method_responses {
                            state.metrics.method_called(&call.name);
                        }
                        let mut out = match response.to_json() {
                            Value::Object(o) => o,
                            _ => Map::new(),
                        };
                        out.insert("@type".into(), json!("Response"));
                        if let Some(id) = &request_id {
                            out.insert("requestId".into(), id.clone());
                        }
                        Value::Object(out).to_string()
                    }
                    Err(e) => request_error(&e, request_id.as_ref()),
                },
                Err(e) => request_error(&e, request_id.as_ref()),
            };
            session.text(answer).await.is_ok()
        }
        Some("WebSocketPushEnable") => {
            let types = match object.get("dataTypes") {
                Some(Value::Array(list)) => Some(
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect::<HashSet<_>>(),
                ),
                _ => None,
            };
            let mut watcher =
                match StateWatcher::new(&state.store, user, state.names.clone(), types).await {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::error!("websocket push: {e}");
                        return true;
                    }
                };
            let seen = object
                .get("pushState")
                .and_then(Value::as_str)
                .and_then(decode_push_state);
            if let Some(seen) = seen {
                watcher.set_baseline(seen);
                let missed = watcher.take_change();
                if !missed.is_empty() && !send_change(session, &watcher, &missed).await {
                    return false;
                }
            }
            *push = Some(watcher);
            true
        }
        Some("WebSocketPushDisable") => {
            *push = None;
            true
        }
        _ => {
            let e = RequestError::NotRequest(
                "@type must be Request, WebSocketPushEnable or WebSocketPushDisable".into(),
            );
            session
                .text(request_error(&e, object.get("id")))
                .await
                .is_ok()
        }
    }
}
