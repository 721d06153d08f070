//! The OpenID provider harness does what the identity tests rely on: ES256 JWT access tokens for the requested
//! resource with the client's roles and TTL, a public-only JWKS that verifies them, key rotation on the same
//! issuer, a JWKS request count, and refusals.

use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use testkit::oidc::{OidcClient, OidcProvider};

const API: &str = "https://api.logicore.test";
const OTHER: &str = "https://other.logicore.test";
/// Two provider starts and a handful of requests; generous for a loaded 2-core machine.
const BOUND: Duration = Duration::from_secs(90);

fn secret(id: &str) -> String {
    format!("{id}-secret-long-enough-for-any-provider")
}

fn client(id: &str, roles: &[&str], token_ttl_secs: u64) -> OidcClient {
    OidcClient {
        id: id.into(),
        secret: secret(id),
        roles: roles.iter().map(|role| (*role).into()).collect(),
        token_ttl_secs,
    }
}

/// The provider's JWKS, read at the `jwks_uri` of its discovery document.
async fn jwks(provider: &OidcProvider) -> Value {
    let http = testkit::client();
    let discovery_url = format!("{}/.well-known/openid-configuration", provider.issuer());
    let discovery = testkit::json(http.get(discovery_url).send().await.expect("discovery")).await;
    assert_eq!(discovery["issuer"], provider.issuer().as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri");
    testkit::json(http.get(jwks_uri).send().await.expect("jwks")).await
}

/// Verifies `token` as a resource server for `audience` would, with the key of its `kid` from `jwks`; returns its
/// header's `kid` and its claims.
fn verify(token: &str, jwks: &Value, issuer: &str, audience: &str) -> (String, Value) {
    let header = jsonwebtoken::decode_header(token).expect("a JWT header");
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.expect("a kid");
    let keys: JwkSet = serde_json::from_value(jwks.clone()).expect("a JWK set");
    let jwk = keys
        .find(&kid)
        .unwrap_or_else(|| panic!("{kid} not in {jwks}"));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    let key = DecodingKey::from_jwk(jwk).expect("an ES256 public key");
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .expect("a token the JWKS verifies")
        .claims;
    (kid, claims)
}

#[tokio::test]
async fn the_provider_issues_verifiable_es256_tokens_with_roles_and_rotates_its_key() {
    tokio::time::timeout(BOUND, scenario())
        .await
        .unwrap_or_else(|_| panic!("the OpenID provider scenario took longer than {BOUND:?}"));
}

async fn scenario() {
    testkit::init();
    let mut provider = OidcProvider::start(
        vec![
            client("wms", &["warehouse", "admin"], 120),
            client("carrier", &["carrier"], 300),
        ],
        &[API, OTHER],
    )
    .await;
    let issuer = provider.issuer();
    let first_kid = provider.kids()[0].clone();
    assert_eq!(provider.kids().len(), 1);
    assert_eq!(provider.jwks_requests().await, 0);

    let keys = jwks(&provider).await;
    assert_eq!(provider.jwks_requests().await, 1, "the test's own fetch");
    assert_eq!(keys["keys"][0]["kid"], first_kid.as_str());
    for key in keys["keys"].as_array().expect("keys") {
        assert_eq!(key["kty"], "EC", "{key}");
        assert!(key.get("d").is_none(), "a private key is published: {key}");
    }

    let token = provider.token("wms", API).await;
    let (kid, claims) = verify(&token, &keys, &issuer, API);
    assert_eq!(kid, first_kid);
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["aud"], API);
    assert_eq!(claims["sub"], "wms");
    assert_eq!(
        claims["realm_access"],
        json!({"roles": ["warehouse", "admin"]})
    );
    assert_eq!(claims["groups"], json!(["warehouse", "admin"]));
    let ttl = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert_eq!(ttl, 120, "{claims}");

    // Another client, for the other resource: its own roles and TTL, an audience the first resource rejects.
    let other = provider.token("carrier", OTHER).await;
    let (_, claims) = verify(&other, &keys, &issuer, OTHER);
    assert_eq!(claims["realm_access"]["roles"], json!(["carrier"]));
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        300
    );
    let key = DecodingKey::from_jwk(&serde_json::from_value(keys["keys"][0].clone()).expect("jwk"))
        .expect("key");
    let mut api_only = Validation::new(Algorithm::ES256);
    api_only.set_audience(&[API]);
    assert!(jsonwebtoken::decode::<Value>(&other, &key, &api_only).is_err());

    let refused = provider
        .request_token("wms", "not-the-secret", API)
        .await
        .expect_err("a wrong secret");
    assert_eq!(refused["error"], "invalid_client", "{refused}");
    let refused = provider
        .request_token("wms", &secret("wms"), "https://unknown.test")
        .await
        .expect_err("an unknown resource");
    assert_eq!(refused["error"], "invalid_target", "{refused}");

    // Rotation: same issuer, the new key signs, both are published, and the count survives the restart.
    let new_kid = provider.rotate().await;
    assert_ne!(new_kid, first_kid);
    assert_eq!(provider.issuer(), issuer);
    assert_eq!(provider.kids(), vec![new_kid.clone(), first_kid.clone()]);
    assert_eq!(provider.jwks_requests().await, 1);
    let rotated = jwks(&provider).await;
    assert_eq!(provider.jwks_requests().await, 2);
    let (kid, _) = verify(&provider.token("wms", API).await, &rotated, &issuer, API);
    assert_eq!(kid, new_kid);
    let (kid, _) = verify(&token, &rotated, &issuer, API);
    assert_eq!(kid, first_kid, "a token of the old key stays verifiable");

    provider.stop().await;
    assert!(
        testkit::client()
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .is_err(),
        "a stopped provider refuses connections"
    );
}
