//! The `wapi` binary as a child process: configuration errors and signals.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn wapi() -> Command {
    ChildBridge::command()
}

/// Runs the binary with one setting; it must exit 2. Returns its stderr.
fn refused_with(var: &str, value: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = wapi()
        .env("WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH", dir.path())
        .env(var, value)
        .stderr(Stdio::piped())
        .output()
        .expect("run wapi");
    assert_eq!(out.status.code(), Some(2));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_invalid_setting_exits_2_naming_the_variable() {
    let err = refused_with("WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS", "soon");
    assert!(
        err.contains("WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_linked_session_exits_0_and_the_session_comes_back() {
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let port = port();
    let env = [
        (
            "WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH",
            dir.path().display().to_string(),
        ),
        ("WAPI_WHATSAPP_URL", sim.ws_url()),
        ("WAPI_WHATSAPP_VERSION_URL", sim.sw_js_url()),
    ];
    let mut bridge = ChildBridge::start(port, &env).await;
    bridge
        .link(&sim, "g1", "http://127.0.0.1:9/unused", "15550006611")
        .await;
    let killed = Command::new("kill")
        .args(["-TERM", &bridge.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = eventually(Duration::from_secs(10), "the bridge exiting", || {
        let s = bridge.child.try_wait().ok().flatten();
        async move { s }
    })
    .await;
    assert_eq!(status.code(), Some(0));
    drop(bridge);
    let bridge = ChildBridge::start(port, &env).await;
    let v = bridge.wait_status("g1", "WORKING").await;
    assert_eq!(v["jid"], "15550006611:1@s.whatsapp.net");
    let qr = bridge.get("/get-qr-code/g1/").await;
    assert_eq!(qr.status(), 404, "restored without a new scan");
}

#[test]
fn an_open_port_without_a_credential_is_refused() {
    let err = refused_with("WAPI_INTERNAL_HOST", "0.0.0.0:0");
    assert!(
        err.contains("WAPI_API_KEY") && err.contains("WAPI_ALLOW_NO_AUTH"),
        "{err}"
    );
}

/// Sentry's ingestion, stood in for by a local endpoint: a session the
/// phone unlinks is reported, tagged with its name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_session_is_reported_to_sentry() {
    let envelopes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = {
        let envelopes = envelopes.clone();
        axum::Router::new().route(
            "/api/{project}/envelope/",
            axum::routing::post(move |body: axum::body::Bytes| {
                let envelopes = envelopes.clone();
                async move {
                    envelopes
                        .lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).to_string());
                    "{}"
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sentry_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let env = [
        (
            "WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH",
            dir.path().display().to_string(),
        ),
        ("WAPI_WHATSAPP_URL", sim.ws_url()),
        ("WAPI_WHATSAPP_VERSION_URL", sim.sw_js_url()),
        (
            "WAPI_SENTRY_DSN",
            format!("http://publickey@{sentry_addr}/1"),
        ),
    ];
    let bridge = ChildBridge::start(port(), &env).await;
    bridge
        .link(&sim, "sen1", "http://127.0.0.1:9/unused", "15550006612")
        .await;
    device_admin(&sim, "15550006612", "logout").await;
    bridge.wait_status("sen1", "LOGGED_OUT").await;
    let envelope = eventually(Duration::from_secs(10), "a Sentry envelope", || async {
        envelopes
            .lock()
            .unwrap()
            .iter()
            .find(|e| e.contains("LoggedOut"))
            .cloned()
    })
    .await;
    assert!(envelope.contains(r#""session":"sen1""#), "{envelope}");
    // Nothing of the messages or credentials: the event names the state.
    assert!(!envelope.contains("publickey@"), "{envelope}");
}
