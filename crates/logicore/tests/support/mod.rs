//! What the binary's integration tests share: the `logicore` executable with a clean environment.

use std::process::Command;

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
