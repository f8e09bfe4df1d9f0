//! Push over EventSource (RFC 8620 §7.3): `state` events carrying StateChange objects, each
//! with an event id that encodes everything the client has now been told, and `ping` events.

use std::collections::HashSet;
use std::time::Duration;

use actix_web::http::{StatusCode, header};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tokio::sync::mpsc;

use super::{AppState, problem, query_param};
use crate::push::{StateWatcher, decode_push_state, encode_push_state};

/// Pings are clamped to this range (RFC 8620: the minimum may be at most 30, the maximum at
/// least 300).
const PING_MIN: u64 = 1;
const PING_MAX: u64 = 300;

/// Parses `types`: `*` is every type, else a comma-separated list.
pub(crate) fn parse_types(types: Option<&str>) -> Option<HashSet<String>> {
    match types.map(str::trim) {
        None | Some("*") | Some("") => None,
        Some(list) => Some(
            list.split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect(),
        ),
    }
}

fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut out = format!("event: {name}\n");
    if let Some(id) = id {
        out.push_str(&format!("id: {id}\n"));
    }
    out.push_str(&format!("data: {data}\n\n"));
    Bytes::from(out)
}

pub(crate) async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = match state.authenticate(&req, true).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let mut shutdown = state.store.blocking().shutdown_signal();
    if *shutdown.borrow() {
        let mut r = problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "about:blank",
            "the server is shutting down; reconnect shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return r;
    }
    let query = req.query_string();
    let types = parse_types(query_param(query, "types").as_deref());
    let close_after_state = match query_param(query, "closeafter").as_deref() {
        None | Some("no") => false,
        Some("state") => true,
        Some(other) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "about:blank",
                format!("closeafter must be 'state' or 'no', not {other:?}"),
            );
        }
    };
    let ping = match query_param(query, "ping").as_deref().map(str::parse::<u64>) {
        None => 0,
        Some(Ok(0)) => 0,
        Some(Ok(n)) => n.clamp(PING_MIN, PING_MAX),
        Some(Err(_)) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "about:blank",
                "ping must be a non-negative integer (seconds)",
            );
        }
    };
    let mut watcher = match StateWatcher::new(&state.store, &user, state.names.clone(), types).await
    {
        Ok(w) => w,
        Err(e) => {
            tracing::error!("eventsource: {e}");
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "about:blank",
                "the store failed",
            );
        }
    };
    // A reconnecting client says what it saw last; it gets what it missed at once.
    let last_seen = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(decode_push_state);
    let catch_up = last_seen.is_some();
    if let Some(seen) = last_seen {
        watcher.set_baseline(seen);
    }

    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let app = state.clone();
    actix_web::rt::spawn(async move {
        let _open = app.metrics.push_stream();
        // A comment first, so the client sees the stream open before any change.
        if tx.send(Bytes::from_static(b": jmap push\n")).await.is_err() {
            return;
        }
        let ping_every = Duration::from_secs(ping.max(1));
        let mut next_ping = tokio::time::Instant::now() + ping_every;
        let mut pending = if catch_up {
            Some(watcher.take_change())
        } else {
            None
        };
        loop {
            let change = match pending.take() {
                Some(c) if !c.is_empty() => c,
                _ => tokio::select! {
                    change = watcher.next() => change,
                    () = tokio::time::sleep_until(next_ping), if ping > 0 => {
                        let data = json!({"interval": ping}).to_string();
                        if tx.send(event("ping", None, &data)).await.is_err() {
                            return;
                        }
                        next_ping = tokio::time::Instant::now() + ping_every;
                        continue;
                    }
                    () = tx.closed() => return,
                    r = shutdown.wait_for(|s| *s) => {
                        // Ending the stream makes the client reconnect (to the next instance);
                        // `retry` asks it to do so after a second rather than its default.
                        let _ = r;
                        let _ = tx.try_send(Bytes::from_static(b"retry: 1000\n\n"));
                        return;
                    }
                },
            };
            let id = encode_push_state(watcher.reported());
            let data = change.to_json().to_string();
            if tx.send(event("state", Some(&id), &data)).await.is_err() || close_after_state {
                return;
            }
            next_ping = tokio::time::Instant::now() + ping_every;
        }
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, actix_web::Error>(b), rx))
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(body)
}
