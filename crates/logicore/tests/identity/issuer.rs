//! LogiCore as an issuer: its discovery document and JWKS, tokens verified everywhere with its public key
//! alone, forgeries refused (`alg: none`, HS256 with the public key as the secret, injected `kid`s), and
//! a key rotation that logs nobody out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{ADMIN_EMAIL, Platform, access_token, forge_es256, forge_hs256, now, part};

/// Every read the admin may make, at the gateway and at each service directly.
fn reads(platform: &Platform) -> Vec<String> {
    [
        (&platform.users, "/api/v1/users/me"),
        (&platform.inventory, "/api/v1/inventory/products"),
        (&platform.orders, "/api/v1/orders"),
    ]
    .iter()
    .flat_map(|(server, path)| [platform.gateway.url(path), server.url(path)])
    .collect()
}

async fn assert_everywhere(platform: &Platform, token: &str, expected: u16, what: &str) {
    for url in reads(platform) {
        let (status, body) = platform.get(&url, token).await;
        assert_eq!(status, expected, "{what} at {url}: {body}");
    }
}

async fn jwks(platform: &Platform) -> Value {
    let response = testkit::client()
        .get(platform.gateway.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/jwk-set+json")
    );
    testkit::json(response).await
}

#[tokio::test]
async fn tokens_verify_with_the_published_key_alone_and_forgeries_are_refused() {
    let platform = Platform::start(&[]).await;
    let (status, discovery) = platform
        .call(
            reqwest::Method::GET,
            &platform.gateway.url("/.well-known/openid-configuration"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200, "{discovery}");
    assert_eq!(discovery["issuer"], "logicore");
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    assert_eq!(
        discovery["grant_types_supported"],
        json!(["client_credentials"])
    );
    for endpoint in ["jwks_uri", "token_endpoint"] {
        assert!(
            discovery[endpoint]
                .as_str()
                .is_some_and(|url| url.starts_with("http://")),
            "{discovery}"
        );
    }
    let set = jwks(&platform).await;
    let keys = set["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1, "{set}");
    let key = &keys[0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["crv"].as_str(),
            key["alg"].as_str(),
            key["use"].as_str()
        ),
        (Some("EC"), Some("P-256"), Some("ES256"), Some("sig"))
    );
    assert!(
        key.get("d").is_none(),
        "no private part is published: {key}"
    );

    let login = platform.login(ADMIN_EMAIL).await;
    let token = access_token(&login);
    let header = part(&token, 0);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("ES256"), Some("at+jwt"))
    );
    assert_eq!(header["kid"], key["kid"]);
    let id_token = login["id_token"].as_str().unwrap_or_default();
    assert_eq!(part(id_token, 1)["aud"], "logicore");
    assert_eq!(part(id_token, 1)["email"], ADMIN_EMAIL);
    // Anyone can check the signature with the published key; nothing else is needed.
    let jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(key.clone()).unwrap_or_else(|e| panic!("{e}"));
    let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap_or_else(|e| panic!("{e}"));
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&["logicore"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_ok());
    assert_everywhere(&platform, &token, 200, "the admin's token").await;
    // An ID token is not an access token.
    assert_everywhere(&platform, id_token, 401, "an ID token").await;

    let claims = part(&token, 1);
    let kid = key["kid"].as_str().unwrap_or_default();
    let unsigned = format!(
        "{}.{}.",
        base64_url(&json!({"alg": "none", "typ": "at+jwt", "kid": kid})),
        base64_url(&claims)
    );
    let hs256_header = json!({"alg": "HS256", "typ": "at+jwt", "kid": kid});
    let public_as_secret = forge_hs256(&hs256_header, &claims, key.to_string().as_bytes());
    let x_as_secret = forge_hs256(
        &hs256_header,
        &claims,
        key["x"].as_str().unwrap_or_default().as_bytes(),
    );
    let development_secret = forge_hs256(
        &json!({"alg": "HS256", "typ": "JWT"}),
        &claims,
        ::platform::config::DEVELOPMENT_JWT_SECRET.as_bytes(),
    );
    let mut forgeries = vec![
        ("alg none", unsigned),
        ("HS256 keyed with the public JWK", public_as_secret),
        ("HS256 keyed with the public x", x_as_secret),
        (
            "HS256 with the development secret, HS256 being off",
            development_secret,
        ),
    ];
    for injected in [
        "../../../../etc/passwd",
        "' OR '1'='1",
        "",
        &"k".repeat(8_192),
        "\u{0}",
    ] {
        let forged = forge_es256(
            &json!({"alg": "ES256", "typ": "at+jwt", "kid": injected}),
            &claims,
        );
        forgeries.push(("an injected kid", forged));
    }
    let future = forge_es256(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": kid}),
        &json!({"sub": claims["sub"], "role": "admin", "iss": "logicore", "iat": now(), "exp": now() + 60, "jti": claims["jti"]}),
    );
    forgeries.push(("a real kid and another key", future));
    for (what, forged) in &forgeries {
        assert_everywhere(&platform, forged, 401, what).await;
    }
    // The refusals cost nothing of the real token.
    assert_everywhere(
        &platform,
        &token,
        200,
        "the admin's token after the forgeries",
    )
    .await;
}

#[tokio::test]
async fn a_rotated_key_is_published_before_it_signs_and_nobody_is_logged_out() {
    let platform = Platform::start(&[
        ("LOGICORE_AUTH__KEY_PUBLISH_LEAD_SECS", "1".to_owned()),
        ("LOGICORE_AUTH__JWKS_REFRESH_COOLDOWN_MS", "200".to_owned()),
    ])
    .await;
    let old_token = platform.admin_token().await;
    let old_kid = part(&old_token, 0)["kid"].clone();
    assert_everywhere(&platform, &old_token, 200, "the token before rotation").await;

    let new_kid = users::rotate_signing_key(&platform.users_config)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let published =
        testkit::eventually("the new key published", Duration::from_secs(5), || async {
            let set = jwks(&platform).await;
            let kids: Vec<Value> = set["keys"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|k| k["kid"].clone())
                .collect();
            (kids.len() == 2).then_some(kids)
        })
        .await;
    assert!(
        published.contains(&json!(new_kid)) && published.contains(&old_kid),
        "{published:?}"
    );
    let new_token = testkit::eventually("the new key to sign", Duration::from_secs(10), || async {
        let token = platform.admin_token().await;
        (part(&token, 0)["kid"] == json!(new_kid)).then_some(token)
    })
    .await;
    assert_everywhere(&platform, &new_token, 200, "the new key's token").await;
    assert_everywhere(
        &platform,
        &old_token,
        200,
        "the old key's token, still valid",
    )
    .await;
    let set = jwks(&platform).await;
    assert_eq!(
        set["keys"].as_array().map(Vec::len),
        Some(2),
        "the old key stays until its tokens expire"
    );
}

fn base64_url(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}
