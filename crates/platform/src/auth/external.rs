//! Access tokens of external OpenID providers (Keycloak, Entra ID, Okta, Auth0…): what a trusted issuer's
//! verified claims say about the caller (subject, email, LogiCore role), and the [`Directory`] that gives
//! such a caller a LogiCore user id the first time it is seen.

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::jwks::{DiscoveredJwks, HttpJwks, JwksCache};
use super::{LEEWAY_SECS, Role, TokenError, UsersLocation};
use crate::config::{AuthSettings, ExternalIssuerSettings};

/// Who an external token speaks for, as its issuer's claims say.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ExternalIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub role: Role,
}

/// A trusted provider: its keys and the rules its tokens are held to.
#[derive(Clone)]
pub(crate) struct ExternalIssuer {
    pub(crate) issuer: String,
    audiences: Vec<String>,
    roles_claim: Vec<String>,
    role_map: Vec<(String, Role)>,
    default_role: Option<Role>,
    pub(crate) jwks: JwksCache,
}

impl ExternalIssuer {
    /// Every `[[auth.issuers]]` entry (validated when the settings were loaded).
    pub(crate) fn all(settings: &AuthSettings) -> Vec<Self> {
        let ttl = Duration::from_secs(settings.jwks_cache_ttl_secs);
        let cooldown = Duration::from_millis(settings.jwks_refresh_cooldown_ms);
        settings
            .issuers
            .iter()
            .map(|entry| Self::new(entry, ttl, cooldown))
            .collect()
    }

    fn new(entry: &ExternalIssuerSettings, ttl: Duration, cooldown: Duration) -> Self {
        let jwks = if entry.jwks_url.is_empty() {
            JwksCache::new(DiscoveredJwks::new(&entry.issuer), ttl, cooldown)
        } else {
            JwksCache::new(HttpJwks::new(&entry.jwks_url), ttl, cooldown)
        };
        Self {
            issuer: entry.issuer.clone(),
            audiences: entry.audiences.clone(),
            roles_claim: entry.roles_claim.split('.').map(str::to_owned).collect(),
            role_map: entry
                .role_map
                .iter()
                .filter_map(|(name, role)| Some((name.clone(), Role::from_str(role).ok()?)))
                .collect(),
            default_role: Role::from_str(&entry.default_role).ok(),
            jwks,
        }
    }

    /// The rules a token of this issuer signed with `algorithm` must pass.
    pub(crate) fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation
    }

    /// The caller a verified token's claims describe; refused when no role maps and there is no default.
    pub(crate) fn identity(&self, claims: &Value) -> Result<ExternalIdentity, TokenError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty() && sub.len() <= 255)
            .ok_or_else(|| {
                TokenError::Invalid("sub must be a string of 1-255 characters".into())
            })?;
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let names = self.role_names(claims);
        let mapped = names
            .iter()
            .filter_map(|name| self.map(name))
            .max_by_key(|role| role.privilege());
        let role = mapped.or(self.default_role).ok_or_else(|| {
            TokenError::Unmapped(format!(
                "none of the caller's roles in `{}` ({}) maps to a LogiCore role",
                self.roles_claim.join("."),
                names.join(", ")
            ))
        })?;
        Ok(ExternalIdentity {
            issuer: self.issuer.clone(),
            subject: subject.to_owned(),
            email,
            role,
        })
    }

    /// The role names at the configured claim path: an array of strings, or one space-separated string.
    fn role_names(&self, claims: &Value) -> Vec<String> {
        let found = self
            .roles_claim
            .iter()
            .try_fold(claims, |value, part| value.get(part));
        match found {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(text)) => text.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        }
    }

    fn map(&self, name: &str) -> Option<Role> {
        if self.role_map.is_empty() {
            return Role::from_str(name).ok();
        }
        self.role_map
            .iter()
            .find(|(mapped, _)| mapped == name)
            .map(|(_, role)| *role)
    }
}

/// A boxed future, so directories can be trait objects.
pub type Admission<'a> = Pin<Box<dyn Future<Output = Result<Uuid, TokenError>> + Send + 'a>>;

/// Gives an external identity its LogiCore user id, creating the user the first time (just in time), and
/// refuses a deactivated one. The users service answers from its database; every other process asks it.
pub trait Directory: Send + Sync + 'static {
    /// `token` is the verified bearer token itself: the users service verifies it again, so nobody
    /// can create a user without a token of a trusted issuer.
    fn admit<'a>(&'a self, identity: &'a ExternalIdentity, token: &'a str) -> Admission<'a>;
}

/// The users service's `POST /internal/identities`, for every process but the users service.
pub struct UsersDirectory {
    location: UsersLocation,
    client: reqwest::Client,
}

/// The users service's answer.
#[derive(Debug, serde::Serialize, Deserialize)]
pub struct Admitted {
    pub user_id: Uuid,
}

/// Where the users service registers external identities.
pub const IDENTITIES_PATH: &str = "/internal/identities";

impl UsersDirectory {
    pub fn new(location: UsersLocation) -> Self {
        Self {
            location,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .connect_timeout(Duration::from_secs(1))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn ask(&self, url: &str, token: &str) -> Result<Uuid, TokenError> {
        let unavailable = |reason: String| TokenError::Unavailable(format!("{url}: {reason}"));
        let response = self
            .client
            .post(url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        match response.status().as_u16() {
            200 => response
                .json::<Admitted>()
                .await
                .map(|admitted| admitted.user_id)
                .map_err(|e| unavailable(e.to_string())),
            // The users service verified the token itself and refused it: a deactivated user.
            401 | 403 => Err(TokenError::Revoked),
            status => Err(unavailable(format!("status {status}"))),
        }
    }
}

impl Directory for UsersDirectory {
    fn admit<'a>(&'a self, _identity: &'a ExternalIdentity, token: &'a str) -> Admission<'a> {
        Box::pin(async move {
            let mut last = TokenError::Unavailable("no users service instance is known".into());
            for base in self.location.urls() {
                match self.ask(&format!("{base}{IDENTITIES_PATH}"), token).await {
                    Err(TokenError::Unavailable(reason)) => last = TokenError::Unavailable(reason),
                    answer => return answer,
                }
            }
            Err(last)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn issuer(roles_claim: &str, map: &[(&str, &str)], default_role: &str) -> ExternalIssuer {
        let entry = ExternalIssuerSettings {
            issuer: "https://idp.example".into(),
            audiences: vec!["logicore".into()],
            roles_claim: roles_claim.into(),
            role_map: map
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            default_role: default_role.into(),
            jwks_url: String::new(),
        };
        ExternalIssuer::new(&entry, Duration::from_secs(60), Duration::from_secs(1))
    }

    #[test]
    fn the_strongest_mapped_role_of_a_nested_claim_wins() {
        let idp = issuer(
            "realm_access.roles",
            &[("warehouse", "manager"), ("carrier", "dispatcher")],
            "",
        );
        let claims = json!({"sub": "u1", "realm_access": {"roles": ["carrier", "offline_access", "warehouse"]}});
        let identity = idp.identity(&claims).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(identity.role, Role::Manager);
        assert_eq!(identity.subject, "u1");
        assert_eq!(identity.email, None);
    }

    #[test]
    fn unmapped_callers_get_the_default_role_or_are_refused() {
        let claims = json!({"sub": "u1", "groups": "staff  visitors"});
        let with_default = issuer("groups", &[("admins", "admin")], "customer");
        assert_eq!(
            with_default.identity(&claims).map(|i| i.role).ok(),
            Some(Role::Customer)
        );
        let without = issuer("groups", &[("admins", "admin")], "");
        assert!(matches!(
            without.identity(&claims),
            Err(TokenError::Unmapped(_))
        ));
        let unmapped_names_count_as_roles = issuer("groups", &[], "");
        assert!(matches!(
            unmapped_names_count_as_roles.identity(&json!({"sub": "u1", "groups": ["driver"]})),
            Ok(ExternalIdentity {
                role: Role::Driver,
                ..
            })
        ));
    }

    #[test]
    fn a_missing_or_oversized_subject_is_refused() {
        let idp = issuer("roles", &[], "customer");
        assert!(idp.identity(&json!({"roles": []})).is_err());
        assert!(idp.identity(&json!({"sub": "x".repeat(256)})).is_err());
        assert!(idp.identity(&json!({"sub": 42})).is_err());
    }
}
