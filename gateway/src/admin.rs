//! The local admin socket and backups.
//!
//! RocksDB lets one process open a store, so a backup of a running gateway has to be taken by
//! that gateway. While serving, the gateway listens on a Unix socket (`[server] admin_socket`,
//! by default `admin.sock` in the store folder), created with mode 0600: only the gateway's own
//! user (and root) can connect, which is the authentication. The protocol is one line each way:
//!
//! ```text
//! → backup /absolute/path/to/new/folder
//! ← ok /absolute/path/to/new/folder        or        ← error <what went wrong>
//! ```
//!
//! The gateway writes a RocksDB checkpoint there ([`state::Store::checkpoint`]): a consistent
//! copy taken between two commits, hard-linked when on the same filesystem. The folder must not
//! exist yet and the gateway's user must be able to create it. `jmap-gateway backup` asks the
//! running gateway through the socket; when nothing answers there, it opens the store itself
//! (which fails if another process holds it) and writes the checkpoint directly.
//!
//! Restoring is starting a gateway on the checkpoint: `jmap-gateway serve --data-dir FOLDER`.
//! The checkpoint keeps the store's generation, so clients' state strings from before the
//! backup stay valid and `/changes` answers them.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use state::{Store, StoreConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// The admin socket of a store folder when `server.admin_socket` is not set.
pub fn default_socket(store_path: &Path) -> PathBuf {
    store_path.join("admin.sock")
}

/// Longest request line accepted on the socket.
const MAX_LINE: u64 = 8192;

/// Binds the admin socket at `path` with mode 0600 (any stale socket file there is replaced:
/// the caller holds the store, so no other gateway can be using it) and serves it on the
/// current runtime until `shutdown` turns true. The socket file is removed then.
pub fn listen(
    path: &Path,
    store: Arc<Store>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Bind inside a private folder, restrict the socket, then move it into place: there is
    // never a moment when the socket exists with looser permissions at `path`.
    let private = parent.join(format!(".admin-{}-{}", std::process::id(), unique()));
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("s");
    let result = (|| {
        let listener = std::os::unix::net::UnixListener::bind(&staged)?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        match std::fs::remove_file(path) {
            Ok(()) => tracing::debug!(socket = %path.display(), "replaced a stale admin socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(&staged, path)?;
        listener.set_nonblocking(true)?;
        tokio::net::UnixListener::from_std(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    let listener = result?;
    let path = path.to_owned();
    tracing::info!(socket = %path.display(), "admin socket ready (jmap-gateway backup)");
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(handle(stream, store.clone()));
                    }
                    Err(e) => {
                        tracing::warn!("admin socket: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = stopped(&mut shutdown) => { break; }
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

async fn handle(stream: tokio::net::UnixStream, store: Arc<Store>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_LINE));
    let reply =
        match tokio::time::timeout(Duration::from_secs(30), reader.read_line(&mut line)).await {
            Err(_) => "error no request within 30 seconds".to_owned(),
            Ok(Err(e)) => format!("error reading the request: {e}"),
            Ok(Ok(_)) => answer(line.trim_end_matches(['\r', '\n']), store).await,
        };
    let _ = write.write_all(format!("{reply}\n").as_bytes()).await;
    let _ = write.shutdown().await;
}

async fn answer(line: &str, store: Arc<Store>) -> String {
    let Some(target) = line.strip_prefix("backup ") else {
        return "error unknown command (expected: backup /absolute/path)".to_owned();
    };
    let target = PathBuf::from(target);
    if !target.is_absolute() {
        return "error the backup folder must be an absolute path".to_owned();
    }
    tracing::info!(to = %target.display(), "backup requested on the admin socket");
    let t = target.clone();
    match tokio::task::spawn_blocking(move || checkpoint(&store, &t)).await {
        Ok(Ok(())) => {
            tracing::info!(to = %target.display(), "backup written");
            format!("ok {}", target.display())
        }
        Ok(Err(e)) => {
            tracing::warn!("backup to {} failed: {e}", target.display());
            format!("error {e}")
        }
        Err(e) => format!("error the backup task failed: {e}"),
    }
}

/// Writes a checkpoint of `store` to `target`, creating its parent folders.
fn checkpoint(store: &Store, target: &Path) -> Result<(), String> {
    if target.exists() {
        return Err(format!(
            "{} already exists; a backup goes to a new folder",
            target.display()
        ));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    store.checkpoint(target).map_err(|e| e.to_string())
}

/// How a backup was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    /// The running gateway wrote it (through the admin socket).
    ByRunningGateway,
    /// No gateway answered; the store was opened and checkpointed directly.
    Offline,
}

/// Asks the gateway behind `socket` for a backup to `target`. `Ok(None)` when no gateway
/// listens there (no socket file, or nobody accepting); `Err` when one answered with an error.
pub fn request_backup(socket: &Path, target: &Path) -> Result<Option<String>, String> {
    let stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot connect to {}: {e}", socket.display())),
    };
    // A checkpoint flushes memtables; give a busy store plenty of time.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(600)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let mut writer = &stream;
    writer
        .write_all(format!("backup {}\n", target.display()).as_bytes())
        .map_err(|e| format!("sending to {}: {e}", socket.display()))?;
    let mut reply = String::new();
    BufReader::new(&stream)
        .take(MAX_LINE)
        .read_line(&mut reply)
        .map_err(|e| format!("reading the reply from {}: {e}", socket.display()))?;
    let reply = reply.trim_end();
    if let Some(path) = reply.strip_prefix("ok ") {
        Ok(Some(path.to_owned()))
    } else if let Some(e) = reply.strip_prefix("error ") {
        Err(format!("the running gateway refused: {e}"))
    } else {
        Err(format!(
            "unexpected reply from {}: {reply:?}",
            socket.display()
        ))
    }
}

/// `jmap-gateway backup`: through the running gateway if one answers on `socket`, else by
/// opening the store at `store_path` directly.
pub fn backup(socket: &Path, store_path: &Path, target: &Path) -> Result<BackupOutcome, String> {
    let target = std::path::absolute(target).map_err(|e| format!("{}: {e}", target.display()))?;
    if target.exists() {
        return Err(format!(
            "{} already exists; a backup goes to a new folder",
            target.display()
        ));
    }
    if request_backup(socket, &target)?.is_some() {
        return Ok(BackupOutcome::ByRunningGateway);
    }
    if !store_path.join("CURRENT").is_file() {
        return Err(format!(
            "no store at {} (and no gateway answers on {})",
            store_path.display(),
            socket.display()
        ));
    }
    let store = Store::open(store_path, StoreConfig::default()).map_err(|e| {
        format!(
            "no gateway answers on {} and the store at {} cannot be opened: {e}",
            socket.display(),
            store_path.display()
        )
    })?;
    checkpoint(&store, &target)?;
    Ok(BackupOutcome::Offline)
}

/// Resolves once the shutdown signal is true (or its sender is gone).
async fn stopped(signal: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = signal.wait_for(|s| *s).await;
}
