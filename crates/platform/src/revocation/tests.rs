use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use uuid::Uuid;

use super::*;
use crate::auth::{JwtKeys, Role, TokenError, now_secs};
use crate::config::AuthSettings;

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn settings() -> AuthSettings {
    AuthSettings::defaults_with_secret(SECRET)
}

fn claims(user: Uuid, iat: i64) -> Claims {
    Claims {
        sub: user,
        email: "a@b.c".into(),
        role: Role::Manager,
        iat,
        exp: iat + 900,
        jti: Uuid::now_v7(),
        iss: "logicore".into(),
        scope: None,
    }
}

/// Signs arbitrary claims (with extra members) as the issuer would.
fn sign(payload: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        payload,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn payload(iat: i64, extra: Option<(&str, i64)>) -> serde_json::Value {
    let mut value = serde_json::to_value(claims(Uuid::now_v7(), iat)).unwrap_or_default();
    if let Some((key, at)) = extra {
        value[key] = at.into();
    }
    value
}

#[test]
fn a_user_revocation_refuses_tokens_issued_up_to_its_second_and_none_issued_later() {
    let set = Revocations::new();
    let user = Uuid::now_v7();
    let now = now_secs();
    let before = claims(user, now - 60);
    let same_second = claims(user, now);
    let later = claims(user, now + 1);
    let someone_else = claims(Uuid::now_v7(), now - 60);
    assert!(!set.is_revoked(&before));

    set.apply([Revocation::user(user, Duration::from_secs(900))]);
    assert!(set.is_revoked(&before));
    assert!(set.is_revoked(&same_second));
    assert!(!set.is_revoked(&later));
    assert!(!set.is_revoked(&someone_else));
    assert_eq!(set.first_valid_iat(user, now), now + 1);
    assert_eq!(set.first_valid_iat(someone_else.sub, now), now);
}

#[test]
fn a_token_revocation_refuses_that_token_only_and_entries_merge_to_the_latest() {
    let set = Revocations::new();
    let user = Uuid::now_v7();
    let logged_out = claims(user, now_secs());
    let other_session = claims(user, now_secs());
    set.apply([Revocation::token(&logged_out)]);
    assert!(set.is_revoked(&logged_out));
    assert!(!set.is_revoked(&other_session));

    let older = Revocation::User {
        user_id: user,
        issued_up_to: now_secs() - 100,
        keep_until: now_secs() + 100,
    };
    let newer = Revocation::User {
        user_id: user,
        issued_up_to: now_secs() - 10,
        keep_until: now_secs() + 100,
    };
    set.apply([newer, older]);
    assert!(set.is_revoked(&claims(user, now_secs() - 50)));
}

#[test]
fn expired_revocations_are_not_kept() {
    let set = Revocations::new();
    let user = Uuid::now_v7();
    set.apply([Revocation::User {
        user_id: user,
        issued_up_to: now_secs(),
        keep_until: now_secs() - 1,
    }]);
    assert!(!set.is_revoked(&claims(user, now_secs() - 10)));
}

#[test]
fn revocations_travel_as_tagged_json() {
    let revocation = Revocation::user(Uuid::nil(), Duration::from_secs(60));
    let text = serde_json::to_string(&revocation).unwrap_or_default();
    assert!(text.contains(r#""kind":"user""#), "{text}");
    assert_eq!(
        serde_json::from_str::<Revocation>(&text).ok(),
        Some(revocation)
    );
}

#[tokio::test]
async fn a_verified_and_cached_token_is_refused_once_revoked() {
    let keys = JwtKeys::new(&settings());
    let (token, claims) = keys
        .issue(Uuid::now_v7(), "a@b.c", Role::Manager)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(keys.verify(&token).await.is_ok());
    assert!(
        keys.verify(&token).await.is_ok(),
        "second check, from the cache"
    );

    keys.revocations()
        .apply([Revocation::user(claims.sub, Duration::from_secs(900))]);
    assert!(matches!(
        keys.verify(&token).await,
        Err(TokenError::Revoked)
    ));

    let (fresh, fresh_claims) = keys
        .issue(claims.sub, "a@b.c", Role::Customer)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(fresh_claims.iat > claims.iat);
    assert_eq!(keys.verify(&fresh).await.ok(), Some(fresh_claims));
}

#[tokio::test]
async fn a_logged_out_token_is_refused_and_the_other_sessions_are_not() {
    let keys = JwtKeys::new(&settings());
    let user = Uuid::now_v7();
    let (phone, phone_claims) = keys
        .issue(user, "a@b.c", Role::Driver)
        .unwrap_or_else(|e| panic!("{e}"));
    let (laptop, _) = keys
        .issue(user, "a@b.c", Role::Driver)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(keys.verify(&phone).await.is_ok());
    keys.revocations().apply([Revocation::token(&phone_claims)]);
    assert!(matches!(
        keys.verify(&phone).await,
        Err(TokenError::Revoked)
    ));
    assert!(keys.verify(&laptop).await.is_ok());
}

#[tokio::test]
async fn tokens_issued_or_valid_only_in_the_future_beyond_the_leeway_are_refused() {
    let keys = JwtKeys::new(&settings());
    let now = now_secs();
    let future_iat = sign(&payload(now + 60, None));
    assert!(matches!(
        keys.verify(&future_iat).await,
        Err(TokenError::NotYetValid)
    ));
    let future_nbf = sign(&payload(now, Some(("nbf", now + 60))));
    assert!(matches!(
        keys.verify(&future_nbf).await,
        Err(TokenError::NotYetValid)
    ));

    let within_leeway = sign(&payload(now + 2, Some(("nbf", now + 2))));
    assert!(keys.verify(&within_leeway).await.is_ok());

    let problem = keys
        .verify_bearer(Some(&format!("Bearer {future_iat}")))
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(
        (problem.status, problem.code.as_str()),
        (401, "TOKEN_NOT_YET_VALID")
    );
}
