//! Command-line interface: `serve`, `check-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{
    Config, DEFAULT_CONFIG_PATH, PassthroughConfig, PassthroughEas, PassthroughImap, TlsMode,
};

/// A JMAP server (RFC 8620, RFC 8621) for mail accounts on IMAP and Exchange ActiveSync servers.
///
/// JMAP clients talk to the gateway; the gateway keeps each account in sync with its
/// upstream server and writes changes through to it.
#[derive(Debug, Parser)]
#[command(name = "jmap-gateway", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway: HTTP API, upstream sync and push.
    ///
    /// Without --config, reads ./jmap-gateway.toml if it exists, else runs on defaults
    /// (127.0.0.1:8080, store in ./data). Options given here override the file.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Address to listen on, e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Folder of the embedded store.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Let anyone who can log in to this upstream server use the gateway with the same
        /// username and password. imaps://HOST[:PORT] (TLS), imap+starttls://HOST[:PORT],
        /// imap://HOST[:PORT] (no TLS), or the https:// URL of an ActiveSync endpoint.
        /// May be repeated.
        #[arg(long, value_name = "URL")]
        passthrough: Vec<String>,
    },
    /// Check a configuration file, including that every secret can be read, and exit.
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write a consistent copy of the store to a new folder, while the gateway runs or not.
    ///
    /// A running gateway is asked through its admin socket (server.admin_socket, default
    /// admin.sock in the store folder; run this as the gateway's user or root) and writes the
    /// copy itself, so the folder must be writable by it. When no gateway answers, the store is
    /// opened and copied directly. Restore by starting the gateway with --data-dir on the copy:
    /// clients' state strings from before the backup stay valid.
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// The new folder to write the backup to (must not exist).
        #[arg(long, value_name = "DIR")]
        to: PathBuf,
        /// Folder of the store, if not store.path from the configuration.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// Configuration file (TOML). See jmap-gateway.example.toml for every option.
    #[arg(long, short, value_name = "FILE", env = "JMAP_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// Loads the named file, or the default file if present, or all defaults.
    fn load(&self) -> Result<(Config, Option<PathBuf>), ExitCode> {
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_PATH)).filter(|p| p.exists()),
        };
        match &path {
            None => Ok((Config::default(), None)),
            Some(p) => match Config::load(p) {
                Ok(c) => Ok((c, path)),
                Err(errors) => {
                    for e in errors {
                        eprintln!("error: {e}");
                    }
                    Err(ExitCode::from(2))
                }
            },
        }
    }
}

pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match config.load() {
            Ok((c, path)) => {
                let accounts: usize = c.users.iter().map(|u| u.accounts.len()).sum();
                println!(
                    "{}: ok ({} users, {} accounts, {} passthrough servers, listen {}, store {})",
                    path.as_deref().unwrap_or(Path::new("(defaults)")).display(),
                    c.users.len(),
                    accounts,
                    c.passthrough.len(),
                    c.server.listen,
                    c.store.path.display()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Backup {
            config,
            to,
            data_dir,
        } => {
            let (c, _) = match config.load() {
                Ok(v) => v,
                Err(code) => return code,
            };
            let store = data_dir.unwrap_or_else(|| c.store.path.clone());
            let socket = c.server.admin_socket(&store);
            match crate::admin::backup(&socket, &store, &to) {
                Ok(how) => {
                    let how = match how {
                        crate::admin::BackupOutcome::ByRunningGateway => "by the running gateway",
                        crate::admin::BackupOutcome::Offline => "from the stopped store",
                    };
                    println!("backup written to {} ({how})", to.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            data_dir,
            passthrough,
        } => {
            let (mut c, path) = match config.load() {
                Ok(v) => v,
                Err(code) => return code,
            };
            if let Some(l) = listen {
                c.server.listen = l;
            }
            if let Some(d) = data_dir {
                c.store.path = d;
            }
            for (i, url) in passthrough.iter().enumerate() {
                match parse_passthrough(url, i) {
                    Ok(p) => c.passthrough.push(p),
                    Err(e) => {
                        eprintln!("error: --passthrough {url}: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            let problems = c.problems();
            if !problems.is_empty() {
                for (key, message) in problems {
                    eprintln!("error: key `{key}`: {message}");
                }
                return ExitCode::from(2);
            }
            init_logging(&c.log.filter);
            match crate::http::serve(c, path) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
}

/// Turns a `--passthrough` URL into a passthrough server entry.
fn parse_passthrough(url: &str, index: usize) -> Result<PassthroughConfig, String> {
    let name = format!("passthrough-{}", index + 1);
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(PassthroughConfig::Eas(PassthroughEas {
            name,
            url: url.to_owned(),
            ca_file: None,
        }));
    }
    let (tls, rest) = if let Some(r) = url.strip_prefix("imaps://") {
        (TlsMode::Tls, r)
    } else if let Some(r) = url.strip_prefix("imap+starttls://") {
        (TlsMode::Starttls, r)
    } else if let Some(r) = url.strip_prefix("imap://") {
        (TlsMode::None, r)
    } else {
        return Err(
            "expected imaps://HOST[:PORT], imap+starttls://HOST[:PORT], imap://HOST[:PORT] \
             or an https:// ActiveSync URL"
                .into(),
        );
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{p}` is not a port number"))?;
            (h.trim_start_matches('[').trim_end_matches(']'), Some(port))
        }
        _ => (rest, None),
    };
    if host.is_empty() || host.contains('/') {
        return Err("expected a host name after the scheme".into());
    }
    Ok(PassthroughConfig::Imap(PassthroughImap {
        name,
        host: host.to_owned(),
        port,
        tls,
        ca_file: None,
        smtp: None,
        sieve: None,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn passthrough_urls() {
        let PassthroughConfig::Imap(p) = parse_passthrough("imaps://imap.example.com", 0).unwrap()
        else {
            panic!("expected IMAP")
        };
        assert_eq!(
            (p.host.as_str(), p.port, p.tls),
            ("imap.example.com", None, TlsMode::Tls)
        );
        let PassthroughConfig::Imap(p) =
            parse_passthrough("imap+starttls://mx.example.com:1143/", 0).unwrap()
        else {
            panic!("expected IMAP")
        };
        assert_eq!(
            (p.host.as_str(), p.port, p.tls),
            ("mx.example.com", Some(1143), TlsMode::Starttls)
        );
        assert!(matches!(
            parse_passthrough("https://eas.example.com/Microsoft-Server-ActiveSync", 0).unwrap(),
            PassthroughConfig::Eas(_)
        ));
        assert!(parse_passthrough("pop3://x", 0).is_err());
        assert!(parse_passthrough("imap://host:0", 0).is_err());
        assert!(parse_passthrough("imaps://", 0).is_err());
    }
}
