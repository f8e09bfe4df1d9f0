//! The HTTP surface. Only this module (and this crate) knows actix-web.

use std::path::PathBuf;

use actix_web::{App, HttpResponse, HttpServer, web};

use crate::config::Config;

/// Runs the HTTP server until SIGINT/SIGTERM.
pub fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let listen = config.server.listen;
    match &config_path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file; running on defaults"),
    }
    if config.users.is_empty() && config.passthrough.is_empty() {
        tracing::warn!(
            "no users and no passthrough servers are configured: nobody can log in \
             (see jmap-gateway.example.toml or --passthrough)"
        );
    }
    std::fs::create_dir_all(&config.store.path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the store folder {}: {e}",
            config.store.path.display()
        )
    })?;
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| {
            App::new()
                .route("/healthz", web::get().to(healthz))
                .route("/readyz", web::get().to(healthz))
        })
        .bind(listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        tracing::info!(%listen, "listening");
        server.run().await?;
        Ok(())
    })
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}
