//! The regression guard of #15: instructions the bridge executes per
//! forwarded message (callgrind, `wapi-bench cost`), against the count kept
//! in `bench/cost-baseline.json`. A count does not depend on the machine's
//! speed or load, so a change that makes forwarding much dearer fails here
//! on any machine. Needs Debian's valgrind (`.ci/run` installs it); without
//! it the test fails, it does not skip.

use std::process::Command;

use serde_json::Value;

#[test]
fn instructions_per_forwarded_message_stay_near_the_baseline() {
    let baseline: Value =
        serde_json::from_str(include_str!("../cost-baseline.json")).expect("the baseline's JSON");
    let args = baseline["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("args are strings"))
        .collect::<Vec<_>>();
    let out = Command::new(env!("CARGO_BIN_EXE_wapi-bench"))
        .args(&args)
        .output()
        .expect("run wapi-bench cost");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wapi-bench {args:?} failed (is valgrind installed?): {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fig: Value = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["figure"] == "cost")
        .unwrap_or_else(|| panic!("no cost figure in:\n{stdout}"));
    let now = fig["instructions_per_msg"].as_f64().expect("a count");
    let base = baseline["instructions_per_msg"]
        .as_f64()
        .expect("a baseline");
    let margin = baseline["margin"].as_f64().expect("a margin");
    println!("instructions per forwarded message: {now} (baseline {base}, x{margin} allowed)");
    assert!(now > 0.0, "{fig}");
    assert!(
        now <= base * margin,
        "forwarding a message costs {now} instructions, more than {margin} x the baseline {base}: \
         find what made it dearer (`wapi-bench cost --keep DIR`, then callgrind_annotate), \
         or if it is worth it, update bench/cost-baseline.json and say why"
    );
}
