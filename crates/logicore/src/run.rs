//! What each command does: load and validate configuration, start logging, run services until a signal.

use std::io::Read;
use std::net::SocketAddr;

use anyhow::Context;
use platform::config::{
    Change, ConfigError, ConfigIssue, ConfigSources, LoadedConfig, Reloader, Settings,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use platform::telemetry::{Console, Identity, LogOptions};

use skeleton::{Entry, Launchable};

use crate::cli::{
    Cli, Command, ConfigCommand, EventsCommand, InventoryAction, InventoryCommand, UsersAction,
    UsersCommand,
};
use logicore::services::{self, SERVICES};

pub enum Failure {
    /// Invalid configuration: every problem is printed, exit code 2.
    Config(ConfigError),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Other(error)
    }
}

pub fn execute(cli: Cli) -> Result<(), Failure> {
    // A health probe runs beside a service that already loaded its configuration; it needs none of it.
    if let Command::Probe { url } = &cli.command {
        return probe(url).map_err(Failure::Other);
    }
    let loaded = platform::config::load(
        &ConfigSources::from_process(cli.config.clone()),
        &services::sections(),
    )
    .map_err(Failure::Config)?;
    if matches!(cli.command, Command::All) {
        refuse_single_service_port(&loaded).map_err(Failure::Config)?;
    }
    match cli.command {
        Command::Config(ConfigCommand::Show) => {
            print!("{}", loaded.render());
            Ok(())
        }
        Command::Config(ConfigCommand::Diff { file }) => {
            let candidate = platform::config::load(
                &ConfigSources::from_process(Some(file)),
                &services::sections(),
            )
            .map_err(Failure::Config)?;
            print!(
                "{}",
                diff_report(&platform::config::diff(&loaded, &candidate))
            );
            Ok(())
        }
        Command::Config(ConfigCommand::Check) => {
            println!(
                "configuration is valid ({} environment)",
                loaded.settings.environment
            );
            Ok(())
        }
        command => {
            let reloader = Reloader::new(
                loaded,
                ConfigSources::from_process(cli.config),
                services::sections(),
            );
            runtime()?
                .block_on(serve(command, reloader))
                .map_err(Failure::Other)
        }
    }
}

/// `PORT` (`service.port`) names the port of the one service a single-service command runs; `all` runs
/// several, and silently ignoring it left an operator's port unused.
fn refuse_single_service_port(loaded: &LoadedConfig) -> Result<(), ConfigError> {
    let Some(port) = loaded.settings.service.port else {
        return Ok(());
    };
    Err(ConfigError {
        issues: vec![ConfigIssue {
            key: "service.port".into(),
            rule: format!(
                "`all` runs every service, each on its own port: set {} or GATEWAY_PORT instead of PORT",
                SERVICES
                    .iter()
                    .map(|entry| format!("LOGICORE_{}__PORT", entry.name.to_ascii_uppercase()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            value: port.to_string(),
            source: loaded
                .source_of("service.port")
                .map(|source| source.to_string())
                .unwrap_or_default(),
        }],
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

async fn serve(command: Command, reloader: Reloader) -> anyhow::Result<()> {
    let settings = reloader.current().settings.clone();
    let gateway_alone = matches!(command, Command::Gateway);
    let log_level = effective_log_level(&settings, gateway_alone);
    let serving = serves(&command);
    let console = if serving {
        Console::Stdout
    } else {
        Console::Stderr
    };
    // The `service.name` of spans no service claims; a service's own spans carry its name.
    let process = match &command {
        Command::Gateway => gateway::NAME,
        Command::Users(UsersCommand { action: None }) => users::NAME,
        Command::Inventory(InventoryCommand { action: None }) => inventory::NAME,
        Command::Service(words) => words
            .first()
            .and_then(|name| services::named(name))
            .map_or("logicore", |entry| entry.name),
        _ => "logicore",
    };
    let _log_guard = platform::telemetry::init(
        LogOptions {
            level: &log_level,
            format: &settings.log.format,
            dir: &settings.log.dir,
            file_prefix: "logicore",
            console,
        },
        &settings.tracing,
        &Identity {
            process,
            version: &settings.service.version,
            environment: &settings.environment,
        },
    )
    .context("cannot start logging")?;
    // A server reloads its configuration on SIGHUP and when its file changes, for as long as it runs; a
    // one-off command has nothing to reload.
    let stop_reloads = CancellationToken::new();
    let _stop_reloads = stop_reloads.clone().drop_guard();
    if serving {
        reloader.spawn_triggers(stop_reloads.clone());
        tokio::spawn(follow_reloads(
            reloader.subscribe(),
            log_level.clone(),
            gateway_alone,
            _log_guard.level_setter(),
            stop_reloads,
        ));
    }
    if settings.auth.jwt_secret.expose() == platform::config::DEVELOPMENT_JWT_SECRET {
        tracing::warn!(
            "using the development JWT secret; set GATEWAY_JWT_SECRET before exposing this instance"
        );
    }
    match command {
        Command::All => run_all(&settings, reloader).await,
        Command::Gateway => {
            let mut config = gateway::Config::from_settings(&settings)?;
            config.port = settings.service.port.unwrap_or(config.port);
            let listeners = gateway::Listeners {
                public: bind(&config.host, config.port).await?,
                admin: bind(&config.host, config.admin_port).await?,
            };
            let shutdown = platform::http::shutdown_signal();
            gateway::run_with(
                config,
                services::specs(),
                listeners,
                shutdown,
                Some(reloader),
            )
            .await?;
            Ok(())
        }
        Command::Users(users_command) => match users_command.action {
            None => serve_alone(users::NAME, &settings).await,
            Some(UsersAction::CreateAdmin {
                email,
                password_stdin,
            }) => {
                let password = password_stdin.then(read_password).transpose()?;
                let config = users::Config::from_settings(&settings)?;
                let outcome = users::create_admin(&config, &email, password.as_deref()).await?;
                println!("{}", admin_summary(&outcome));
                Ok(())
            }
            Some(UsersAction::RotateKey) => {
                let config = users::Config::from_settings(&settings)?;
                let kid = users::rotate_signing_key(&config).await?;
                println!(
                    "signing key {kid} added: published now, signing in {} s",
                    settings.auth.key_publish_lead_secs
                );
                Ok(())
            }
        },
        Command::Inventory(inventory_command) => match inventory_command.action {
            None => serve_alone(inventory::NAME, &settings).await,
            Some(InventoryAction::Import { file }) => {
                crate::import::import(&inventory::Config::from_settings(&settings)?, &file).await
            }
        },
        Command::Service(words) => serve_alone(&words[0], &settings).await,
        Command::Migrate => {
            for entry in SERVICES {
                entry
                    .configure(&settings)?
                    .migrate()
                    .await
                    .with_context(|| format!("{} service", entry.name))?;
            }
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Events(EventsCommand::DeadLetters(command)) => {
            crate::events::dead_letters(&settings, command).await
        }
        Command::Config(_) | Command::Probe { .. } => Ok(()),
    }
}

/// One service of the list alone, on its port or `PORT`, until a signal.
async fn serve_alone(name: &str, settings: &Settings) -> anyhow::Result<()> {
    let entry = services::named(name).with_context(|| format!("no service named {name:?}"))?;
    let mut service = entry.configure(settings)?;
    let basics = service.basics();
    basics.port = settings.service.port.unwrap_or(basics.port);
    let listener = bind(&basics.host, basics.port).await?;
    service
        .run(listener, platform::http::shutdown_signal())
        .await?;
    Ok(())
}

/// Every service and the gateway in one process: one shutdown signal stops them all, and if one fails the
/// others are stopped too. Every port is bound before anything starts, so a taken port fails fast.
async fn run_all(settings: &Settings, reloader: Reloader) -> anyhow::Result<()> {
    let shutdown = platform::http::shutdown_signal();
    let mut configured: Vec<(&Entry, Box<dyn Launchable>)> = Vec::with_capacity(SERVICES.len());
    for entry in SERVICES {
        configured.push((entry, entry.configure(settings)?));
    }
    let mut gateway_config = gateway::Config::from_settings(settings)?;
    // One revocation set for the whole process: the service that records revocations (users) records into
    // it, so its revocations bite in the other services and the gateway the moment they commit, Redis or not.
    let recorded = configured
        .iter_mut()
        .find(|(entry, _)| entry.records_revocations)
        .map(|(_, service)| service.basics().revocation.set.clone());
    if let Some(set) = recorded {
        for (_, service) in configured
            .iter_mut()
            .filter(|(entry, _)| !entry.records_revocations)
        {
            let revocation = &mut service.basics().revocation;
            *revocation = revocation.fed_by_users_service(&set);
        }
        gateway_config.revocation = gateway_config.revocation.fed_by_users_service(&set);
    }
    let mut bound = Vec::with_capacity(configured.len());
    for (entry, mut service) in configured {
        let basics = service.basics();
        let listener = bind(&basics.host, basics.port).await?;
        bound.push((entry.name, service, listener));
    }
    let gateway_listeners = gateway::Listeners {
        public: bind(&gateway_config.host, gateway_config.port).await?,
        admin: bind(&gateway_config.host, gateway_config.admin_port).await?,
    };

    let mut tasks = tokio::task::JoinSet::new();
    for (name, service, listener) in bound {
        let token = shutdown.clone();
        tasks.spawn(supervised(name, shutdown.clone(), async move {
            service
                .run(listener, token)
                .await
                .map_err(anyhow::Error::from)
        }));
    }
    let token = shutdown.clone();
    tasks.spawn(supervised("gateway", shutdown.clone(), async move {
        gateway::run_with(
            gateway_config,
            services::specs(),
            gateway_listeners,
            token,
            Some(reloader),
        )
        .await
        .map_err(anyhow::Error::from)
    }));
    let mut first_error = None;
    while let Some(outcome) = tasks.join_next().await {
        if let Err(error) = outcome.context("a service task panicked").and_then(|r| r) {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs one service; when it ends early or fails, cancels the shared token so the rest shut down too.
async fn supervised(
    name: &'static str,
    shutdown: CancellationToken,
    service: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let outcome = service.await;
    if let Err(error) = &outcome {
        tracing::error!(
            service = name,
            error = format!("{error:#}"),
            "service failed, stopping the others"
        );
    } else if !shutdown.is_cancelled() {
        tracing::error!(
            service = name,
            "service stopped on its own, stopping the others"
        );
    }
    shutdown.cancel();
    outcome.with_context(|| format!("{name} service"))
}

async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("invalid listen address {host}:{port}"))?;
    TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// One line saying what `users create-admin` did, for the operator who ran it.
fn admin_summary(outcome: &users::AdminOutcome) -> String {
    let email = &outcome.user.email;
    let done = match outcome.action {
        users::AdminAction::Created => format!("created admin {email}"),
        users::AdminAction::Promoted => format!("promoted {email} to admin"),
        users::AdminAction::AlreadyAdmin => format!("{email} is already an admin"),
    };
    let password = match (outcome.action, outcome.password_changed) {
        (users::AdminAction::Created, _) => "",
        (_, true) => "; password changed and its sessions ended",
        (_, false) => "; password kept",
    };
    format!("{done}{password}")
}

fn read_password() -> anyhow::Result<String> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("cannot read the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "the password on standard input is empty"
    );
    Ok(password)
}

/// `logicore probe URL`: a GET answered 2xx within [`PROBE_TIMEOUT`].
fn probe(url: &str) -> anyhow::Result<()> {
    let url = url::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let status = runtime.block_on(async {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(PROBE_TIMEOUT)
            .build()?
            .get(url.clone())
            .send()
            .await
            .map(|response| response.status())
    });
    match status {
        Ok(status) if status.is_success() => Ok(()),
        Ok(status) => anyhow::bail!("{url} answered {status}"),
        Err(error) => anyhow::bail!("{url} did not answer: {error}"),
    }
}

/// How long a probe waits: a container runtime's own check timeout is usually longer.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `command` serves until a signal (and so logs to stdout and reloads its configuration), rather
/// than doing one thing and exiting.
fn serves(command: &Command) -> bool {
    matches!(
        command,
        Command::All
            | Command::Gateway
            | Command::Users(UsersCommand { action: None })
            | Command::Inventory(InventoryCommand { action: None })
            | Command::Service(_)
    )
}

/// The log level a command runs at: the gateway alone may have its own.
fn effective_log_level(settings: &Settings, gateway_alone: bool) -> String {
    if gateway_alone && !settings.gateway.log_level.is_empty() {
        settings.gateway.log_level.clone()
    } else {
        settings.log.level.clone()
    }
}

/// Puts the log level and the trace sampling of each reloaded configuration in force.
async fn follow_reloads(
    mut reloads: tokio::sync::watch::Receiver<std::sync::Arc<Settings>>,
    mut level: String,
    gateway_alone: bool,
    set_level: platform::telemetry::LevelSetter,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            changed = reloads.changed() => if changed.is_err() { return },
        }
        let settings = reloads.borrow_and_update().clone();
        platform::telemetry::traces::reconfigure_sampling(&settings.tracing);
        let reloaded = effective_log_level(&settings, gateway_alone);
        if reloaded == level {
            continue;
        }
        match set_level.set(&reloaded) {
            Ok(()) => tracing::info!(from = %level, to = %reloaded, "log level changed"),
            Err(error) => tracing::error!(%error, "the reloaded log level cannot be used"),
        }
        level = reloaded;
    }
}

/// `config diff`'s report: one line per changed key.
fn diff_report(changes: &[Change]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_owned();
    }
    let mut out = String::new();
    for change in changes {
        out.push_str(&format!(
            "{}: {} -> {}  # {}; {}\n",
            change.key,
            change.old.as_deref().unwrap_or("(unset)"),
            change.new.as_deref().unwrap_or("(unset)"),
            change.source,
            if change.reloadable {
                "applied by a reload"
            } else {
                "restart required"
            }
        ));
    }
    out
}
