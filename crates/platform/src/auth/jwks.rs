//! Public keys from a JWKS (RFC 7517), cached: LogiCore's own (its users service publishes them) and each
//! trusted identity provider's.
//!
//! A key is looked up by the token's `kid`. A known key is answered from memory; once the set is older
//! than its TTL a refresh runs in the background and the known keys keep working meanwhile (and for good
//! when the refresh fails: the previous keys are kept). An unknown `kid` waits for one refresh, a single
//! flight shared by every caller, at most once per cool-down: a storm of forged `kid`s costs the provider
//! one request per cool-down, never one per token.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokio::sync::{Mutex, OnceCell};

use super::UsersLocation;

/// Where the users service publishes LogiCore's public keys.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// Longest wait for one fetch of a discovery document or a JWKS.
const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest JWKS or discovery document read: a provider publishes a handful of keys.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// One verification key, with the one algorithm it may verify (RFC 8725 §3.1: the token's `alg` must be
/// the key's, so a public key can never be used as an HMAC secret).
#[derive(Clone)]
pub struct PublicKey {
    pub algorithm: Algorithm,
    pub decoding: DecodingKey,
}

impl PublicKey {
    /// The key of a JWK, or why it cannot verify anything. Symmetric (`oct`) keys are refused: a JWKS
    /// is public, so a secret in it would let anyone sign.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, String> {
        let algorithm = match (&jwk.algorithm, jwk.common.key_algorithm) {
            (AlgorithmParameters::OctetKey(_), _) => return Err("a symmetric key".into()),
            (_, Some(declared)) => asymmetric(declared)?,
            (AlgorithmParameters::EllipticCurve(ec), None) => match ec.curve {
                EllipticCurve::P256 => Algorithm::ES256,
                EllipticCurve::P384 => Algorithm::ES384,
                _ => return Err("an unsupported curve".into()),
            },
            (AlgorithmParameters::RSA(_), None) => Algorithm::RS256,
            (AlgorithmParameters::OctetKeyPair(_), None) => Algorithm::EdDSA,
            (_, None) => return Err("an unknown key type".into()),
        };
        let decoding = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        Ok(Self {
            algorithm,
            decoding,
        })
    }
}

fn asymmetric(declared: KeyAlgorithm) -> Result<Algorithm, String> {
    Ok(match declared {
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        other => {
            return Err(format!(
                "algorithm {other:?} is not an asymmetric signature"
            ));
        }
    })
}

/// A boxed future, so sources can be trait objects.
pub type Fetch<'a> = Pin<Box<dyn Future<Output = Result<JwkSet, String>> + Send + 'a>>;

/// Where a JWKS comes from.
pub trait JwksSource: Send + Sync + 'static {
    /// What the logs call it (a URL).
    fn describe(&self) -> String;
    fn fetch(&self) -> Fetch<'_>;
}

/// A client for providers' documents: bounded in time, redirects not followed (a JWKS address is
/// configured or discovered, never redirected elsewhere).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
}

async fn get_json<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{url}: status {status}"));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    let body = response.bytes().await.map_err(|e| format!("{url}: {e}"))?;
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(format!("{url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url}: {e}"))
}

/// A JWKS at a known address.
pub struct HttpJwks {
    url: String,
    client: reqwest::Client,
}

impl HttpJwks {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: client(),
        }
    }
}

impl JwksSource for HttpJwks {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn fetch(&self) -> Fetch<'_> {
        Box::pin(get_json(&self.client, &self.url))
    }
}

/// LogiCore's own JWKS, served by the users service at `/.well-known/jwks.json`; each of its base URLs is
/// tried in turn.
pub struct UsersJwks {
    location: UsersLocation,
    client: reqwest::Client,
}

impl UsersJwks {
    pub fn new(location: UsersLocation) -> Self {
        Self {
            location,
            client: client(),
        }
    }
}

impl JwksSource for UsersJwks {
    fn describe(&self) -> String {
        format!("the users service ({})", self.location.urls().join(", "))
    }

    fn fetch(&self) -> Fetch<'_> {
        Box::pin(async move {
            let mut failures = Vec::new();
            for base in self.location.urls() {
                match get_json(&self.client, &format!("{base}{JWKS_PATH}")).await {
                    Ok(set) => return Ok(set),
                    Err(reason) => failures.push(reason),
                }
            }
            Err(if failures.is_empty() {
                "no users service instance is known".to_owned()
            } else {
                failures.join("; ")
            })
        })
    }
}

/// An OpenID provider's JWKS, found through its discovery document (OpenID Connect Discovery 1.0 §4),
/// whose `issuer` must be the one configured (§4.3), so a document cannot speak for another issuer.
pub struct DiscoveredJwks {
    issuer: String,
    client: reqwest::Client,
    jwks_uri: OnceCell<String>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl DiscoveredJwks {
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            client: client(),
            jwks_uri: OnceCell::new(),
        }
    }

    async fn jwks_uri(&self) -> Result<&str, String> {
        self.jwks_uri
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.issuer.trim_end_matches('/')
                );
                let discovery: Discovery = get_json(&self.client, &url).await?;
                if discovery.issuer != self.issuer {
                    return Err(format!(
                        "{url}: names issuer {:?}, not {:?}",
                        discovery.issuer, self.issuer
                    ));
                }
                Ok(discovery.jwks_uri)
            })
            .await
            .map(String::as_str)
    }
}

impl JwksSource for DiscoveredJwks {
    fn describe(&self) -> String {
        self.issuer.clone()
    }

    fn fetch(&self) -> Fetch<'_> {
        Box::pin(async move {
            let uri = self.jwks_uri().await?;
            get_json(&self.client, uri).await
        })
    }
}

/// The keys of one source as last fetched.
#[derive(Default)]
struct Snapshot {
    keys: HashMap<String, PublicKey>,
    /// The only key when the set has exactly one: a token without `kid` may use it.
    sole: Option<PublicKey>,
    fetched_at: Option<Instant>,
}

/// A source's keys, cached. Cheap to clone.
#[derive(Clone)]
pub struct JwksCache(Arc<CacheInner>);

struct CacheInner {
    source: Box<dyn JwksSource>,
    snapshot: ArcSwap<Snapshot>,
    /// The single flight: held by the one fetch in progress; it remembers when the last one started.
    refresh: Mutex<Option<Instant>>,
    ttl: Duration,
    cooldown: Duration,
}

/// Why no key was found for a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("the token names no kid")]
    NoKid,
}

impl JwksCache {
    pub fn new(source: impl JwksSource, ttl: Duration, cooldown: Duration) -> Self {
        Self::from_boxed(Box::new(source), ttl, cooldown)
    }

    pub fn from_boxed(source: Box<dyn JwksSource>, ttl: Duration, cooldown: Duration) -> Self {
        Self(Arc::new(CacheInner {
            source,
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            refresh: Mutex::new(None),
            ttl,
            cooldown,
        }))
    }

    /// The key for a token's `kid` (`None`: only a set of exactly one key serves such a token).
    pub async fn key(&self, kid: Option<&str>) -> Result<PublicKey, KeyError> {
        let snapshot = self.0.snapshot.load();
        if let Some(key) = lookup(&snapshot, kid) {
            let stale = snapshot
                .fetched_at
                .is_none_or(|at| at.elapsed() >= self.0.ttl);
            // One background refresh at a time: none while one runs or within the cool-down of the last.
            let due = || {
                self.0
                    .refresh
                    .try_lock()
                    .is_ok_and(|last| last.is_none_or(|at| at.elapsed() >= self.0.cooldown))
            };
            if stale && due() {
                let cache = self.clone();
                tokio::spawn(async move { cache.refresh().await });
            }
            return Ok(key);
        }
        drop(snapshot);
        self.refresh().await;
        lookup(&self.0.snapshot.load(), kid).ok_or_else(|| match kid {
            Some(kid) => KeyError::UnknownKid(kid.chars().take(64).collect()),
            None => KeyError::NoKid,
        })
    }

    /// Fetches the set unless another caller fetched within the cool-down; callers arriving during a
    /// fetch wait for it rather than starting their own.
    pub async fn refresh(&self) {
        let mut last = self.0.refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.0.cooldown) {
            return;
        }
        *last = Some(Instant::now());
        match self.0.source.fetch().await {
            Ok(set) => {
                let mut keys = HashMap::new();
                for jwk in &set.keys {
                    let kid = jwk.common.key_id.clone().unwrap_or_default();
                    match PublicKey::from_jwk(jwk) {
                        Ok(key) => {
                            keys.insert(kid, key);
                        }
                        Err(reason) => tracing::debug!(
                            source = %self.0.source.describe(),
                            kid = %kid,
                            reason = %reason,
                            "JWKS key skipped"
                        ),
                    }
                }
                let sole = (keys.len() == 1)
                    .then(|| keys.values().next().cloned())
                    .flatten();
                tracing::debug!(source = %self.0.source.describe(), keys = keys.len(), "JWKS fetched");
                self.0.snapshot.store(Arc::new(Snapshot {
                    keys,
                    sole,
                    fetched_at: Some(Instant::now()),
                }));
            }
            Err(reason) => tracing::warn!(
                source = %self.0.source.describe(),
                reason = %reason,
                "JWKS fetch failed; the keys fetched before stay in use"
            ),
        }
    }

    /// The key ids currently held.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.0.snapshot.load().keys.keys().cloned().collect();
        kids.sort();
        kids
    }
}

fn lookup(snapshot: &Snapshot, kid: Option<&str>) -> Option<PublicKey> {
    match kid {
        Some(kid) => snapshot.keys.get(kid).cloned(),
        None => snapshot.sole.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A source that serves one fixed EC key and counts its fetches; `fail` makes every fetch fail.
    struct Counting {
        fetches: Arc<AtomicUsize>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        set: JwkSet,
    }

    impl JwksSource for Counting {
        fn describe(&self) -> String {
            "test".into()
        }

        fn fetch(&self) -> Fetch<'_> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let result = if self.fail.load(Ordering::SeqCst) {
                Err("down".to_owned())
            } else {
                Ok(self.set.clone())
            };
            Box::pin(async move { result })
        }
    }

    fn set() -> JwkSet {
        // An ES256 public key (RFC 7515 appendix A.3).
        serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256",
            "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"
        }, {
            "kty": "oct", "kid": "secret", "k": "c2VjcmV0"
        }]}))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn cache(
        cooldown: Duration,
    ) -> (
        JwksCache,
        Arc<AtomicUsize>,
        Arc<std::sync::atomic::AtomicBool>,
    ) {
        let fetches = Arc::new(AtomicUsize::new(0));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let source = Counting {
            fetches: fetches.clone(),
            fail: fail.clone(),
            set: set(),
        };
        (
            JwksCache::new(source, Duration::from_secs(300), cooldown),
            fetches,
            fail,
        )
    }

    #[tokio::test]
    async fn a_storm_of_unknown_kids_fetches_once_per_cooldown() {
        let (cache, fetches, _) = cache(Duration::from_secs(60));
        let lookups = (0..50).map(|i| {
            let cache = cache.clone();
            async move { cache.key(Some(&format!("forged-{i}"))).await }
        });
        let results = futures::future::join_all(lookups).await;
        assert!(results.iter().all(Result::is_err));
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache.key(Some("k1")).await.map(|k| k.algorithm).ok(),
            Some(Algorithm::ES256)
        );
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "a known kid needs no fetch"
        );
    }

    #[tokio::test]
    async fn symmetric_keys_are_never_taken_from_a_jwks() {
        let (cache, _, _) = cache(Duration::from_secs(60));
        assert_eq!(
            cache.key(Some("secret")).await.err(),
            Some(KeyError::UnknownKid("secret".into()))
        );
        assert_eq!(cache.kids(), vec!["k1".to_owned()]);
    }

    #[tokio::test]
    async fn keys_survive_a_failed_refresh() {
        let (cache, fetches, fail) = cache(Duration::from_millis(10));
        assert!(cache.key(Some("k1")).await.is_ok());
        fail.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(5);
        while fetches.load(Ordering::SeqCst) < 2 {
            assert!(Instant::now() < deadline, "no second fetch");
            tokio::task::yield_now().await;
            cache.refresh().await;
        }
        assert!(cache.key(Some("k1")).await.is_ok());
    }
}
