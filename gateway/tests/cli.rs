//! The `jmap-gateway` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_jmap-gateway"))
        .args(args)
        .env_remove("JMAP_GATEWAY_CONFIG")
        .output()
        .unwrap()
}

fn example_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("jmap-gateway.example.toml")
        .display()
        .to_string()
}

fn write_config(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    (dir, path)
}

#[test]
fn check_config_accepts_the_example_config() {
    let out = gateway(&["check-config", "--config", &example_config()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(": ok (1 users, 2 accounts, 1 passthrough servers"),
        "{stdout}"
    );
}

#[test]
fn check_config_names_a_mistyped_key() {
    let (_dir, path) = write_config("[store]\npaht = \"/tmp/x\"\n");
    let out = gateway(&["check-config", "--config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("store.paht") || stderr.contains("`paht`"),
        "{stderr}"
    );
    assert!(stderr.contains("path"), "{stderr}");
}

#[test]
fn check_config_names_a_missing_password() {
    let (_dir, path) = write_config(
        "[[users]]\nname = \"alice\"\npassword = \"x\"\n\
         [[users.accounts]]\nkind = \"imap\"\nhost = \"imap.example.com\"\nusername = \"alice\"\n",
    );
    let out = gateway(&["check-config", "--config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("users[0].accounts[0]"), "{stderr}");
    assert!(stderr.contains("password"), "{stderr}");
}

#[test]
fn check_config_names_an_unreadable_password_file() {
    let (_dir, path) =
        write_config("[[users]]\nname = \"alice\"\npassword = { file = \"/nonexistent/pw\" }\n");
    let out = gateway(&["check-config", "--config", &path]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("users[0].password"), "{stderr}");
    assert!(stderr.contains("/nonexistent/pw"), "{stderr}");
}

#[test]
fn a_missing_config_file_is_a_clear_error() {
    let out = gateway(&["check-config", "--config", "/nonexistent/gw.toml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("cannot read config file /nonexistent/gw.toml"),
        "{stderr}"
    );
}

#[test]
fn version_and_help_work() {
    let out = gateway(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("jmap-gateway "));
    let out = gateway(&["--help"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("serve") && stdout.contains("check-config"),
        "{stdout}"
    );
}

#[test]
fn serve_answers_healthz_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_jmap-gateway"))
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path().join("data"))
        .current_dir(dir.path())
        .env_remove("JMAP_GATEWAY_CONFIG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut answer = String::new();
    for _ in 0..100 {
        if let Ok(mut s) = std::net::TcpStream::connect(&listen) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .unwrap();
            s.read_to_string(&mut answer).unwrap();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("data").is_dir());
}
