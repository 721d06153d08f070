//! LogiCore as a token issuer: the keys the users service signs with, and the public half it publishes
//! (`/.well-known/jwks.json`), which is all the gateway and the services verify with.
//!
//! Keys come from `auth.signing_key_dir` (PEM files named `<kid>.pem`, e.g. a mounted Kubernetes Secret;
//! `auth.signing_key_id` signs, the others are only published) or from the `signing_keys` table, where the
//! first start generates one and `logicore users rotate-key` adds the next. Rotation never logs anyone out:
//! a new key is published `auth.key_publish_lead_secs` before it signs, and an old one stays published until
//! the last token it signed has expired. Every instance reloads the keys on a timer, so instances agree
//! on which key signs without talking to each other: the choice is made by time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::jwks::{Fetch, JwksSource};
use platform::auth::{ACCESS_TOKEN_TYPE, Claims, JwtKeys, LEEWAY_SECS, Role, TokenError};
use platform::config::{AuthSettings, SigningAlgorithm};
use platform::db::Db;
use serde::Serialize;
use sqlx::Row;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::UsersError;

/// The `aud` of ID tokens: LogiCore's own front ends, the only clients of the password sign-in.
pub const ID_TOKEN_AUDIENCE: &str = "logicore";

/// One private key, ready to sign.
#[derive(Clone)]
struct SigningKey {
    kid: String,
    algorithm: Algorithm,
    encoding: EncodingKey,
    public: Jwk,
    signs_from: DateTime<Utc>,
}

impl SigningKey {
    fn from_pem(
        kid: &str,
        algorithm: SigningAlgorithm,
        pem: &[u8],
        signs_from: DateTime<Utc>,
    ) -> Result<Self, String> {
        let (algorithm, encoding) = match algorithm {
            SigningAlgorithm::ES256 => (Algorithm::ES256, EncodingKey::from_ec_pem(pem)),
            SigningAlgorithm::RS256 => (Algorithm::RS256, EncodingKey::from_rsa_pem(pem)),
            SigningAlgorithm::HS256 => return Err("HS256 keys are not PEM files".into()),
        };
        let encoding = encoding.map_err(|e| format!("key {kid:?}: {e}"))?;
        let mut public = Jwk::from_encoding_key(&encoding, algorithm)
            .map_err(|e| format!("key {kid:?}: {e}"))?;
        public.common.key_id = Some(kid.to_owned());
        public.common.public_key_use = Some(PublicKeyUse::Signature);
        public.common.key_algorithm = Some(match algorithm {
            Algorithm::RS256 => KeyAlgorithm::RS256,
            _ => KeyAlgorithm::ES256,
        });
        Ok(Self {
            kid: kid.to_owned(),
            algorithm,
            encoding,
            public,
            signs_from,
        })
    }
}

/// The keys as last loaded, oldest `signs_from` first.
#[derive(Default)]
struct Ring {
    keys: Vec<SigningKey>,
}

impl Ring {
    /// The key that signs now: the latest whose `signs_from` has come.
    fn active(&self) -> Option<&SigningKey> {
        let now = Utc::now();
        self.keys.iter().rev().find(|key| key.signs_from <= now)
    }
}

/// Where the keys live.
#[derive(Clone)]
enum Store {
    Database(Db),
    Directory { path: PathBuf, active: String },
}

/// Signs LogiCore's tokens. Cheap to clone.
#[derive(Clone)]
pub struct Signer(Arc<SignerInner>);

struct SignerInner {
    /// The HS256 secret (when that is the algorithm) and the claim rules shared with the verifiers.
    keys: JwtKeys,
    algorithm: SigningAlgorithm,
    store: Option<Store>,
    ring: ArcSwap<Ring>,
    access_ttl: Duration,
    client_ttl: Duration,
    publish_lead: Duration,
}

/// What the ID token says about the user (OpenID Connect Core §2, §5.1).
#[derive(Serialize)]
struct IdClaims<'a> {
    iss: &'a str,
    sub: Uuid,
    aud: &'static str,
    iat: i64,
    exp: i64,
    email: &'a str,
    name: &'a str,
    role: Role,
}

impl Signer {
    /// Loads the keys (generating the first one in the database if there is none) and is ready to sign.
    pub async fn start(
        settings: &AuthSettings,
        keys: JwtKeys,
        db: &Db,
    ) -> Result<Self, UsersError> {
        let store = match settings.signing_algorithm {
            SigningAlgorithm::HS256 => None,
            _ if settings.signing_key_dir.is_empty() => Some(Store::Database(db.clone())),
            _ => Some(Store::Directory {
                path: PathBuf::from(&settings.signing_key_dir),
                active: settings.signing_key_id.clone(),
            }),
        };
        let signer = Self(Arc::new(SignerInner {
            keys,
            algorithm: settings.signing_algorithm,
            store,
            ring: ArcSwap::from_pointee(Ring::default()),
            access_ttl: Duration::from_secs(settings.access_ttl_secs),
            client_ttl: Duration::from_secs(settings.client_token_ttl_secs),
            publish_lead: Duration::from_secs(settings.key_publish_lead_secs),
        }));
        if let Some(Store::Database(db)) = &signer.0.store {
            ensure_key(db, settings.signing_algorithm).await?;
        }
        signer.reload().await?;
        if signer.0.store.is_some() && signer.0.ring.load().active().is_none() {
            return Err(UsersError::Signing(
                "no signing key is active (see auth.signing_key_dir and auth.signing_key_id)"
                    .into(),
            ));
        }
        Ok(signer)
    }

    /// How often the keys are read again: twice within the publication lead, so every instance holds a
    /// rotated-in key before it signs, and at least every half minute for files a Secret update replaced.
    pub fn reload_interval(&self) -> Duration {
        (self.0.publish_lead / 2).clamp(Duration::from_millis(200), Duration::from_secs(30))
    }

    /// Reads the keys again.
    pub async fn reload(&self) -> Result<(), UsersError> {
        let keys = match &self.0.store {
            None => return Ok(()),
            Some(Store::Database(db)) => load_from_database(db, self.0.access_ttl).await?,
            Some(Store::Directory { path, active }) => {
                load_from_directory(path, active, self.0.algorithm).map_err(UsersError::Signing)?
            }
        };
        self.0.ring.store(Arc::new(Ring { keys }));
        Ok(())
    }

    /// Reloads every [`Self::reload_interval`] until `shutdown`.
    pub async fn keep_current(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.reload_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    if let Err(error) = self.reload().await {
                        tracing::warn!(error = %error, "signing keys could not be reloaded; the loaded ones stay in use");
                    }
                }
            }
        }
    }

    /// The public keys: every key loaded (upcoming, signing and retiring).
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: self
                .0
                .ring
                .load()
                .keys
                .iter()
                .map(|key| key.public.clone())
                .collect(),
        }
    }

    /// The algorithm tokens are signed with, as the discovery document names it.
    pub fn algorithm_name(&self) -> &'static str {
        match self.0.algorithm {
            SigningAlgorithm::ES256 => "ES256",
            SigningAlgorithm::RS256 => "RS256",
            SigningAlgorithm::HS256 => "HS256",
        }
    }

    pub fn issuer(&self) -> &str {
        self.0.keys.issuer()
    }

    pub fn access_ttl(&self) -> Duration {
        self.0.access_ttl
    }

    pub fn client_ttl(&self) -> Duration {
        self.0.client_ttl
    }

    /// A person's access token.
    pub fn access_token(
        &self,
        user_id: Uuid,
        email: &str,
        role: Role,
    ) -> Result<String, UsersError> {
        let claims = self
            .0
            .keys
            .claims_for(user_id, email, role, None, self.0.access_ttl);
        self.sign_access(&claims)
    }

    /// A machine client's access token: its id as `sub`, its scopes, the role they grant.
    pub fn client_token(
        &self,
        client_id: Uuid,
        role: Role,
        scopes: &[String],
    ) -> Result<String, UsersError> {
        let claims = self.0.keys.claims_for(
            client_id,
            "",
            role,
            Some(scopes.join(" ")),
            self.0.client_ttl,
        );
        self.sign_access(&claims)
    }

    fn sign_access(&self, claims: &Claims) -> Result<String, UsersError> {
        if self.0.algorithm == SigningAlgorithm::HS256 {
            let header = Header::new(Algorithm::HS256);
            return self
                .0
                .keys
                .sign_hs256(&header, claims)
                .map_err(UsersError::Token);
        }
        let ring = self.0.ring.load();
        let key = ring
            .active()
            .ok_or_else(|| UsersError::Signing("no signing key is active".into()))?;
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        header.typ = Some(ACCESS_TOKEN_TYPE.to_owned());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| UsersError::Token(TokenError::Invalid(e.to_string())))
    }

    /// An OpenID Connect ID token for a signed-in person; `None` with HS256, whose tokens nobody outside
    /// could verify.
    pub fn id_token(
        &self,
        user_id: Uuid,
        email: &str,
        name: &str,
        role: Role,
    ) -> Result<Option<String>, UsersError> {
        let ring = self.0.ring.load();
        let Some(key) = ring.active() else {
            return Ok(None);
        };
        let now = Utc::now().timestamp();
        let claims = IdClaims {
            iss: self.issuer(),
            sub: user_id,
            aud: ID_TOKEN_AUDIENCE,
            iat: now,
            exp: now + self.0.access_ttl.as_secs() as i64,
            email,
            name,
            role,
        };
        let mut header = Header::new(key.algorithm);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding)
            .map(Some)
            .map_err(|e| UsersError::Token(TokenError::Invalid(e.to_string())))
    }
}

/// The users service verifies LogiCore's tokens with its own keys, without asking itself over HTTP.
impl JwksSource for Signer {
    fn describe(&self) -> String {
        "the users service's own keys".into()
    }

    fn fetch(&self) -> Fetch<'_> {
        let set = self.jwks();
        Box::pin(async move { Ok(set) })
    }
}

/// A fresh key's PEM (PKCS#8).
fn generate(algorithm: SigningAlgorithm) -> Result<String, UsersError> {
    let der = match algorithm {
        SigningAlgorithm::ES256 => EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .and_then(|pair| pair.to_pkcs8v1())
            .map(|der| der.as_ref().to_vec()),
        SigningAlgorithm::RS256 => {
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .and_then(|pair| pair.as_der())
                .map(|der| der.as_ref().to_vec())
        }
        SigningAlgorithm::HS256 => return Err(UsersError::Signing("HS256 has no key pair".into())),
    }
    .map_err(|_| UsersError::Signing("key generation failed".into()))?;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .filter_map(|chunk| std::str::from_utf8(chunk).ok())
        .collect();
    Ok(format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    ))
}

fn algorithm_text(algorithm: SigningAlgorithm) -> &'static str {
    match algorithm {
        SigningAlgorithm::RS256 => "RS256",
        _ => "ES256",
    }
}

/// The first key, signing at once, unless there is one. Instances starting together serialise on an
/// advisory lock, so exactly one generates it.
async fn ensure_key(db: &Db, algorithm: SigningAlgorithm) -> Result<(), UsersError> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('users.signing_keys'))")
        .execute(&mut *tx)
        .await?;
    let present: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM signing_keys)")
        .fetch_one(&mut *tx)
        .await?;
    if !present {
        insert_key(&mut tx, algorithm, Duration::ZERO).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn insert_key(
    connection: &mut sqlx::PgConnection,
    algorithm: SigningAlgorithm,
    lead: Duration,
) -> Result<String, UsersError> {
    let kid = Uuid::now_v7().simple().to_string();
    let pem = generate(algorithm)?;
    sqlx::query(
        "INSERT INTO signing_keys (kid, algorithm, private_pem, signs_from) \
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(&kid)
    .bind(algorithm_text(algorithm))
    .bind(pem)
    .bind(lead.as_secs_f64())
    .execute(&mut *connection)
    .await?;
    Ok(kid)
}

/// Adds the next key: published at once, signing after `auth.key_publish_lead_secs`. Returns its kid.
pub async fn rotate(db: &Db, settings: &AuthSettings) -> Result<String, UsersError> {
    if settings.signing_algorithm == SigningAlgorithm::HS256 || !settings.signing_key_dir.is_empty()
    {
        return Err(UsersError::Signing(
            "only keys kept in the database rotate here (auth.signing_key_dir is set or the algorithm is HS256)"
                .into(),
        ));
    }
    let mut connection = db.acquire().await?;
    insert_key(
        &mut connection,
        settings.signing_algorithm,
        Duration::from_secs(settings.key_publish_lead_secs),
    )
    .await
}

/// The keys worth keeping, oldest first; deletes the retired keys whose last token has expired (a key
/// retires when the next one starts signing).
async fn load_from_database(db: &Db, access_ttl: Duration) -> Result<Vec<SigningKey>, UsersError> {
    let grace = access_ttl.as_secs() as i64 + LEEWAY_SECS as i64;
    let delete = sqlx::query(
        "DELETE FROM signing_keys k WHERE EXISTS (SELECT 1 FROM signing_keys n \
         WHERE n.signs_from > k.signs_from AND n.signs_from < now() - make_interval(secs => $1))",
    )
    .bind(grace as f64)
    .execute(db.pool());
    db.timed("signing_keys.prune", delete).await?;
    let select = sqlx::query(
        "SELECT kid, algorithm, private_pem, signs_from FROM signing_keys ORDER BY signs_from, kid",
    )
    .fetch_all(db.pool());
    let rows = db.timed("signing_keys.load", select).await?;
    rows.iter()
        .map(|row| {
            let algorithm = match row.get::<String, _>("algorithm").as_str() {
                "RS256" => SigningAlgorithm::RS256,
                _ => SigningAlgorithm::ES256,
            };
            SigningKey::from_pem(
                &row.get::<String, _>("kid"),
                algorithm,
                row.get::<String, _>("private_pem").as_bytes(),
                row.get("signs_from"),
            )
            .map_err(UsersError::Signing)
        })
        .collect()
}

/// Every `<kid>.pem` of the directory; `active` signs (the only file does when `active` is empty), the
/// others are published only.
fn load_from_directory(
    path: &Path,
    active: &str,
    algorithm: SigningAlgorithm,
) -> Result<Vec<SigningKey>, String> {
    let entries = std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut files = Vec::new();
    for entry in entries.flatten() {
        let file = entry.path();
        let Some(kid) = file
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".pem"))
        else {
            continue;
        };
        // Kubernetes mounts a Secret's files through `..data` links; only the visible names are keys.
        if kid.starts_with('.') {
            continue;
        }
        files.push((kid.to_owned(), file));
    }
    let active = match (active.is_empty(), files.len()) {
        (false, _) => active.to_owned(),
        (true, 1) => files[0].0.clone(),
        (true, count) => {
            return Err(format!(
                "{}: {count} keys and no auth.signing_key_id to say which signs",
                path.display()
            ));
        }
    };
    if !files.iter().any(|(kid, _)| *kid == active) {
        return Err(format!("{}: no {active}.pem", path.display()));
    }
    let mut keys = files
        .iter()
        .map(|(kid, file)| {
            let pem = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
            // The active key signs from the start of time, the others never: the choice is the setting's.
            let signs_from = if *kid == active {
                DateTime::<Utc>::MIN_UTC
            } else {
                DateTime::<Utc>::MAX_UTC
            };
            SigningKey::from_pem(kid, algorithm, &pem, signs_from)
        })
        .collect::<Result<Vec<_>, _>>()?;
    keys.sort_by_key(|key| key.signs_from);
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_publish_their_public_half() {
        for algorithm in [SigningAlgorithm::ES256, SigningAlgorithm::RS256] {
            let pem = generate(algorithm).unwrap_or_else(|e| panic!("{e}"));
            let key = SigningKey::from_pem("k", algorithm, pem.as_bytes(), Utc::now())
                .unwrap_or_else(|e| panic!("{e}"));
            let public = serde_json::to_value(&key.public).unwrap_or_else(|e| panic!("{e}"));
            assert!(public.get("d").is_none(), "no private part: {public}");
            assert_eq!(public["kid"], "k");
            let decoding =
                jsonwebtoken::DecodingKey::from_jwk(&key.public).unwrap_or_else(|e| panic!("{e}"));
            let token = jsonwebtoken::encode(
                &Header::new(key.algorithm),
                &serde_json::json!({"sub": "x", "exp": Utc::now().timestamp() + 60}),
                &key.encoding,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let mut validation = jsonwebtoken::Validation::new(key.algorithm);
            validation.set_required_spec_claims(&["sub"]);
            assert!(
                jsonwebtoken::decode::<serde_json::Value>(&token, &decoding, &validation).is_ok()
            );
        }
    }

    #[test]
    fn a_key_directory_signs_with_the_named_key_and_publishes_them_all() {
        let dir = testkit::TempDir::new("logicore-signing-keys");
        let write = |name: &str| {
            let pem = generate(SigningAlgorithm::ES256).unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(dir.path().join(name), pem).unwrap_or_else(|e| panic!("{e}"));
        };
        write("2026-11.pem");
        let alone = load_from_directory(dir.path(), "", SigningAlgorithm::ES256)
            .unwrap_or_else(|e| panic!("{e}"));
        let ring = Ring { keys: alone };
        assert_eq!(
            ring.active().map(|key| key.kid.as_str()),
            Some("2026-11"),
            "the only key signs"
        );

        write("2026-12.pem");
        // Kubernetes' own entries of a mounted Secret, and other files, are not keys.
        write("..data.pem");
        std::fs::write(dir.path().join("README"), "not a key").unwrap_or_else(|e| panic!("{e}"));
        let error = load_from_directory(dir.path(), "", SigningAlgorithm::ES256).err();
        assert!(
            error.is_some_and(|e| e.contains("2 keys and no auth.signing_key_id")),
            "two keys need a choice"
        );
        let keys = load_from_directory(dir.path(), "2026-12", SigningAlgorithm::ES256)
            .unwrap_or_else(|e| panic!("{e}"));
        let kids: Vec<&str> = keys.iter().map(|key| key.kid.as_str()).collect();
        assert_eq!(
            kids,
            vec!["2026-12", "2026-11"],
            "both published, the signing one first"
        );
        assert_eq!(
            Ring { keys }.active().map(|key| key.kid.clone()),
            Some("2026-12".into())
        );
        assert!(load_from_directory(dir.path(), "2027-01", SigningAlgorithm::ES256).is_err());
        std::fs::write(
            dir.path().join("2026-12.pem"),
            "-----BEGIN PRIVATE KEY-----\nbroken\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            load_from_directory(dir.path(), "2026-12", SigningAlgorithm::ES256).is_err(),
            "a broken key is an error, not a silently missing one"
        );
    }

    #[test]
    fn the_latest_key_whose_time_has_come_signs() {
        let pem = generate(SigningAlgorithm::ES256).unwrap_or_else(|e| panic!("{e}"));
        let at = |kid: &str, offset: i64| {
            SigningKey::from_pem(
                kid,
                SigningAlgorithm::ES256,
                pem.as_bytes(),
                Utc::now() + chrono::Duration::seconds(offset),
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let ring = Ring {
            keys: vec![at("old", -100), at("current", -10), at("next", 600)],
        };
        assert_eq!(ring.active().map(|key| key.kid.as_str()), Some("current"));
    }
}
