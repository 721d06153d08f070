//! HS256 access tokens: issued by the users service, checked at the gateway and again by every service
//! (defence in depth) through the [`AuthUser`] extractor.

use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::AuthSettings;
use crate::problem::Problem;
use crate::revocation::Revocations;

/// The roles of docs/api.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Manager,
    Dispatcher,
    Driver,
    Customer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Manager,
        Role::Dispatcher,
        Role::Driver,
        Role::Customer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Dispatcher => "dispatcher",
            Role::Driver => "driver",
            Role::Customer => "customer",
        }
    }

    /// admin, manager and dispatcher: the "staff" of docs/api.md.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Manager | Role::Dispatcher)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}

/// Access-token claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub email: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub iss: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token invalid: {0}")]
    Invalid(String),
    /// `iat` or `nbf` lies further in the future than the clock leeway.
    #[error("token not valid yet")]
    NotYetValid,
    /// Its user was deactivated or changed role, or it was logged out, after it was issued.
    #[error("token revoked")]
    Revoked,
}

/// Signing and verification keys with their fixed validation rules. Cheap to clone.
#[derive(Clone)]
pub struct JwtKeys(Arc<JwtKeysInner>);

struct JwtKeysInner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    access_ttl: Duration,
    verified: VerifiedTokens,
    revocations: Revocations,
}

/// Leeway on `exp`, `nbf` and `iat`, in seconds, for clocks a little apart between the issuer and the
/// verifier.
pub(crate) const LEEWAY_SECS: u64 = 5;
/// Slots of the verified-token cache; each holds one token (a few hundred bytes).
const VERIFIED_SLOTS: usize = 1024;

/// Tokens that passed verification recently. A client sends the same access token with every request
/// until it expires, and a full check (two base64 decodes, two JSON parses and an HMAC with its key
/// schedule) was a fifth of the gateway's CPU per proxied request; a hit costs a hash and a compare.
/// Like Envoy's `jwt_cache_config`. Direct-mapped: the token's hash picks a slot that remembers the last
/// token verified there, and the whole token is compared on lookup, so a collision is only a miss.
/// Expiry is checked on every hit with the same rule and leeway as [`Validation`], so a cached token
/// stops being accepted at the very second an uncached one would; revocation is checked after the cache,
/// for cached and fresh tokens alike. Only successes are cached.
struct VerifiedTokens {
    hasher: std::collections::hash_map::RandomState,
    slots: Box<[Slot]>,
}

/// The last token verified in a slot, with its claims. A read-write lock: lookups, nearly every access,
/// share it, so callers on different cores presenting the same token never wait for each other.
type Slot = RwLock<Option<(Box<str>, Claims)>>;

impl VerifiedTokens {
    fn new() -> Self {
        Self {
            hasher: std::collections::hash_map::RandomState::new(),
            slots: (0..VERIFIED_SLOTS).map(|_| RwLock::new(None)).collect(),
        }
    }

    fn slot(&self, token: &str) -> &Slot {
        // The signature (the token's tail) is already a keyed hash of the rest, so its last bytes pick
        // the slot as well as hashing the whole token would, at a tenth of the cost.
        let tail = &token.as_bytes()[token.len().saturating_sub(32)..];
        let index = self.hasher.hash_one(tail) as usize % self.slots.len();
        &self.slots[index]
    }

    /// The claims of `token` if it was verified before and has not expired since.
    fn get(&self, token: &str) -> Option<Claims> {
        let slot = self.slot(token).read().unwrap_or_else(|e| e.into_inner());
        let (cached, claims) = slot.as_ref()?;
        (**cached == *token && !is_expired(claims.exp)).then(|| claims.clone())
    }

    fn put(&self, token: &str, claims: &Claims) {
        *self.slot(token).write().unwrap_or_else(|e| e.into_inner()) =
            Some((token.into(), claims.clone()));
    }
}

/// `jsonwebtoken`'s rule: expired once `exp` is more than the leeway in the past.
fn is_expired(exp: i64) -> bool {
    exp < now_secs() - LEEWAY_SECS as i64
}

/// The clock every token rule reads, in Unix seconds.
pub(crate) fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

impl fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.0.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys with a revocation set of their own (for tools and tests that revoke nothing).
    pub fn new(settings: &AuthSettings) -> Self {
        Self::with_revocations(settings, Revocations::new())
    }

    /// Keys whose every check consults `revocations` (see [`crate::revocation`]).
    pub fn with_revocations(settings: &AuthSettings, revocations: Revocations) -> Self {
        let secret = settings.jwt_secret.expose().as_bytes();
        // Only HS256 is accepted: `alg: none` and algorithm-confusion tokens fail validation.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Self(Arc::new(JwtKeysInner {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.issuer.clone(),
            access_ttl: Duration::from_secs(settings.access_ttl_secs),
            verified: VerifiedTokens::new(),
            revocations,
        }))
    }

    /// The revocations every check consults.
    pub fn revocations(&self) -> &Revocations {
        &self.0.revocations
    }

    pub fn access_ttl(&self) -> Duration {
        self.0.access_ttl
    }

    /// Signs an access token for the user; returns it with its claims. Its `iat` is past any revocation of
    /// the user this process knows of (see [`Revocations::first_valid_iat`]).
    pub fn issue(
        &self,
        user_id: Uuid,
        email: &str,
        role: Role,
    ) -> Result<(String, Claims), TokenError> {
        let now = now_secs();
        let claims = Claims {
            sub: user_id,
            email: email.to_owned(),
            role,
            iat: self.0.revocations.first_valid_iat(user_id, now),
            exp: now + self.0.access_ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            iss: self.0.issuer.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        Ok((token, claims))
    }

    /// Checks signature, issuer, expiry, `nbf` and `iat` (neither further ahead than the leeway), then
    /// whether the token was revoked.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = match self.0.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims =
                    jsonwebtoken::decode::<Claims>(token, &self.0.decoding, &self.0.validation)
                        .map(|data| data.claims)
                        .map_err(|e| match e.kind() {
                            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                                TokenError::Expired
                            }
                            jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                                TokenError::NotYetValid
                            }
                            _ => TokenError::Invalid(e.to_string()),
                        })?;
                // A token from the future was signed by a clock far ahead or made to outlive a
                // revocation (`iat` past it); time only moves on, so a cached token needs no recheck.
                if claims.iat > now_secs() + LEEWAY_SECS as i64 {
                    return Err(TokenError::NotYetValid);
                }
                self.0.verified.put(token, &claims);
                claims
            }
        };
        if self.0.revocations.is_revoked(&claims) {
            return Err(TokenError::Revoked);
        }
        Ok(claims)
    }

    /// Verifies the bearer token of an `Authorization` header value.
    pub fn verify_bearer(&self, authorization: Option<&str>) -> Result<Claims, Problem> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| Problem::unauthorized("a bearer access token is required"))?;
        self.verify(token).map_err(|e| match e {
            TokenError::Expired => Problem::unauthorized("the access token has expired"),
            TokenError::Invalid(_) => Problem::unauthorized("the access token is invalid"),
            TokenError::NotYetValid => Problem::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_NOT_YET_VALID",
                "the access token's iat or nbf lies in the future",
            ),
            TokenError::Revoked => Problem::new(
                StatusCode::UNAUTHORIZED,
                "TOKEN_REVOKED",
                "the access token was revoked (sign-out, deactivation or role change); sign in again",
            ),
        })
    }
}

/// The authenticated caller. Extracting it verifies the bearer token: 401 when missing, invalid or expired.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Claims);

impl AuthUser {
    pub fn id(&self) -> Uuid {
        self.0.sub
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            tracing::warn!(user_id = %self.0.sub, role = %self.0.role, "access denied by role");
            Err(Problem::forbidden(format!(
                "role {} may not do this",
                self.0.role
            )))
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    JwtKeys: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys = JwtKeys::from_ref(state);
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        keys.verify_bearer(authorization).map(AuthUser)
    }
}

/// The one authorization idiom of every service: a handler that only some roles may call takes one of these
/// extractors as its first argument. It verifies the bearer token and then the role, so a caller without the
/// role gets 403 before the body is even read (never a 422 that would reveal the validation rules). A service
/// whose rule also depends on the account's current state (the users service re-reads the account) checks that
/// in the handler, after this.
pub mod roles {
    use axum::extract::{FromRef, FromRequestParts};
    use axum::http::request::Parts;

    use super::{AuthUser, JwtKeys, Role};
    use crate::problem::Problem;

    macro_rules! role_extractor {
        ($(#[$doc:meta])* $name:ident, $roles:expr) => {
            $(#[$doc])*
            #[derive(Debug, Clone)]
            pub struct $name(pub AuthUser);

            impl $name {
                /// The roles this extractor lets through.
                pub const ROLES: &[Role] = $roles;
            }

            impl<S> FromRequestParts<S> for $name
            where
                S: Send + Sync,
                JwtKeys: FromRef<S>,
            {
                type Rejection = Problem;

                async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
                    let user = AuthUser::from_request_parts(parts, state).await?;
                    user.require(Self::ROLES)?;
                    Ok(Self(user))
                }
            }
        };
    }

    role_extractor!(
        /// admin only.
        Admin,
        &[Role::Admin]
    );
    role_extractor!(
        /// admin or manager.
        Manager,
        &[Role::Admin, Role::Manager]
    );
    role_extractor!(
        /// admin, manager or dispatcher: the "staff" of docs/api.md.
        Staff,
        &[Role::Admin, Role::Manager, Role::Dispatcher]
    );
    role_extractor!(
        /// staff or a driver: everyone who works on shipments.
        StaffOrDriver,
        &[Role::Admin, Role::Manager, Role::Dispatcher, Role::Driver]
    );
    role_extractor!(
        /// staff or a customer: everyone who places and follows orders.
        StaffOrCustomer,
        &[Role::Admin, Role::Manager, Role::Dispatcher, Role::Customer]
    );
    role_extractor!(
        /// a driver only.
        Driver,
        &[Role::Driver]
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use base64::Engine;

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings {
            jwt_secret: Secret::new(secret),
            issuer: "logicore".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 86_400,
            revocation_poll_ms: 250,
            revocation_resync_ms: 5_000,
        }
    }

    #[test]
    fn an_issued_token_verifies() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let (token, claims) = keys
            .issue(Uuid::now_v7(), "a@b.c", Role::Driver)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.verify(&token).ok(), Some(claims));
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires_and_only_the_same_token_matches() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let (token, mut claims) = keys
            .issue(Uuid::now_v7(), "a@b.c", Role::Driver)
            .unwrap_or_else(|e| panic!("{e}"));
        let cache = VerifiedTokens::new();
        cache.put(&token, &claims);
        assert_eq!(cache.get(&token), Some(claims.clone()));
        assert_eq!(cache.get(&token[..token.len() - 1]), None);
        claims.exp = chrono::Utc::now().timestamp() - LEEWAY_SECS as i64 - 1;
        cache.put(&token, &claims);
        assert_eq!(cache.get(&token), None);
    }

    #[test]
    fn tokens_signed_with_another_secret_are_rejected() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let other = JwtKeys::new(&settings("ffffffffffffffffffffffffffffffff"));
        let (token, _) = other
            .issue(Uuid::now_v7(), "a@b.c", Role::Admin)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(keys.verify(&token), Err(TokenError::Invalid(_))));
    }

    #[test]
    fn unsigned_alg_none_tokens_are_rejected() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let (token, _) = keys
            .issue(Uuid::now_v7(), "a@b.c", Role::Customer)
            .unwrap_or_else(|e| panic!("{e}"));
        let payload = token.split('.').nth(1).unwrap_or_default();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{header}.{payload}.");
        assert!(keys.verify(&forged).is_err());
    }
}
