//! The fetch rules against real local servers.

use super::*;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::stream;

/// Serves `app` on 127.0.0.1 on a free port, for the test's lifetime (the
/// task ends with the test's runtime).
async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a local port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

/// A server whose every request is counted, to show that a refused URL
/// never reached it.
async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "reached"
        }
    });
    (serve(app).await, hits)
}

fn policy(allow_private: bool) -> FetchPolicy {
    FetchPolicy {
        allow_private,
        max_bytes: 1 << 20,
        timeout: Duration::from_secs(5),
        max_redirects: 5,
    }
}

fn dest() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("download");
    (dir, path)
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[tokio::test]
async fn fetches_a_file_with_allow_private() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let served = body.clone();
    let app = Router::new()
        .route(
            "/file.bin",
            get(move || {
                let served = served.clone();
                async move { ([(header::CONTENT_TYPE, "image/png")], served) }
            }),
        )
        // A relative redirect, to show hops are followed and resolved.
        .route(
            "/start",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "file.bin")]) }),
        );
    let addr = serve(app).await;
    let (_dir, path) = dest();

    let fetched = fetch_to_file(&policy(true), &format!("http://{addr}/start"), &path)
        .await
        .expect("fetch succeeds");

    assert_eq!(fetched.size, body.len() as u64);
    assert_eq!(fetched.content_type.as_deref(), Some("image/png"));
    assert_eq!(fetched.sha256, sha256(&body));
    assert_eq!(fetched.final_url, format!("http://{addr}/file.bin"));
    assert_eq!(tokio::fs::read(&path).await.expect("read"), body);
}

#[tokio::test]
async fn loopback_literal_refused_without_allow_private() {
    let (addr, hits) = counting_server().await;
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(false), &format!("http://{addr}/"), &path)
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Private { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "127.0.0.1 is a loopback address: not allowed \
         (set WAPI_MEDIA_URL_ALLOW_PRIVATE=true to allow)"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    assert!(!path.exists());

    // Other spellings of the same address are caught too (the url crate
    // normalises them, or the resolver sees them).
    let port = addr.port();
    for url in [
        format!("http://0x7f.1:{port}/"),
        format!("http://2130706433:{port}/"),
        format!("http://127.0.0.1.:{port}/"),
        format!("http://0177.0.0.1:{port}/"),
    ] {
        let err = fetch_to_file(&policy(false), &url, &path)
            .await
            .expect_err(&url);
        assert!(matches!(err, FetchError::Private { .. }), "{url}: {err:?}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn localhost_refused_by_the_resolver() {
    let (addr, hits) = counting_server().await;
    let (_dir, path) = dest();
    let url = format!("http://localhost:{}/", addr.port());
    let err = fetch_to_file(&policy(false), &url, &path)
        .await
        .expect_err("refused");
    // The refusal raised in the resolver comes out as itself, not as a
    // generic connection error.
    assert!(matches!(err, FetchError::Private { .. }), "{err:?}");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // And the same name is fine when private addresses are allowed.
    fetch_to_file(&policy(true), &url, &path)
        .await
        .expect("allowed with allow_private");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn metadata_address_refused_even_with_allow_private() {
    let (_dir, path) = dest();
    let err = fetch_to_file(
        &policy(true),
        "http://169.254.169.254/latest/meta-data",
        &path,
    )
    .await
    .expect_err("refused");
    assert!(matches!(err, FetchError::Forbidden { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "169.254.169.254 is a link-local/cloud metadata address: never allowed"
    );
}

#[tokio::test]
async fn redirect_to_metadata_refused() {
    let app = Router::new().route(
        "/go",
        get(|| async {
            (
                StatusCode::FOUND,
                [(header::LOCATION, "http://169.254.169.254/latest/meta-data")],
            )
        }),
    );
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(true), &format!("http://{addr}/go"), &path)
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("169.254.169.254"), "{err}");
    assert!(!path.exists());
}

#[tokio::test]
async fn mapped_loopback_refused_without_allow_private() {
    let (addr, hits) = counting_server().await;
    let (_dir, path) = dest();
    let url = format!("http://[::ffff:127.0.0.1]:{}/", addr.port());
    let err = fetch_to_file(&policy(false), &url, &path)
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Private { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("::ffff:127.0.0.1 is a loopback address"),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Mapped metadata is refused by its IPv4 meaning, whatever the policy.
    let err = fetch_to_file(&policy(true), "http://[::ffff:169.254.169.254]/", &path)
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Forbidden { .. }), "{err:?}");
}

#[tokio::test]
async fn ipv6_link_local_refused() {
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(true), "http://[fe80::1]/", &path)
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Forbidden { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("fe80::1 is a link-local"),
        "{err}"
    );
}

#[tokio::test]
async fn not_found_names_the_status() {
    let addr = serve(Router::new()).await;
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(true), &format!("http://{addr}/missing"), &path)
        .await
        .expect_err("404");
    assert!(matches!(err, FetchError::Status(404)), "{err:?}");
    assert_eq!(err.to_string(), "the server answered 404");
    assert!(!path.exists());
}

#[tokio::test]
async fn redirect_loop_is_cut_off() {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().route(
        "/loop",
        get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/loop")]) }
        }),
    );
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(true), &format!("http://{addr}/loop"), &path)
        .await
        .expect_err("loop");
    assert!(matches!(err, FetchError::TooManyRedirects(5)), "{err:?}");
    assert_eq!(err.to_string(), "more than 5 redirects");
    // The first request plus 5 followed redirects.
    assert_eq!(hits.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn slow_server_times_out() {
    let app = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let policy = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..policy(true)
    };
    let started = Instant::now();
    let err = fetch_to_file(&policy, &format!("http://{addr}/slow"), &path)
        .await
        .expect_err("timeout");
    let took = started.elapsed();
    assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
    assert_eq!(err.to_string(), "no answer within 300 ms");
    assert!(took < policy.timeout * 3, "took {took:?}");
}

#[tokio::test]
async fn stalled_body_times_out_and_removes_the_file() {
    // Headers and a first chunk at once, then nothing: the timeout covers
    // the body too.
    let app = Router::new().route(
        "/stall",
        get(|| async {
            let first = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"start")) });
            Body::from_stream(futures::StreamExt::chain(first, stream::pending()))
        }),
    );
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let policy = FetchPolicy {
        timeout: Duration::from_millis(300),
        ..policy(true)
    };
    let started = Instant::now();
    let err = fetch_to_file(&policy, &format!("http://{addr}/stall"), &path)
        .await
        .expect_err("timeout");
    assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < policy.timeout * 3);
    assert!(!path.exists(), "partial file left behind");
}

#[tokio::test]
async fn announced_body_over_the_limit_is_refused_early() {
    let app = Router::new().route("/big", get(|| async { vec![7u8; 2001] }));
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let policy = FetchPolicy {
        max_bytes: 2000,
        ..policy(true)
    };
    let err = fetch_to_file(&policy, &format!("http://{addr}/big"), &path)
        .await
        .expect_err("too large");
    assert!(err.is_too_large(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "the file is larger than the limit of 2000 bytes"
    );
    assert!(!path.exists());

    // Refused on the header, before any byte is written: a file already
    // at `dest` is not even truncated.
    tokio::fs::write(&path, b"old").await.expect("write");
    let err = fetch_to_file(&policy, &format!("http://{addr}/big"), &path)
        .await
        .expect_err("too large");
    assert!(err.is_too_large(), "{err:?}");
    assert_eq!(tokio::fs::read(&path).await.expect("read"), b"old");
}

/// An endless chunked body (no Content-Length): only the streaming count
/// can stop it.
#[tokio::test]
async fn endless_chunked_body_is_cut_at_the_limit() {
    let app = Router::new().route(
        "/endless",
        get(|| async {
            let chunks =
                stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from(vec![1u8; 16 * 1024])));
            Body::from_stream(chunks)
        }),
    );
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let policy = FetchPolicy {
        max_bytes: 100_000,
        ..policy(true)
    };
    let err = fetch_to_file(&policy, &format!("http://{addr}/endless"), &path)
        .await
        .expect_err("too large");
    assert!(err.is_too_large(), "{err:?}");
    assert!(!path.exists(), "partial file left behind");
}

/// A chunked body of exactly the limit is accepted.
#[tokio::test]
async fn chunked_body_at_the_limit_is_accepted() {
    let app = Router::new().route(
        "/exact",
        get(|| async {
            let chunks =
                stream::iter((0..10).map(|_| Ok::<_, Infallible>(Bytes::from(vec![3u8; 1000]))));
            Response::new(Body::from_stream(chunks)).into_response()
        }),
    );
    let addr = serve(app).await;
    let (_dir, path) = dest();
    let policy = FetchPolicy {
        max_bytes: 10_000,
        ..policy(true)
    };
    let fetched = fetch_to_file(&policy, &format!("http://{addr}/exact"), &path)
        .await
        .expect("at the limit");
    assert_eq!(fetched.size, 10_000);
    assert_eq!(fetched.sha256, sha256(&[3u8; 10_000]));
    assert_eq!(fetched.content_type, None);
}

#[tokio::test]
async fn closed_port_is_a_connect_error() {
    // A port that was free a moment ago and has no listener now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    drop(listener);
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(true), &format!("http://{addr}/"), &path)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, FetchError::Connect(_)), "{err:?}");
    // "cannot connect: tcp connect error: Connection refused (os error 111)"
    let text = err.to_string();
    assert!(
        text.starts_with("cannot connect: tcp connect error: "),
        "{text}"
    );
}

#[tokio::test]
async fn other_schemes_refused() {
    let (_dir, path) = dest();
    let err = fetch_to_file(&policy(true), "ftp://127.0.0.1/file", &path)
        .await
        .expect_err("refused");
    assert!(matches!(err, FetchError::Scheme), "{err:?}");
    assert_eq!(err.to_string(), "only http and https URLs are allowed");
    for bad in ["file:///etc/passwd", "not a url"] {
        let err = fetch_to_file(&policy(true), bad, &path)
            .await
            .expect_err(bad);
        assert!(
            matches!(err, FetchError::Scheme | FetchError::InvalidUrl(_)),
            "{bad}: {err:?}"
        );
    }
}

#[tokio::test]
async fn check_destination_applies_the_rule() {
    let (addr, hits) = counting_server().await;
    let url = format!("http://{addr}/hook");
    let err = check_destination(&url, false).await.expect_err("refused");
    assert!(matches!(err, FetchError::Private { .. }), "{err:?}");
    check_destination(&url, true).await.expect("allowed");

    let by_name = format!("http://localhost:{}/hook", addr.port());
    check_destination(&by_name, false)
        .await
        .expect_err("refused");
    check_destination(&by_name, true).await.expect("allowed");

    check_destination("http://169.254.169.254/", true)
        .await
        .expect_err("never allowed");
    check_destination("ftp://example.com/", true)
        .await
        .expect_err("scheme");
    // A check, not a request.
    assert_eq!(hits.load(Ordering::SeqCst), 0);
}

#[test]
fn address_classes() {
    let never = |s: &str| matches!(classify(s.parse().expect(s)), Class::Never(_));
    let private = |s: &str| matches!(classify(s.parse().expect(s)), Class::Private(_));
    let public = |s: &str| classify(s.parse().expect(s)) == Class::Public;

    for s in [
        "169.254.169.254",
        "169.254.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "255.255.255.255",
        "224.0.0.1",
        "240.0.0.1",
        "100.100.100.200",
        "::",
        "fe80::1",
        "febf::1",
        "ff02::1",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "::ffff:0.0.0.0",
    ] {
        assert!(never(s), "{s} should never be allowed");
    }
    for s in [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "100.64.0.1",
        "100.127.255.255",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::127.0.0.1",
    ] {
        assert!(private(s), "{s} should be private");
    }
    for s in [
        "8.8.8.8",
        "172.32.0.1",
        "100.128.0.1",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
    ] {
        assert!(public(s), "{s} should be public");
    }
    assert!(
        private("fec0::1"),
        "deprecated site-local counts as private"
    );
}
