//! What the binary's integration tests share: the `logicore` executable with a clean environment, and
//! Prometheus' own check of a metrics page.

use std::io::Write;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_logicore");

/// The binary with only the given environment (plus PATH), so the developer's shell cannot leak in.
pub fn logicore(env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.env("LOGICORE_ENV", "test");
    command.env("LOG_LEVEL", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Asserts that `promtool check metrics` accepts a `/metrics` page.
pub fn promtool_accepts(metrics: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("promtool must be installed (Debian package prometheus): {e}"));
    child
        .stdin
        .take()
        .map(|mut stdin| stdin.write_all(metrics.as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("{e}"));
    let output = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        output.status.success(),
        "promtool rejected the metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
