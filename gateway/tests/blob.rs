//! Upload, download and Blob/copy.

use jmap_engine::{Limits, UnsignedInt};
use serde_json::{Value, json};

use crate::support::{CORE, TestServer, client};

async fn upload(s: &TestServer, user: &str, account: &str, data: &[u8], ct: &str) -> (u16, Value) {
    let r = client()
        .post(s.url(&format!("/jmap/upload/{account}/")))
        .basic_auth(user, Some(format!("{user}-pw")))
        .header("Content-Type", ct)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, crate::support::json(r).await.unwrap_or(Value::Null))
}

async fn download(s: &TestServer, user: &str, path: &str) -> reqwest::Response {
    client()
        .get(s.url(path))
        .basic_auth(user, Some(format!("{user}-pw")))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn upload_download_round_trip() {
    let s = TestServer::start();
    let a = s.account("alice", 0);
    let data: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let (status, body) = upload(&s, "alice", &a, &data, "image/png").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["accountId"], json!(a));
    assert_eq!(body["type"], "image/png");
    assert_eq!(body["size"], 100_000);
    let blob = body["blobId"].as_str().unwrap().to_owned();
    // The same bytes give the same blobId.
    assert_eq!(
        upload(&s, "alice", &a, &data, "image/png").await.1["blobId"],
        json!(blob)
    );

    let r = download(
        &s,
        "alice",
        &format!("/jmap/download/{a}/{blob}/Gr%C3%BC%C3%9Fe%22.png?accept=image/png"),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"Gr__e_.png\"; filename*=UTF-8''Gr%C3%BC%C3%9Fe%22.png"
    );
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(r.bytes().await.unwrap().to_vec(), data);

    // A hostile accept type is not echoed.
    let r = download(
        &s,
        "alice",
        &format!("/jmap/download/{a}/{blob}/x?accept=text/html%0d%0aX:%20y"),
    )
    .await;
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    // Unknown blob: 404 problem.
    let r = download(
        &s,
        "alice",
        &format!("/jmap/download/{a}/Gnope/x?accept=a/b"),
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn blobs_are_invisible_across_accounts_and_users() {
    let s = TestServer::start();
    let (a0, a1, bob) = (
        s.account("alice", 0),
        s.account("alice", 1),
        s.account("bob", 0),
    );
    let blob = upload(&s, "alice", &a0, b"secret", "text/plain").await.1["blobId"]
        .as_str()
        .unwrap()
        .to_owned();
    // Alice's other account does not have it; Bob cannot name Alice's account at all.
    assert_eq!(
        download(&s, "alice", &format!("/jmap/download/{a1}/{blob}/x"))
            .await
            .status(),
        404
    );
    assert_eq!(
        download(&s, "bob", &format!("/jmap/download/{a0}/{blob}/x"))
            .await
            .status(),
        404
    );
    assert_eq!(
        download(&s, "bob", &format!("/jmap/download/{bob}/{blob}/x"))
            .await
            .status(),
        404
    );
    assert_eq!(upload(&s, "bob", &a0, b"x", "text/plain").await.0, 404);

    // Blob/copy brings it into the other account.
    let r = s
        .calls(
            "alice",
            &[CORE],
            json!([["Blob/copy", {"fromAccountId": a0, "accountId": a1, "blobIds": [blob, "Gmissing"]}, "0"]]),
        )
        .await;
    assert_eq!(r[0][0], "Blob/copy");
    assert_eq!(r[0][1]["copied"], json!({ (blob.clone()): blob }));
    assert_eq!(r[0][1]["notCopied"]["Gmissing"]["type"], "notFound");
    let r = download(&s, "alice", &format!("/jmap/download/{a1}/{blob}/x")).await;
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"secret");
    // Bob cannot copy from Alice's account.
    let r = s
        .calls(
            "bob",
            &[CORE],
            json!([["Blob/copy", {"fromAccountId": a0, "accountId": bob, "blobIds": [blob]}, "0"]]),
        )
        .await;
    assert_eq!(r[0][1]["type"], "fromAccountNotFound");
}

#[tokio::test]
async fn upload_over_the_limit_is_refused() {
    let limits = Limits {
        max_size_upload: UnsignedInt::saturating(1000),
        ..Limits::default()
    };
    let s = TestServer::start_with(crate::support::CONFIG, limits);
    let a = s.account("alice", 0);
    let (status, problem) = upload(&s, "alice", &a, &[7u8; 1001], "application/octet-stream").await;
    assert_eq!(status, 400);
    assert_eq!(problem["type"], "urn:ietf:params:jmap:error:limit");
    assert_eq!(problem["limit"], "maxSizeUpload");
    assert_eq!(
        upload(&s, "alice", &a, &[7u8; 1000], "application/octet-stream")
            .await
            .0,
        201
    );
}
