//! `[[passthrough]]` logins: a user's own credentials tried on the real Dovecot and SOGo.

use std::sync::Arc;

use gateway::accounts::{LoginError, PassthroughLogin};
use gateway::config::Config;
use gateway::http::Gateway;
use gateway::passthrough::UpstreamLogin;
use state::{Durability, Store, StoreConfig};
use upstream::Secret;

fn secret(s: &str) -> Secret<String> {
    Secret::new(s.to_owned())
}

fn config(text: &str) -> Config {
    let c = Config::parse(text).unwrap();
    assert!(c.problems().is_empty(), "{:?}", c.problems());
    c
}

fn imap_config() -> Config {
    let d = conformance_tests::dovecot();
    config(&format!(
        "[[passthrough]]\nkind = \"imap\"\nname = \"Test Dovecot\"\nhost = \"127.0.0.1\"\n\
         port = {}\ntls = \"none\"\n",
        d.imap_port
    ))
}

#[tokio::test]
async fn imap_passthrough_accepts_upstream_credentials_only() {
    let d = conformance_tests::dovecot();
    let login = UpstreamLogin::new(&imap_config().passthrough[0]).unwrap();
    let user = &d.users[0];
    let account = login
        .login(&user.name, &user.password)
        .await
        .unwrap()
        .expect("the real credentials are accepted");
    assert_eq!(
        account.key,
        format!("imap:127.0.0.1:{}:{}", d.imap_port, user.name)
    );
    assert_eq!(account.name, format!("{} (Test Dovecot)", user.name));
    assert!(
        login
            .login(&user.name, &secret("wrong"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        login
            .login("nosuchuser", &secret("x"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn eas_passthrough_accepts_upstream_credentials_only() {
    let s = conformance_tests::sogo();
    let c = config(&format!(
        "[[passthrough]]\nkind = \"eas\"\nname = \"Test SOGo\"\nurl = \"{}\"\n",
        s.url
    ));
    let login = UpstreamLogin::new(&c.passthrough[0]).unwrap();
    let user = &s.users[0];
    let account = login.login(&user.name, &user.password).await.unwrap();
    assert_eq!(
        account.map(|a| a.key),
        Some(format!("eas:{}:{}", s.url, user.name))
    );
    assert!(
        login
            .login(&user.name, &secret("wrong"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn an_unreachable_passthrough_server_is_an_error_not_a_refusal() {
    let c = config(
        "[[passthrough]]\nkind = \"imap\"\nname = \"Nowhere\"\nhost = \"127.0.0.1\"\nport = 1\n\
         tls = \"none\"\n",
    );
    let login = UpstreamLogin::new(&c.passthrough[0]).unwrap();
    let err = login.login("alice", &secret("x")).await.unwrap_err();
    assert!(err.contains("127.0.0.1:1"), "{err}");
}

#[test]
fn a_passthrough_user_gets_one_stable_account_in_the_gateway() {
    let d = conformance_tests::dovecot();
    let user = d.users[1].clone();
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Arc::new(
            Store::open(
                dir.path().join("store"),
                StoreConfig {
                    durability: Durability::Buffered,
                    ..StoreConfig::default()
                },
            )
            .unwrap(),
        )
    };
    let first_id = actix_web::rt::System::new().block_on(async {
        let c = imap_config();
        let login = Arc::new(UpstreamLogin::new(&c.passthrough[0]).unwrap());
        let gw = Gateway::builder(c)
            .store(open())
            .passthrough(login)
            .build()
            .await
            .unwrap();
        let wrong = gw.registry().login(&user.name, &secret("wrong")).await;
        assert!(
            matches!(wrong, Err(LoginError::BadCredentials)),
            "{wrong:?}"
        );
        let entry = gw
            .registry()
            .login(&user.name, &user.password)
            .await
            .unwrap();
        assert_eq!(entry.accounts.len(), 1, "{:?}", entry.accounts);
        let again = gw
            .registry()
            .login(&user.name, &user.password)
            .await
            .unwrap();
        assert_eq!(again.accounts[0].id, entry.accounts[0].id);
        entry.accounts[0].id.as_str().to_owned()
    });
    // After a restart on the same store the same login yields the same accountId.
    let second_id = actix_web::rt::System::new().block_on(async {
        let c = imap_config();
        let login = Arc::new(UpstreamLogin::new(&c.passthrough[0]).unwrap());
        let gw = Gateway::builder(c)
            .store(open())
            .passthrough(login)
            .build()
            .await
            .unwrap();
        let entry = gw
            .registry()
            .login(&user.name, &user.password)
            .await
            .unwrap();
        entry.accounts[0].id.as_str().to_owned()
    });
    assert_eq!(first_id, second_id);
}
