//! The users service's section (`[users]`): its settings and their rules.

use serde::Deserialize;

use super::Secret;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UsersSettings {
    pub port: u16,
    pub max_body_bytes: usize,
    pub preferences_max_bytes: usize,
    /// A first admin created at start-up when no admin exists yet.
    pub admin_email: String,
    pub admin_password: Secret,
}

impl UsersSettings {
    /// Every rule of this section broken, reported through `check(ok, dotted key, rule)`.
    pub(super) fn validate(&self, check: &mut impl FnMut(bool, &str, &str)) {
        check(
            self.max_body_bytes >= 1024,
            "users.max_body_bytes",
            "must be at least 1024",
        );
        check(
            self.admin_email.is_empty() == self.admin_password.is_empty(),
            "users.admin_password",
            "users.admin_email and users.admin_password must be set together",
        );
    }
}
