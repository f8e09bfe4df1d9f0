//! HTTPS on the gateway's own listener: rustls with the ring provider, TLS 1.2 and 1.3, HTTP/2
//! and HTTP/1.1 by ALPN (actix-web adds both protocols to the configuration it is given).
//!
//! The certificate chain and key are PEM files named in `[server] tls_cert` / `tls_key`. They
//! are served through a [`ResolvesServerCert`] that hands out the current `CertifiedKey` from
//! behind a lock, so a renewed certificate is swapped in without touching the listener:
//! [`CertFiles::reload`] reads both files again and swaps only when they parse and the key
//! matches the certificate (a half-written renewal keeps the old pair in service). The binary
//! reloads on SIGHUP and, every `tls_reload_secs`, when the files' bytes have changed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Installs ring as the process's default rustls provider. Only the first call in a process
/// installs it; later calls (tests starting several servers) find it there and do nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The bytes a certificate pair was last loaded from, and what they made.
struct Loaded {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    key: Arc<CertifiedKey>,
}

/// A certificate chain and private key loaded from PEM files, reloadable in place.
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Loaded>,
}

impl std::fmt::Debug for CertFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFiles")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the TLS {what} {}: {e}", path.display()))
}

/// Parses a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or SEC1)
/// and checks that the key belongs to the leaf certificate.
fn parse(cert_pem: &[u8], key_pem: &[u8], cert: &Path, key: &Path) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            cert.display()
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| {
        format!(
            "{} and {} do not make a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })
}

impl CertFiles {
    /// Loads the pair now; an error names the file and what is wrong with it.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertFiles>, String> {
        let cert_pem = read(cert, "certificate")?;
        let key_pem = read(key, "key")?;
        let parsed = parse(&cert_pem, &key_pem, cert, key)?;
        Ok(Arc::new(CertFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(Loaded {
                cert_pem,
                key_pem,
                key: Arc::new(parsed),
            }),
        }))
    }

    /// Reads both files again. `Ok(true)` when a new pair is now served, `Ok(false)` when the
    /// files are unchanged, `Err` (old pair kept) when they cannot be read or do not parse.
    pub fn reload(&self) -> Result<bool, String> {
        let cert_pem = read(&self.cert, "certificate")?;
        let key_pem = read(&self.key, "key")?;
        {
            let current = self.current.read().unwrap_or_else(|e| e.into_inner());
            if current.cert_pem == cert_pem && current.key_pem == key_pem {
                return Ok(false);
            }
        }
        let parsed = parse(&cert_pem, &key_pem, &self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Loaded {
            cert_pem,
            key_pem,
            key: Arc::new(parsed),
        };
        Ok(true)
    }

    /// Reloads and logs the outcome (for SIGHUP and the polling task).
    pub fn reload_logged(&self) {
        match self.reload() {
            Ok(true) => tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded"),
            Ok(false) => tracing::debug!("TLS certificate files unchanged"),
            Err(e) => tracing::warn!("TLS certificate not reloaded, the previous one stays: {e}"),
        }
    }

    /// The pair served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .key
            .clone()
    }

    /// A server configuration that always serves the current pair: TLS 1.2 and 1.3 with the
    /// ring provider, no client certificates. ALPN is added by actix-web (h2, http/1.1).
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, String> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        Ok(config)
    }

    /// Spawns a task on the current runtime that calls [`CertFiles::reload`] every `every`
    /// until `shutdown` turns true.
    pub fn poll(
        self: &Arc<Self>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let files = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stopped(&mut shutdown) => { return; }
                }
                let f = files.clone();
                // File reads are blocking; keep them off the server's threads.
                let _ = tokio::task::spawn_blocking(move || f.reload_logged()).await;
            }
        });
    }
}

/// Resolves once the shutdown signal is true (or its sender is gone).
async fn stopped(signal: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = signal.wait_for(|s| *s).await;
}

#[derive(Debug)]
struct Resolver(Arc<CertFiles>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pair(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_bad_renewal_keeps_the_old_pair_and_a_good_one_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        let (c1, k1) = pair("one.test");
        std::fs::write(&cert_path, &c1).unwrap();
        std::fs::write(&key_path, &k1).unwrap();
        let files = CertFiles::load(&cert_path, &key_path).unwrap();
        let first = files.current();
        assert!(!files.reload().unwrap());

        // A new certificate with the old key: rejected, old pair still served.
        let (c2, k2) = pair("two.test");
        std::fs::write(&cert_path, &c2).unwrap();
        let e = files.reload().unwrap_err();
        assert!(e.contains("usable pair"), "{e}");
        assert!(Arc::ptr_eq(&first, &files.current()));

        std::fs::write(&key_path, &k2).unwrap();
        assert!(files.reload().unwrap());
        assert_ne!(first.cert[0], files.current().cert[0]);

        std::fs::write(&cert_path, "garbage").unwrap();
        assert!(files.reload().unwrap_err().contains("no PEM certificate"));
        assert!(
            CertFiles::load(&dir.path().join("missing"), &key_path)
                .unwrap_err()
                .contains("cannot read the TLS certificate")
        );
    }
}
