//! The users service's slice of the LogiCore settings, typed and passed in by the binary.

use platform::config::{Secret, Settings};
use skeleton::Basics;

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
    pub fn from_settings(settings: &Settings) -> Self {
        let users = &settings.users;
        Self {
            basics: Basics::from_settings(settings, users.port, users.max_body_bytes),
            preferences_max_bytes: users.preferences_max_bytes,
            admin_email: users.admin_email.clone(),
            admin_password: users.admin_password.clone(),
        }
    }
}
