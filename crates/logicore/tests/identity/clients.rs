//! OAuth2 machine clients: an admin creates one (its secret shown once), it gets short-lived tokens at
//! `POST /oauth/token` that its scopes confine to their routes (at the gateway and in each service),
//! rotating its secret refuses the old one, and revoking it refuses its tokens within a second.

use std::time::Instant;

use serde_json::{Value, json};

use crate::harness::{PASSWORD, Platform, access_token, assert_revoked_within_a_second, part};

#[tokio::test]
async fn clients_get_scoped_tokens_that_rotation_and_revocation_end() {
    let platform = Platform::start(&[]).await;
    let admin = platform.admin_token().await;
    let clients = platform.gateway.url("/api/v1/clients");
    let post = |url: String, token: String, body: Value| {
        let platform = &platform;
        async move {
            platform
                .call(reqwest::Method::POST, &url, Some(&token), Some(body))
                .await
        }
    };

    // Only admins, only known scopes, only clean names.
    let (status, customer) = platform
        .call(
            reqwest::Method::POST,
            &platform.gateway.url("/api/v1/auth/register"),
            None,
            Some(json!({"email": "shopper@identity.test", "password": PASSWORD, "full_name": "Shopper"})),
        )
        .await;
    assert_eq!(status, 201, "{customer}");
    let (status, _) = post(
        clients.clone(),
        access_token(&customer),
        json!({"name": "x", "scopes": ["inventory:read"]}),
    )
    .await;
    assert_eq!(status, 403);
    let (status, invalid) = post(
        clients.clone(),
        admin.clone(),
        json!({"name": "   ", "scopes": ["admin"]}),
    )
    .await;
    assert_eq!(status, 422, "{invalid}");
    let fields: Vec<&str> = invalid["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert_eq!(fields, vec!["name", "scopes[0]"], "{invalid}");

    let (status, created) = post(
        clients.clone(),
        admin.clone(),
        json!({"name": "Warehouse sync", "scopes": ["inventory:write"]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let secret = created["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(secret.starts_with("lcs_") && secret.len() > 40, "{created}");
    let (status, listed) = platform.get(&clients, &admin).await;
    assert_eq!(status, 200);
    let entry = listed
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == json!(id))
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["scopes"], json!(["inventory:write"]));
    assert!(
        entry.get("client_secret").is_none(),
        "the secret is shown once only: {entry}"
    );

    // Tokens: form credentials or Basic; wrong secret, grant or scope refused in OAuth's terms.
    let grant = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", secret.as_str()),
    ];
    let (status, issued, cache) = platform.token_request(&grant, None).await;
    assert_eq!(status, 200, "{issued}");
    assert_eq!(
        (
            issued["token_type"].as_str(),
            issued["scope"].as_str(),
            issued["expires_in"].as_u64()
        ),
        (Some("Bearer"), Some("inventory:write"), Some(300))
    );
    assert_eq!(cache, "no-store");
    let token = issued["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(part(&token, 1)["sub"], json!(id));
    let (status, _, _) = platform
        .token_request(
            &[("grant_type", "client_credentials")],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(status, 200, "Basic authentication");
    for (form, expected_status, error) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", "lcs_wrong"),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", "orders:read"),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("grant_type", "client_credentials"),
            ],
            400,
            "invalid_request",
        ),
    ] {
        let (status, body, _) = platform.token_request(&form, None).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (expected_status, Some(error)),
            "{form:?}: {body}"
        );
        assert_eq!(body["code"], error.to_ascii_uppercase());
    }

    // The scope opens inventory writes (a manager's) and nothing else, at the gateway and in the services.
    let warehouse = json!({"code": "SYNC-1", "name": "Synced", "address": "1 Dock Road"});
    let (status, body) = post(
        platform.gateway.url("/api/v1/inventory/warehouses"),
        token.clone(),
        warehouse,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    for url in [
        platform.gateway.url("/api/v1/inventory/stock-levels"),
        platform.inventory.url("/api/v1/inventory/stock-levels"),
    ] {
        assert_eq!(platform.get(&url, &token).await.0, 200, "{url}");
    }
    for url in [
        platform.gateway.url("/api/v1/orders"),
        platform.orders.url("/api/v1/orders"),
        platform.gateway.url("/api/v1/users/me"),
        platform.users.url("/api/v1/users/me"),
    ] {
        let (status, body) = platform.get(&url, &token).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("INSUFFICIENT_SCOPE")),
            "{url}: {body}"
        );
    }

    // Rotation: the old secret is refused at once, the new one works.
    let (status, rotated) = post(format!("{clients}/{id}/secret"), admin.clone(), json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["client_secret"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(
        platform.token_request(&grant, None).await.0,
        401,
        "the old secret"
    );
    let renewed = [
        ("grant_type", "client_credentials"),
        ("client_id", id.as_str()),
        ("client_secret", new_secret.as_str()),
    ];
    let (status, body, _) = platform.token_request(&renewed, None).await;
    assert_eq!(status, 200, "{body}");

    // Revocation: its tokens are refused everywhere within a second, and it gets no new ones.
    let stock = [
        platform.gateway.url("/api/v1/inventory/stock-levels"),
        platform.inventory.url("/api/v1/inventory/stock-levels"),
    ];
    let (status, _) = platform
        .call(
            reqwest::Method::DELETE,
            &format!("{clients}/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_revoked_within_a_second(&platform, &token, &stock, Instant::now()).await;
    assert_eq!(
        platform.token_request(&renewed, None).await.0,
        401,
        "a revoked client"
    );
    let (_, revoked) = platform.get(&format!("{clients}/{id}"), &admin).await;
    assert_eq!(revoked["status"], "revoked");
}
