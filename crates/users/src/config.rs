//! The users service's section of the settings (`[users]`) and what the service makes of it.

use platform::config::{ConfigError, EnvAlias, Secret, Section, Settings};
use serde::Deserialize;
use skeleton::Basics;

/// `[users]`, registered with the loader by the binary's service list.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersSettings {
    pub port: u16,
    /// At least 1024, as every listener's body limit (checked with the rest by key name).
    pub max_body_bytes: usize,
    pub preferences_max_bytes: usize,
    /// A first admin created at start-up when no admin exists yet.
    pub admin_email: String,
    pub admin_password: Secret,
}

impl Section for UsersSettings {
    const NAME: &'static str = crate::NAME;
    const DEFAULTS: &'static str = include_str!("defaults.toml");
    const ENV_ALIASES: &'static [EnvAlias] = &[
        EnvAlias::new("ADMIN_EMAIL", "users.admin_email"),
        EnvAlias::new("ADMIN_PASSWORD", "users.admin_password"),
    ];

    fn validate(&self, check: &mut dyn FnMut(bool, &str, &str)) {
        check(
            self.admin_email.is_empty() == self.admin_password.is_empty(),
            "admin_password",
            "users.admin_email and users.admin_password must be set together",
        );
    }
}

/// Everything the users service needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listener, database, transport, cache, limits and revocation, as every service has them.
    pub basics: Basics,
    /// Largest serialized preferences object accepted (413 above).
    pub preferences_max_bytes: usize,
    /// A first admin created at start-up when no admin exists yet; empty to skip.
    pub admin_email: String,
    pub admin_password: Secret,
}

impl Config {
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let users: UsersSettings = settings.section()?;
        Ok(Self {
            basics: Basics::from_settings(settings, users.port, users.max_body_bytes),
            preferences_max_bytes: users.preferences_max_bytes,
            admin_email: users.admin_email,
            admin_password: users.admin_password,
        })
    }
}
