//! Keeps the benchmark from rotting: the whole run at a small size (20
//! sessions, 500 messages, 20 images, a 4 MiB document) must finish and
//! print every figure.

use std::process::Command;

#[test]
fn the_quick_run_prints_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_wapi-bench"))
        .args(["all", "--quick"])
        .output()
        .expect("run wapi-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wapi-bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |name: &str| -> Vec<&serde_json::Value> {
        lines.iter().filter(|v| v["figure"] == name).collect()
    };
    for name in [
        "machine",
        "bridge_rss",
        "idle_cpu",
        "inbound_throughput",
        "inbound_latency",
        "receiver_ceiling",
        "outbound",
        "media_inbound",
        "media_send_document",
        "group_fan_out",
        "restore",
        "rss_per_session",
        "run",
    ] {
        assert!(!find(name).is_empty(), "no {name} figure in:\n{stdout}");
    }
    let per = find("rss_per_session");
    assert_eq!(per.len(), 3, "one per step");
    for v in per {
        assert!(v["bridge_mib"].as_f64().is_some(), "{v}");
        assert!(v["bare_client_mib"].as_f64().is_some(), "{v}");
    }
    let inbound = find("inbound_throughput");
    assert!(inbound[0]["msg_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(find("restore")[0]["sessions"], 20);
    assert!(find("inbound_latency")[0]["p99_ms"].as_f64().is_some());
    let media = find("media_inbound")[0];
    assert_eq!(media["images"], 20, "{media}");
    assert!(media["mib_per_s"].as_f64().unwrap() > 0.0, "{media}");
    assert!(
        media["peak_rss_over_idle_mib"].as_f64().is_some(),
        "{media}"
    );
    let doc = find("media_send_document")[0];
    assert!(doc["peak_rss_over_idle_mib"].as_f64().is_some(), "{doc}");
}
