//! The gateway with the process's real logger and its rolling file layer on (`LOG_DIR`), as the binary
//! runs it. A test binary of its own, since the logger is process-wide.

#[allow(
    dead_code,
    reason = "shared with the api tests, which use more of it than this one"
)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::Stack;
use platform::auth::Role;
use platform::telemetry::{Console, Identity, LogOptions};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_and_logged_with_the_rolling_file_layer_on() {
    let dir = std::env::temp_dir().join(format!("gateway-logs-{}", uuid::Uuid::now_v7()));
    let dir_text = dir.display().to_string();
    let settings = testkit::settings(&[]);
    let guard = platform::telemetry::init(
        LogOptions {
            level: "info",
            format: "json",
            dir: &dir_text,
            file_prefix: "gateway",
            console: Console::Stdout,
        },
        &settings.tracing,
        &Identity {
            process: gateway::NAME,
            version: "test",
            environment: "test",
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let stack = Stack::spawn().await;
    let client = testkit::client();
    let bearer = stack.bearer(Role::Admin);
    for n in 0..20 {
        let id = format!("file-log-{n}");
        let response = client
            .get(stack.url("/api/v1/users/me"))
            .header("authorization", &bearer)
            .header("x-request-id", &id)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(response.status(), 200, "request {n}");
        // Public, rejected and unmatched requests log through other paths; none may break the logger.
        for path in ["/health", "/api/v1/users/me/../x", "/api/v1/nowhere"] {
            let response = client
                .get(stack.url(path))
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert!(response.status().as_u16() < 500, "{path}");
        }
    }
    drop(guard);

    let lines: Vec<Value> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the log directory was not created: {e}"))
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .flat_map(|text| {
            text.lines()
                .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
                .collect::<Vec<Value>>()
        })
        .collect();
    let completed = lines
        .iter()
        .filter(|line| {
            line["message"] == "request completed"
                && line["request_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("file-log-"))
        })
        .count();
    assert_eq!(completed, 20, "one line per proxied request in the file");
    let _ = std::fs::remove_dir_all(&dir);
}
