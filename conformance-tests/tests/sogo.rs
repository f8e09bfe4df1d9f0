//! The EAS adapter's transport against the real SOGo ActiveSync endpoint.

use conformance_tests::sogo;
use eas::{EasClient, EasEndpoint, EasError};

fn endpoint(s: &conformance_tests::Sogo, password: upstream::Secret<String>) -> EasEndpoint {
    EasEndpoint {
        url: s.url.clone(),
        username: s.users[0].name.clone(),
        password,
        device_id: "conformance01".into(),
        device_type: "JmapGateway".into(),
        extra_ca_pem: None,
    }
}

#[tokio::test]
async fn authenticated_options_lists_protocol_14_1() {
    let s = sogo();
    let client = EasClient::new(endpoint(&s, s.users[0].password.clone())).unwrap();
    let options = client.options().await.unwrap();
    assert!(options.versions.iter().any(|v| v == "14.1"), "{options:?}");
    assert!(options.commands.iter().any(|c| c == "Sync"), "{options:?}");
    assert!(options.commands.iter().any(|c| c == "Ping"), "{options:?}");
    assert_eq!(options.preferred_version(), Some("14.1"));
}

#[tokio::test]
async fn options_with_a_wrong_password_is_unauthorized() {
    let s = sogo();
    let client = EasClient::new(endpoint(&s, upstream::Secret::new("wrong".into()))).unwrap();
    let err = client.options().await.unwrap_err();
    assert!(matches!(err, EasError::Unauthorized { .. }), "{err:?}");
}
