//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// LogiCore: an API gateway and logistics services (users, inventory, orders and shipments).
#[derive(Debug, Parser)]
#[command(name = "logicore", version, about, propagate_version = true)]
pub struct Cli {
    /// A TOML configuration file (overrides built-in defaults and config/<LOGICORE_ENV>.toml; environment
    /// variables override it). Defaults to $LOGICORE_CONFIG.
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway and every service in one process, each on its own port.
    All,
    /// Run the API gateway alone.
    Gateway,
    /// Run the users service alone, or manage users.
    Users(UsersCommand),
    /// Run the inventory service alone, or import stock.
    Inventory(InventoryCommand),
    /// Apply every service's database migrations, then exit.
    Migrate,
    /// Operate the event backbone.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Ask an HTTP URL and exit 0 when it answers 2xx within 2 s, 1 otherwise: the health check of a
    /// container image that has no shell or curl. Reads no configuration.
    Probe {
        /// The URL to ask, e.g. http://127.0.0.1:8080/health.
        url: String,
    },
    /// Run any other service of the binary's list alone, by its name (`logicore orders`): a service
    /// without commands of its own needs no variant here.
    #[command(external_subcommand)]
    Service(Vec<String>),
}

#[derive(Debug, Args)]
pub struct UsersCommand {
    #[command(subcommand)]
    pub action: Option<UsersAction>,
}

#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create an admin user, or promote an existing user to admin (keeping their password unless
    /// --password-stdin is given); prints what was done.
    CreateAdmin {
        /// The admin's email address.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (so it never appears in the process list or history).
        /// Required for a new account; for an existing one it replaces the password and ends its sessions.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Add the next signing key (kept in the database): published at once, signing after
    /// auth.key_publish_lead_secs, so no verifier meets it unknown; prints its kid. The old key stays
    /// published until its last token has expired.
    RotateKey,
}

#[derive(Debug, Args)]
pub struct InventoryCommand {
    #[command(subcommand)]
    pub action: Option<InventoryAction>,
}

#[derive(Debug, Subcommand)]
pub enum InventoryAction {
    /// Bulk-upsert products and stock from a CSV file with the columns sku, name, warehouse_code, quantity
    /// and optionally reorder_point, matched by the header's names: valid rows are applied, invalid ones
    /// reported with their line numbers; a header with unknown or missing columns applies nothing.
    Import {
        /// The CSV file, with a header row (without one, the columns are read in the order above).
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Events a consumer group gave up on (attempts exhausted, or rejected by the handler).
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Print every consumer group the event transport knows, one per line: the group, a tab, and how many
    /// dead letters it holds.
    Groups,
    /// Print a group's dead letters, oldest first: one JSON object per line with the event id, type,
    /// attempts, last error, when it was dead-lettered and the envelope.
    List {
        /// The consumer group, e.g. `inventory.order-saga`.
        #[arg(long)]
        group: String,
        /// At most this many.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// Put dead letters back on the group's queue with their attempts reset.
    Replay {
        /// The consumer group, e.g. `inventory.order-saga`.
        #[arg(long)]
        group: String,
        /// One dead letter, by event id.
        #[arg(long, required_unless_present = "all", conflicts_with = "all")]
        id: Option<uuid::Uuid>,
        /// Every dead letter of the group.
        #[arg(long)]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets masked, with the source of every value.
    Show,
    /// Validate the configuration and exit: 0 when valid, 2 with every problem listed otherwise.
    Check,
    /// Print what reloading FILE would change in the configuration in force (the environment and
    /// --config/LOGICORE_CONFIG), and which of it a running process applies or needs a restart for; 2 when
    /// FILE is invalid.
    Diff {
        /// The configuration file a running process would reload.
        file: PathBuf,
    },
}
