//! The gateway alone, configured like `logicore gateway` (defaults < `--config`/`LOGICORE_CONFIG` <
//! environment) but without the service crates, so it builds quickly for profiling. Without their sections
//! no upstream follows a service's port: set each with `*_SERVICE_URL` (as the bench script does).
//!
//! `CARGO_PROFILE_RELEASE_DEBUG=true cargo build --release -p gateway --example standalone`, then e.g.
//! `valgrind --tool=callgrind target/release/examples/standalone` with the same environment variables as
//! `bench/gateway_vs_nginx.sh` gives the gateway. The merged OpenAPI document is empty.

use platform::config::ConfigSources;
use platform::telemetry::{Console, Identity, LogOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    platform::install_crypto_provider();
    let loaded = platform::config::load(&ConfigSources::from_process(None), &[])?;
    let settings = loaded.settings;
    let level = if settings.gateway.log_level.is_empty() {
        settings.log.level.clone()
    } else {
        settings.gateway.log_level.clone()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let _guard = platform::telemetry::init(
            LogOptions {
                level: &level,
                format: &settings.log.format,
                dir: &settings.log.dir,
                file_prefix: "gateway",
                console: Console::Stdout,
            },
            &settings.tracing,
            &Identity {
                process: gateway::NAME,
                version: &settings.service.version,
                environment: &settings.environment,
            },
        )?;
        let mut config = gateway::Config::from_settings(&settings)?;
        config.port = settings.service.port.unwrap_or(config.port);
        let listeners = gateway::Listeners {
            public: tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await?,
            admin: tokio::net::TcpListener::bind((config.host.as_str(), config.admin_port)).await?,
        };
        let shutdown = platform::http::shutdown_signal();
        gateway::run(config, Vec::new(), listeners, shutdown).await?;
        Ok(())
    })
}
