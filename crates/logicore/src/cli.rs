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
    /// Inspect the effective configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Args)]
pub struct UsersCommand {
    #[command(subcommand)]
    pub action: Option<UsersAction>,
}

#[derive(Debug, Subcommand)]
pub enum UsersAction {
    /// Create an admin user, or promote an existing user to admin.
    CreateAdmin {
        /// The admin's email address.
        #[arg(long)]
        email: String,
        /// Read the password from standard input (so it never appears in the process list or history).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Args)]
pub struct InventoryCommand {
    #[command(subcommand)]
    pub action: Option<InventoryAction>,
}

#[derive(Debug, Subcommand)]
pub enum InventoryAction {
    /// Bulk-upsert products and stock from a CSV file `sku,name,warehouse_code,quantity[,reorder_point]`:
    /// valid rows are applied, invalid ones reported with their line numbers.
    Import {
        /// The CSV file, with a header row.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration, secrets masked, with the source of every value.
    Show,
    /// Validate the configuration and exit: 0 when valid, 2 with every problem listed otherwise.
    Check,
}
