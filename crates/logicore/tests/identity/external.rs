//! Tokens of a real external OpenID provider: accepted by the gateway and by a service asked directly,
//! with the provider's roles mapped; refused when the audience, the issuer, the expiry or the key is wrong;
//! a rotated key fetched once per verifier; a storm of unknown `kid`s costing at most one fetch per
//! cool-down; known keys outliving the provider.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::oidc::{OidcClient, OidcProvider};

use crate::harness::{Platform, assert_revoked_within_a_second, forge_es256, now, part};

const RESOURCE: &str = "https://api.logicore.test";
const ELSEWHERE: &str = "https://elsewhere.test";

fn client(id: &str, roles: &[&str], ttl: u64) -> OidcClient {
    OidcClient {
        id: id.into(),
        secret: format!("{id}-secret-0123456789"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        token_ttl_secs: ttl,
    }
}

fn clients() -> Vec<OidcClient> {
    vec![
        client("warehouse", &["warehouse-admin"], 300),
        client("carrier", &["carrier"], 300),
        client("stranger", &["visitor"], 300),
        client("brief", &["carrier"], 1),
    ]
}

/// `[[auth.issuers]]` trusting `provider` for [`RESOURCE`], Keycloak-style nested roles.
fn trusting(provider: &OidcProvider) -> String {
    json!([{
        "issuer": provider.issuer(),
        "audiences": [RESOURCE],
        "roles_claim": "realm_access.roles",
        "role_map": {"warehouse-admin": "manager", "carrier": "dispatcher"},
    }])
    .to_string()
}

/// Claims the provider would sign for `warehouse`, for forgeries.
fn provider_claims(provider: &OidcProvider) -> Value {
    json!({
        "iss": provider.issuer(), "aud": RESOURCE, "sub": "warehouse",
        "iat": now(), "exp": now() + 300,
        "realm_access": {"roles": ["warehouse-admin"]},
    })
}

#[tokio::test]
async fn provider_tokens_pass_with_mapped_roles_and_wrong_ones_are_refused() {
    let provider = OidcProvider::start(clients(), &[RESOURCE, ELSEWHERE]).await;
    let platform = Platform::start(&[("LOGICORE_AUTH__ISSUERS", trusting(&provider))]).await;
    let users_list = platform.gateway.url("/api/v1/users");
    let products = "/api/v1/inventory/products";

    // warehouse-admin maps to manager: the manager-only user list passes at the gateway (its RBAC rule)
    // and in the users service (which re-reads the account made just in time).
    let warehouse = provider.token("warehouse", RESOURCE).await;
    let (status, body) = platform.get(&users_list, &warehouse).await;
    assert_eq!(status, 200, "{body}");
    for url in [
        platform.gateway.url(products),
        platform.inventory.url(products),
    ] {
        let (status, body) = platform.get(&url, &warehouse).await;
        assert_eq!(status, 200, "{url}: {body}");
    }
    let (status, me) = platform
        .get(&platform.gateway.url("/api/v1/users/me"), &warehouse)
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "manager");
    assert!(
        me["email"]
            .as_str()
            .is_some_and(|e| e.ends_with("@identity.invalid")),
        "the provider sends no email, so a placeholder is stored: {me}"
    );
    // A later token of the same subject is the same LogiCore user.
    let again = provider.token("warehouse", RESOURCE).await;
    let (_, me_again) = platform
        .get(&platform.gateway.url("/api/v1/users/me"), &again)
        .await;
    assert_eq!(me_again["id"], me["id"]);

    // carrier maps to dispatcher: reads pass, the manager-only list does not.
    let carrier = provider.token("carrier", RESOURCE).await;
    assert_eq!(
        platform
            .get(&platform.inventory.url(products), &carrier)
            .await
            .0,
        200
    );
    assert_eq!(platform.get(&users_list, &carrier).await.0, 403);

    // No role maps and the issuer has no default: refused, saying why.
    let stranger = provider.token("stranger", RESOURCE).await;
    for url in [
        platform.gateway.url(products),
        platform.inventory.url(products),
    ] {
        let (status, body) = platform.get(&url, &stranger).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("ROLE_NOT_MAPPED")),
            "{url}: {body}"
        );
    }

    // A token for another audience, of an untrusted issuer, or signed by a key the provider does not
    // publish (with the provider's own kid, or an unknown one) is refused everywhere.
    let elsewhere = provider.token("warehouse", ELSEWHERE).await;
    let untrusted_provider = OidcProvider::start(clients(), &[RESOURCE]).await;
    let untrusted = untrusted_provider.token("warehouse", RESOURCE).await;
    let provider_kid = provider.kids()[0].clone();
    let wrong_key = forge_es256(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": provider_kid}),
        &provider_claims(&provider),
    );
    let unknown_kid = forge_es256(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "not-published"}),
        &provider_claims(&provider),
    );
    for (what, token) in [
        ("wrong audience", &elsewhere),
        ("untrusted issuer", &untrusted),
        ("unpublished key", &wrong_key),
        ("unknown kid", &unknown_kid),
    ] {
        for url in [
            platform.gateway.url(products),
            platform.inventory.url(products),
        ] {
            let (status, body) = platform.get(&url, token).await;
            assert_eq!(status, 401, "{what} at {url}: {body}");
        }
    }

    // Revocation applies to external users too: deactivating the one made just in time refuses its current
    // tokens everywhere within a second, and the provider's next token as well.
    let admin = platform.admin_token().await;
    let user = me["id"].as_str().unwrap_or_default();
    let (status, _) = platform
        .call(
            reqwest::Method::DELETE,
            &platform.gateway.url(&format!("/api/v1/users/{user}")),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let reads = [
        platform.gateway.url(products),
        platform.inventory.url(products),
    ];
    assert_revoked_within_a_second(&platform, &warehouse, &reads, Instant::now()).await;
    let next = provider.token("warehouse", RESOURCE).await;
    for url in [
        platform.gateway.url(products),
        platform.inventory.url(products),
    ] {
        let (status, body) = platform.get(&url, &next).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("TOKEN_REVOKED")),
            "a new token of a deactivated user at {url}: {body}"
        );
    }

    // A token that expires (1 s, plus the 5 s clock leeway) passes until then and is refused after.
    let brief = provider.token("brief", RESOURCE).await;
    let exp = part(&brief, 1)["exp"].as_i64().unwrap_or_default();
    assert_eq!(
        platform
            .get(&platform.inventory.url(products), &brief)
            .await
            .0,
        200
    );
    testkit::eventually(
        "the expired token refused",
        Duration::from_secs(15),
        || async {
            let (status, body) = platform
                .get(&platform.inventory.url(products), &brief)
                .await;
            (status == 401).then_some(body)
        },
    )
    .await;
    assert!(now() > exp + 5, "refused only after exp plus the leeway");
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_a_kid_storm_once_per_cooldown_and_known_keys_outlive_the_provider()
 {
    const COOLDOWN: Duration = Duration::from_millis(2_000);
    let mut provider = OidcProvider::start(clients(), &[RESOURCE]).await;
    let platform = Platform::start(&[
        ("LOGICORE_AUTH__ISSUERS", trusting(&provider)),
        (
            "LOGICORE_AUTH__JWKS_REFRESH_COOLDOWN_MS",
            COOLDOWN.as_millis().to_string(),
        ),
    ])
    .await;
    let products = platform.inventory.url("/api/v1/inventory/products");
    let through_gateway = platform.gateway.url("/api/v1/inventory/products");
    let first = provider.token("warehouse", RESOURCE).await;
    assert_eq!(platform.get(&products, &first).await.0, 200);

    // Rotation: the first token of the new key makes each verifier that meets it fetch once (the
    // inventory service, and the users service registering the caller), after its cool-down.
    let before = provider.jwks_requests().await;
    let new_kid = provider.rotate().await;
    let rotated = provider.token("warehouse", RESOURCE).await;
    assert_eq!(part(&rotated, 0)["kid"], new_kid);
    testkit::eventually(
        "the new key's token accepted",
        Duration::from_secs(10),
        || async { (platform.get(&products, &rotated).await.0 == 200).then_some(()) },
    )
    .await;
    let fetched = provider.jwks_requests().await - before;
    assert!(
        (1..=2).contains(&fetched),
        "{fetched} fetches for one new key"
    );
    let another = provider.token("warehouse", RESOURCE).await;
    assert_eq!(platform.get(&products, &another).await.0, 200);
    assert_eq!(
        provider.jwks_requests().await - before,
        fetched,
        "a known kid is never fetched again"
    );

    // A storm of forged kids at one service: once its cool-down has passed, one fetch, then none for
    // the rest of the cool-down however many arrive.
    let forged = |kid: String| {
        forge_es256(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
            &provider_claims(&provider),
        )
    };
    let probe_start = provider.jwks_requests().await;
    let mut probe = 0;
    testkit::eventually(
        "a forged kid to make a fetch",
        Duration::from_secs(10),
        || {
            probe += 1;
            let token = forged(format!("probe-{probe}"));
            let platform = &platform;
            let provider = &provider;
            let products = &products;
            async move {
                assert_eq!(platform.get(products, &token).await.0, 401);
                (provider.jwks_requests().await > probe_start).then_some(())
            }
        },
    )
    .await;
    let storm_start = Instant::now();
    let counted = provider.jwks_requests().await;
    let storm = (0..100).map(|i| {
        let token = forged(format!("storm-{i}-{}", uuid::Uuid::now_v7()));
        let platform = &platform;
        let products = &products;
        async move { platform.get(products, &token).await.0 }
    });
    let statuses = futures::future::join_all(storm).await;
    assert!(statuses.iter().all(|status| *status == 401), "{statuses:?}");
    let elapsed = storm_start.elapsed();
    let allowed = (elapsed.as_millis() / COOLDOWN.as_millis()) as u64;
    let during = provider.jwks_requests().await - counted;
    assert!(
        during <= allowed,
        "{during} fetches for 100 unknown kids in {elapsed:?} (cool-down {COOLDOWN:?})"
    );

    // The provider stops: tokens of keys already held keep working, a token seen before and one never
    // seen alike. The gateway meets the new key first (its own fetch, while the provider is up).
    testkit::eventually(
        "the gateway to hold the new key",
        Duration::from_secs(10),
        || async { (platform.get(&through_gateway, &another).await.0 == 200).then_some(()) },
    )
    .await;
    let unseen = provider.token("warehouse", RESOURCE).await;
    provider.stop().await;
    for token in [&another, &unseen] {
        for url in [&products, &through_gateway] {
            let (status, body) = platform.get(url, token).await;
            assert_eq!(status, 200, "{url} with the provider down: {body}");
        }
    }
}
