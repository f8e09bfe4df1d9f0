//! The Session resource (RFC 8620 §2).

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use jmap_engine::{Account, Session};
use serde_json::json;

use super::{AppState, WEBSOCKET_CAPABILITY};
use crate::accounts::UserEntry;

/// The Session object for `user`, with URLs based at `base`.
pub(crate) fn session(state: &AppState, user: &UserEntry, base: &str) -> Session {
    let mut capabilities = state.engine.capabilities().clone();
    let ws_base = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    capabilities.others.insert(
        WEBSOCKET_CAPABILITY.to_owned(),
        json!({"url": format!("{ws_base}/jmap/ws"), "supportsPush": true}),
    );
    let accounts: BTreeMap<_, _> = user
        .accounts
        .iter()
        .map(|a| {
            (
                a.id.clone(),
                Account {
                    name: a.name.clone(),
                    is_personal: a.is_personal,
                    is_read_only: a.is_read_only,
                    account_capabilities: a.capabilities.clone(),
                },
            )
        })
        .collect();
    Session {
        capabilities,
        accounts,
        primary_accounts: user.primary_accounts(),
        username: user.name.clone(),
        api_url: format!("{base}/jmap/api"),
        download_url: format!(
            "{base}/jmap/download/{{accountId}}/{{blobId}}/{{name}}?accept={{type}}"
        ),
        upload_url: format!("{base}/jmap/upload/{{accountId}}/"),
        event_source_url: format!(
            "{base}/jmap/eventsource?types={{types}}&closeafter={{closeafter}}&ping={{ping}}"
        ),
        state: user.session_state.clone(),
    }
}

pub(crate) async fn get(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let user = match state.authenticate(&req, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    let base = state.base_url(&req);
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-cache, no-store, must-revalidate"))
        .json(session(&state, &user, &base))
}
