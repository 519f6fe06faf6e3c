//! The `wapi` binary as a child process: configuration errors and signals.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::*;

fn wapi() -> Command {
    ChildBridge::command()
}

#[test]
fn an_invalid_setting_exits_2_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let out = wapi()
        .env("WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH", dir.path())
        .env("WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS", "soon")
        .stderr(Stdio::piped())
        .output()
        .expect("run wapi");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WAPI_CONNECTIONS_CHECKOUT_DURATION_SECS"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_cleanly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = wapi()
        .env("WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH", dir.path())
        .env("WAPI_INTERNAL_HOST", format!("127.0.0.1:{port}"))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn wapi");
    let health = format!("http://127.0.0.1:{port}/v1/health");
    eventually(Duration::from_secs(10), "the bridge answering", || {
        let health = health.clone();
        async move {
            let r = reqwest::get(&health).await.ok()?;
            (r.status() == 200).then_some(())
        }
    })
    .await;
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = eventually(Duration::from_secs(10), "the bridge exiting", || {
        let s = child.try_wait().ok().flatten();
        async move { s }
    })
    .await;
    assert_eq!(status.code(), Some(0));
}

#[test]
fn an_open_port_without_a_credential_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = wapi()
        .env("WAPI_FILE_SYSTEM_ROOT_POINT_FULL_PATH", dir.path())
        .env("WAPI_INTERNAL_HOST", "0.0.0.0:0")
        .stderr(Stdio::piped())
        .output()
        .expect("run wapi");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("WAPI_API_KEY") && err.contains("WAPI_ALLOW_NO_AUTH"),
        "{err}"
    );
}
