//! Configuration reload through the real executable: `SIGHUP` re-reads the per-environment file (which is
//! not watched) and the new log level is in force at once; `config diff` says what a reload would do.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use support::{logicore, promtool_accepts};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

struct Running(Child);

impl Running {
    fn hang_up(&self) {
        let sent = Command::new("kill")
            .args(["-HUP", &self.0.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(sent.success());
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_environment_file_and_the_new_log_level_is_in_force() {
    let dir = testkit::TempDir::new("logicore-reload");
    std::fs::create_dir_all(dir.path().join("config")).unwrap_or_else(|e| panic!("{e}"));
    let environment_file = dir.path().join("config").join("test.toml");
    std::fs::write(&environment_file, "[log]\nlevel = \"warn\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    let port = free_port().to_string();
    let admin_port = free_port().to_string();
    let mut command = logicore(&[
        ("GATEWAY_PORT", port.as_str()),
        ("LOGICORE_GATEWAY__ADMIN_PORT", admin_port.as_str()),
    ]);
    // The level must come from the file: a variable would win over it.
    command.env_remove("LOG_LEVEL");
    let mut child = command
        .current_dir(dir.path())
        .arg("gateway")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    if let Some(stdout) = child.stdout.take() {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
    }
    let gateway = Running(child);
    let client = testkit::client();
    let health = format!("http://127.0.0.1:{port}/health");
    let send = |id: &'static str| client.get(&health).header("x-request-id", id).send();
    testkit::eventually("the gateway to answer", Duration::from_secs(60), || {
        let request = send("before-reload");
        async move { request.await.ok().filter(|r| r.status().is_success()) }
    })
    .await;
    let logged = |needle: &str| {
        lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|line| line.contains(needle))
    };
    assert!(!logged("before-reload"), "a request was logged at warn");

    std::fs::write(&environment_file, "[log]\nlevel = \"info\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    gateway.hang_up();
    testkit::eventually(
        "the new level to be in force",
        Duration::from_secs(5),
        || std::future::ready(logged("log level changed").then_some(())),
    )
    .await;
    send("after-reload").await.unwrap_or_else(|e| panic!("{e}"));
    testkit::eventually(
        "the request to be logged at info",
        Duration::from_secs(5),
        || std::future::ready(logged("after-reload").then_some(())),
    )
    .await;
    // An invalid file: rejected, every bad key named in the log, the level in force kept.
    std::fs::write(
        &environment_file,
        "[log]\nlevel = \"loud\"\n[gateway.rate_limit]\nmax_requests = -1\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    gateway.hang_up();
    for key in ["log.level", "gateway.rate_limit.max_requests"] {
        let line = format!("\"key\":\"{key}\"");
        testkit::eventually(
            &format!("the rejection of {key} to be logged"),
            Duration::from_secs(5),
            || {
                let found = lines
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .iter()
                    .any(|l| l.contains("configuration reload rejected") && l.contains(&line));
                std::future::ready(found.then_some(()))
            },
        )
        .await;
    }
    send("still-info").await.unwrap_or_else(|e| panic!("{e}"));
    testkit::eventually("info to stay in force", Duration::from_secs(5), || {
        std::future::ready(logged("still-info").then_some(()))
    })
    .await;
    let metrics = testkit::metrics(&format!("http://127.0.0.1:{admin_port}/metrics")).await;
    let applied = metrics.lines().any(|line| {
        line.starts_with("config_reloads_total{")
            && line.contains(r#"result="applied""#)
            && line.ends_with(" 1")
    });
    assert!(applied, "{metrics}");
    assert!(metrics.contains("config_info{"), "{metrics}");
    promtool_accepts(&metrics);
}

#[test]
fn config_diff_says_what_a_reload_would_apply_and_what_waits_for_a_restart() {
    let dir = testkit::TempDir::new("logicore-reload");
    let file = dir.path().join("next.toml");
    std::fs::write(
        &file,
        "[gateway]\nport = 9000\nrequest_timeout_ms = 4000\n\n[database]\npassword = \"s3cret-value\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let output = logicore(&[])
        .args(["config", "diff"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with("database.password: \"\" (unset) -> \"********\"  # file "),
        "{stdout}"
    );
    assert!(lines[0].ends_with("; restart required"), "{stdout}");
    assert!(
        lines[1].starts_with("gateway.port: 8080 -> 9000  # file "),
        "{stdout}"
    );
    assert!(lines[1].ends_with("; restart required"), "{stdout}");
    assert!(
        lines[2].starts_with("gateway.request_timeout_ms: 30000 -> 4000"),
        "{stdout}"
    );
    assert!(lines[2].ends_with("; applied by a reload"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");

    std::fs::write(&file, "[gateway]\nport = \"eighty\"\n").unwrap_or_else(|e| panic!("{e}"));
    let invalid = logicore(&[])
        .args(["config", "diff"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(invalid.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&invalid.stderr).contains("gateway.port"),
        "{invalid:?}"
    );
}

/// docs/configuration.md lists every key, each under the heading that says whether it reloads, as the
/// reloader decides it.
#[test]
fn the_configuration_docs_mark_every_key_as_the_reloader_treats_it() {
    let doc = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let (reloaded, restart) = doc
        .split_once("## Read at start")
        .unwrap_or_else(|| panic!("no restart section"));
    let listed = |part: &str, key: &str| part.contains(&format!("- `{key}`\n"));
    let shown = logicore(&[])
        .args(["config", "show"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = String::from_utf8_lossy(&shown.stdout);
    let keys: Vec<&str> = shown
        .lines()
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key))
        .filter(|key| *key != "environment")
        .collect();
    assert!(keys.len() > 100, "{shown}");
    for key in keys {
        let reloads = platform::config::is_reloadable(key);
        assert!(
            listed(if reloads { reloaded } else { restart }, key),
            "{key} is not listed as {}",
            if reloads {
                "reloaded"
            } else {
                "needing a restart"
            }
        );
        assert!(
            !listed(if reloads { restart } else { reloaded }, key),
            "{key} is listed under both"
        );
    }
}
