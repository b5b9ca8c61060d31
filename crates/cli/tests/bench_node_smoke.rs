//! `fio-l2 bench node` at a tiny size: every phase runs against a real node
//! (new envelopes answered 201, the resend of stored ones 200, arrays,
//! inbox pages with owner proofs) and the report names each figure. The
//! figures themselves are not asserted: timings do not belong in tests.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fio-l2");

#[test]
fn a_tiny_node_bench_runs_every_phase_and_reports_each_figure() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "node",
            "--messages",
            "200",
            "--rounds",
            "1",
            "--fill",
            "20400",
            "--pages",
            "20",
            "--concurrency",
            "8",
            "--array-clients",
            "2",
        ])
        .output()
        .expect("run fio-l2 bench node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "verify only (parse + checks 1-4, all cores)",
        "ingest over HTTP, single envelopes, 8 clients",
        "ingest over HTTP, arrays of 100, 2 clients",
        "resent stored single envelopes (200), 8 clients",
        "bound for singles: verify / (verify + resend node)",
        "arrays, node: writer",
        "inbox page (100, newest first) p99",
        "GET /v1/info between the pages, p50 / p99 ms",
    ] {
        assert!(
            stdout.contains(line),
            "no `{line}` in the report:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("20400 messages stored for reads"),
        "{stdout}"
    );
}
