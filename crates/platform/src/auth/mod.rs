//! Access tokens, checked at the gateway and again by every service (defence in depth) through the
//! [`AuthUser`] extractor. Three kinds are accepted, told apart by the token's `iss` and `alg`:
//! - LogiCore's own, signed by the users service with an asymmetric key (ES256 or RS256, with a `kid`) and
//!   verified with the public keys of its JWKS ([`jwks`]), so no verifier holds anything that could sign;
//!   people's tokens and machine clients' (`scope`, see [`scopes`]) alike;
//! - HS256 tokens signed with the shared `auth.jwt_secret`, for compatibility (`auth.accept_hs256`);
//! - external OpenID providers' ([`external`]): their keys from their JWKS, their roles mapped, their users
//!   given a LogiCore user id by the users service the first time they are seen.
//!
//! Whatever the kind, a verified token is cached (`VerifiedTokens`) and then checked against the
//! revocations, so revoking a user or a client works for every kind.

pub mod external;
pub mod jwks;
pub mod scopes;

use std::borrow::Cow;
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::AuthSettings;
use crate::problem::Problem;
use crate::revocation::Revocations;
use crate::route_pattern::request_segments;
use external::{Directory, ExternalIssuer};
use jwks::{JwksCache, JwksSource, KeyError};

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

    /// Ranks roles, so a caller holding several (an external user, a client with several scopes) gets
    /// the strongest.
    pub fn privilege(self) -> u8 {
        match self {
            Role::Customer => 0,
            Role::Driver => 1,
            Role::Dispatcher => 2,
            Role::Manager => 3,
            Role::Admin => 4,
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
    /// The LogiCore user id (for an external user, the one the users service gave it; for a machine
    /// client, the client id).
    pub sub: Uuid,
    /// Empty for machine clients and external users whose provider sends none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub jti: Uuid,
    pub iss: String,
    /// A machine client's scopes, space-separated (RFC 9068 §2.2.3); they confine its role to their
    /// routes ([`scopes`]). Absent for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
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
    /// An external token whose roles map to no LogiCore role, and its issuer has no default role.
    #[error("{0}")]
    Unmapped(String),
    /// The users service, which must register an external user, could not be asked.
    #[error("identity directory unavailable: {0}")]
    Unavailable(String),
}

/// Everything that verifies a token, with its fixed rules, and the HS256 secret that can also sign.
/// Cheap to clone.
#[derive(Clone)]
pub struct JwtKeys(Arc<JwtKeysInner>);

struct JwtKeysInner {
    hs256: Option<Hs256>,
    /// LogiCore's own public keys.
    own: JwksCache,
    external: Vec<ExternalIssuer>,
    directory: Arc<dyn Directory>,
    issuer: String,
    access_ttl: Duration,
    verified: VerifiedTokens,
    revocations: Revocations,
}

/// The shared secret of `auth.jwt_secret`, when HS256 tokens are accepted.
struct Hs256 {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

/// The `typ` of LogiCore's asymmetric access tokens (RFC 9068 §2.1), so its ID tokens, signed with the
/// same key, are never taken for access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Where the users service is, as base URLs asked anew at each call (the gateway's follow its upstream).
#[derive(Clone)]
pub struct UsersLocation(Arc<dyn Fn() -> Vec<String> + Send + Sync>);

impl UsersLocation {
    /// One fixed base URL (`auth.users_url`).
    pub fn fixed(url: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        Self(Arc::new(move || vec![url.clone()]))
    }

    /// Base URLs computed at each call.
    pub fn dynamic(urls: impl Fn() -> Vec<String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(urls))
    }

    pub fn urls(&self) -> Vec<String> {
        (self.0)()
            .into_iter()
            .map(|url| url.trim_end_matches('/').to_owned())
            .collect()
    }
}

/// How a process reaches what it verifies with: LogiCore's public keys and the directory of external users.
pub struct Verifiers {
    pub own_keys: Box<dyn JwksSource>,
    pub directory: Arc<dyn Directory>,
}

impl Verifiers {
    /// The users service over HTTP: every process but the users service itself.
    pub fn remote(location: UsersLocation) -> Self {
        Self {
            own_keys: Box::new(jwks::UsersJwks::new(location.clone())),
            directory: Arc::new(external::UsersDirectory::new(location)),
        }
    }
}

/// Leeway on `exp`, `nbf` and `iat`, in seconds, for clocks a little apart between the issuer and the
/// verifier.
pub const LEEWAY_SECS: u64 = 5;
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

    /// Keys whose every check consults `revocations` (see [`crate::revocation`]), reaching the users
    /// service at `auth.users_url`.
    pub fn with_revocations(settings: &AuthSettings, revocations: Revocations) -> Self {
        Self::with_verifiers(
            settings,
            revocations,
            Verifiers::remote(UsersLocation::fixed(&settings.users_url)),
        )
    }

    /// Keys reaching LogiCore's public keys and the external-user directory through `verifiers`.
    pub fn with_verifiers(
        settings: &AuthSettings,
        revocations: Revocations,
        verifiers: Verifiers,
    ) -> Self {
        let hs256 = settings.accept_hs256.then(|| {
            let secret = settings.jwt_secret.expose().as_bytes();
            let mut validation = Validation::new(Algorithm::HS256);
            validation.set_issuer(&[settings.issuer.as_str()]);
            validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
            validation.leeway = LEEWAY_SECS;
            validation.validate_nbf = true;
            Hs256 {
                encoding: EncodingKey::from_secret(secret),
                decoding: DecodingKey::from_secret(secret),
                validation,
            }
        });
        let own = JwksCache::from_boxed(
            verifiers.own_keys,
            Duration::from_secs(settings.jwks_cache_ttl_secs),
            Duration::from_millis(settings.jwks_refresh_cooldown_ms),
        );
        Self(Arc::new(JwtKeysInner {
            hs256,
            own,
            external: ExternalIssuer::all(settings),
            directory: verifiers.directory,
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

    pub fn issuer(&self) -> &str {
        &self.0.issuer
    }

    /// Signs an HS256 access token for the user with the shared secret (`auth.signing_algorithm =
    /// "HS256"`, and tools and tests); returns it with its claims. Its `iat` is past any revocation of
    /// the user this process knows of (see [`Revocations::first_valid_iat`]).
    pub fn issue(
        &self,
        user_id: Uuid,
        email: &str,
        role: Role,
    ) -> Result<(String, Claims), TokenError> {
        let claims = self.claims_for(user_id, email, role, None, self.0.access_ttl);
        let token = self.sign_hs256(&Header::new(Algorithm::HS256), &claims)?;
        Ok((token, claims))
    }

    /// Signs `claims` with the shared HS256 secret.
    pub fn sign_hs256(&self, header: &Header, claims: &Claims) -> Result<String, TokenError> {
        let hs256 = self.0.hs256.as_ref().ok_or_else(|| {
            TokenError::Invalid("HS256 is off (auth.accept_hs256 = false)".into())
        })?;
        jsonwebtoken::encode(header, claims, &hs256.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    /// The claims of a new token of this issuer for `user_id`, living `ttl`.
    pub fn claims_for(
        &self,
        user_id: Uuid,
        email: &str,
        role: Role,
        scope: Option<String>,
        ttl: Duration,
    ) -> Claims {
        let now = now_secs();
        Claims {
            sub: user_id,
            email: email.to_owned(),
            role,
            iat: self.0.revocations.first_valid_iat(user_id, now),
            exp: now + ttl.as_secs() as i64,
            jti: Uuid::now_v7(),
            iss: self.0.issuer.clone(),
            scope,
        }
    }

    /// Checks the signature with the key the token's issuer and `kid` name (its `alg` must be that key's),
    /// issuer, audience (external tokens), expiry, `nbf` and `iat` (neither further ahead than the
    /// leeway), then whether the token was revoked. An external user is registered on first sight.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let claims = match self.0.verified.get(token) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token).await?;
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

    async fn verify_signed(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(token_error)?;
        if header.alg == Algorithm::HS256 {
            let hs256 = self
                .0
                .hs256
                .as_ref()
                .ok_or_else(|| TokenError::Invalid("HS256 tokens are not accepted".into()))?;
            return jsonwebtoken::decode::<Claims>(token, &hs256.decoding, &hs256.validation)
                .map(|data| data.claims)
                .map_err(token_error);
        }
        let issuer = unverified_issuer(token)?;
        if issuer == self.0.issuer {
            if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
                return Err(TokenError::Invalid(format!(
                    "typ must be {ACCESS_TOKEN_TYPE}"
                )));
            }
            let key = self
                .0
                .own
                .key(header.kid.as_deref())
                .await
                .map_err(key_error)?;
            let validation = self.own_validation(key.algorithm, header.alg)?;
            return jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
                .map(|data| data.claims)
                .map_err(token_error);
        }
        let external = self
            .0
            .external
            .iter()
            .find(|external| external.issuer == issuer)
            .ok_or_else(|| TokenError::Invalid("the issuer is not trusted".into()))?;
        let key = external
            .jwks
            .key(header.kid.as_deref())
            .await
            .map_err(key_error)?;
        if key.algorithm != header.alg {
            return Err(TokenError::Invalid("alg is not the key's".into()));
        }
        let data = jsonwebtoken::decode::<serde_json::Value>(
            token,
            &key.decoding,
            &external.validation(key.algorithm),
        )
        .map_err(token_error)?;
        let identity = external.identity(&data.claims)?;
        let number = |name: &str| data.claims.get(name).and_then(serde_json::Value::as_i64);
        let exp =
            number("exp").ok_or_else(|| TokenError::Invalid("exp must be a number".into()))?;
        let user_id = self.0.directory.admit(&identity, token).await?;
        Ok(Claims {
            sub: user_id,
            email: identity.email.unwrap_or_default(),
            role: identity.role,
            // A provider that sends no `iat` is taken to have issued the token now.
            iat: number("iat").unwrap_or_else(now_secs),
            exp,
            jti: token_id(token),
            iss: issuer,
            scope: None,
        })
    }

    fn own_validation(&self, key: Algorithm, token: Algorithm) -> Result<Validation, TokenError> {
        if key != token {
            return Err(TokenError::Invalid("alg is not the key's".into()));
        }
        let mut validation = Validation::new(key);
        validation.set_issuer(&[self.0.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        Ok(validation)
    }

    /// The key ids of LogiCore's own keys this process holds (for tests and `/admin`).
    pub fn own_kids(&self) -> Vec<String> {
        self.0.own.kids()
    }

    /// Verifies the bearer token of an `Authorization` header value, for a request of `method` on the
    /// path `segments` ([`crate::route_pattern::request_segments`]): a machine client's token must also
    /// have a scope that opens the route.
    pub async fn verify_request(
        &self,
        authorization: Option<&str>,
        method: &Method,
        segments: &[Cow<'_, str>],
    ) -> Result<Claims, Problem> {
        let claims = self.verify_bearer(authorization).await?;
        check_scope(&claims, method, segments)?;
        Ok(claims)
    }

    /// Verifies the bearer token of an `Authorization` header value.
    pub async fn verify_bearer(&self, authorization: Option<&str>) -> Result<Claims, Problem> {
        let token = authorization
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(|| Problem::unauthorized("a bearer access token is required"))?;
        self.verify(token).await.map_err(|e| match e {
            TokenError::Expired => Problem::unauthorized("the access token has expired"),
            TokenError::Invalid(reason) => {
                tracing::debug!(reason = %reason, "access token refused");
                Problem::unauthorized("the access token is invalid")
            }
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
            TokenError::Unmapped(reason) => {
                Problem::new(StatusCode::FORBIDDEN, "ROLE_NOT_MAPPED", reason)
            }
            TokenError::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "an external user could not be registered");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "IDENTITY_UNAVAILABLE",
                    "the users service could not be asked about this caller; try again",
                )
            }
        })
    }
}

/// 403 unless a machine client's scopes open the route (a person's token has no scope and passes).
fn check_scope(claims: &Claims, method: &Method, segments: &[Cow<'_, str>]) -> Result<(), Problem> {
    match &claims.scope {
        Some(scope) if !scopes::permits(scope, method, segments) => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "INSUFFICIENT_SCOPE",
            "the client's scopes do not cover this route",
        )),
        _ => Ok(()),
    }
}

/// A token's `iss`, read before its signature is checked, only to pick the keys that check it.
fn unverified_issuer(token: &str) -> Result<String, TokenError> {
    #[derive(Deserialize)]
    struct Issuer {
        iss: String,
    }
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| TokenError::Invalid("not a JWS".into()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Invalid("the payload is not base64url".into()))?;
    serde_json::from_slice::<Issuer>(&bytes)
        .map(|claims| claims.iss)
        .map_err(|_| TokenError::Invalid("the payload names no issuer".into()))
}

/// One id per external token (a logout revokes by it): a hash of the token, which its signature makes
/// unique, as a UUID (version 8).
fn token_id(token: &str) -> Uuid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(token.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn token_error(error: jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
        jsonwebtoken::errors::ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        _ => TokenError::Invalid(error.to_string()),
    }
}

fn key_error(error: KeyError) -> TokenError {
    TokenError::Invalid(error.to_string())
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
        let claims = keys.verify_bearer(authorization).await?;
        // The path is cut into segments only for a machine client, whose scopes confine its routes.
        if claims.scope.is_some() {
            check_scope(&claims, &parts.method, &request_segments(parts.uri.path()))?;
        }
        Ok(AuthUser(claims))
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

    fn settings(secret: &str) -> AuthSettings {
        AuthSettings::defaults_with_secret(secret)
    }

    #[tokio::test]
    async fn an_issued_token_verifies() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let (token, claims) = keys
            .issue(Uuid::now_v7(), "a@b.c", Role::Driver)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(keys.verify(&token).await.ok(), Some(claims));
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

    #[tokio::test]
    async fn tokens_signed_with_another_secret_are_rejected() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let other = JwtKeys::new(&settings("ffffffffffffffffffffffffffffffff"));
        let (token, _) = other
            .issue(Uuid::now_v7(), "a@b.c", Role::Admin)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            keys.verify(&token).await,
            Err(TokenError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn unsigned_alg_none_tokens_are_rejected() {
        let keys = JwtKeys::new(&settings("0123456789abcdef0123456789abcdef"));
        let (token, _) = keys
            .issue(Uuid::now_v7(), "a@b.c", Role::Customer)
            .unwrap_or_else(|e| panic!("{e}"));
        let payload = token.split('.').nth(1).unwrap_or_default();
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = engine.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let forged = format!("{header}.{payload}.");
        assert!(keys.verify(&forged).await.is_err());
    }
}
