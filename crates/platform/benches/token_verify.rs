//! What verifying an access token costs, per kind: an HS256 token and an ES256 token seen for the first time
//! (signature checked), and a token seen before (the verified-token cache). `bench/token_kinds.sh` runs it
//! next to the gateway's throughput with each kind; the results are in docs/benchmarks.md.
//!
//! Env: `BENCH_TOKENS` (distinct tokens per kind, default 20000; more than the cache's slots, so first
//! sights really are first).

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use platform::auth::external::{Admission, Directory, ExternalIdentity};
use platform::auth::jwks::{Fetch, JwksSource};
use platform::auth::{ACCESS_TOKEN_TYPE, JwtKeys, Role, Verifiers};
use platform::config::AuthSettings;
use platform::revocation::Revocations;
use uuid::Uuid;

/// A benchmark's own ES256 key; it signs nothing anywhere else.
const BENCH_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgEW++qUwEm8vKw+he
ESGutooFWrQ0Xqy4INS1KQduxdOhRANCAAQURYXtgJ02akryM79c1qFE3sT0eVw0
VAw9mSn766JYAhTQGSTFXfkyjEPXjMqT546mHFZkQvDRqXxyAw144LGU
-----END PRIVATE KEY-----
";
const KID: &str = "bench";

/// The bench key's public half, as the users service would publish it.
struct BenchJwks(JwkSet);

impl JwksSource for BenchJwks {
    fn describe(&self) -> String {
        "bench".into()
    }

    fn fetch(&self) -> Fetch<'_> {
        let set = self.0.clone();
        Box::pin(async move { Ok(set) })
    }
}

/// No external issuer is configured, so nothing is ever admitted.
struct NoDirectory;

impl Directory for NoDirectory {
    fn admit<'a>(&'a self, _: &'a ExternalIdentity, _: &'a str) -> Admission<'a> {
        Box::pin(async { Err(platform::auth::TokenError::Invalid("no directory".into())) })
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn measure(name: &str, keys: &JwtKeys, tokens: &[String]) {
    let started = Instant::now();
    for token in tokens {
        keys.verify(token)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let per = started.elapsed() / tokens.len() as u32;
    println!("{name:<28} {:>9.2} µs/verify", per.as_secs_f64() * 1e6);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let count: usize = env("BENCH_TOKENS", 20_000);
    let settings = AuthSettings::defaults_with_secret("0123456789abcdef0123456789abcdef");
    let encoding = EncodingKey::from_ec_pem(BENCH_KEY.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let mut jwk =
        Jwk::from_encoding_key(&encoding, Algorithm::ES256).unwrap_or_else(|e| panic!("{e}"));
    jwk.common.key_id = Some(KID.into());
    jwk.common.key_algorithm = Some(KeyAlgorithm::ES256);
    let keys = JwtKeys::with_verifiers(
        &settings,
        Revocations::new(),
        Verifiers {
            own_keys: Box::new(BenchJwks(JwkSet { keys: vec![jwk] })),
            directory: std::sync::Arc::new(NoDirectory),
        },
    );
    let mut es256_header = Header::new(Algorithm::ES256);
    es256_header.kid = Some(KID.into());
    es256_header.typ = Some(ACCESS_TOKEN_TYPE.into());
    let mut hs256 = Vec::with_capacity(count);
    let mut es256 = Vec::with_capacity(count);
    for i in 0..count {
        let claims = keys.claims_for(
            Uuid::now_v7(),
            &format!("u{i}@bench.test"),
            Role::Customer,
            None,
            Duration::from_secs(900),
        );
        hs256.push(
            keys.sign_hs256(&Header::new(Algorithm::HS256), &claims)
                .unwrap_or_else(|e| panic!("{e}")),
        );
        es256.push(
            jsonwebtoken::encode(&es256_header, &claims, &encoding)
                .unwrap_or_else(|e| panic!("{e}")),
        );
    }
    // The first ES256 check fetches the (in-memory) JWKS; keep that out of the measurement.
    keys.verify(&es256[0])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{count} distinct tokens per kind, one thread");
    measure("HS256, first sight", &keys, &hs256[1..]).await;
    measure("ES256, first sight", &keys, &es256[1..]).await;
    let repeated = vec![es256[1].clone(); count];
    measure("ES256, seen before (cache)", &keys, &repeated).await;
    let repeated = vec![hs256[1].clone(); count];
    measure("HS256, seen before (cache)", &keys, &repeated).await;
}
