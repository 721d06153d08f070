//! argon2id hashing. Hashing is deliberately slow CPU work, so it always runs on the blocking pool and
//! never stalls the async workers that serve other requests.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::domain::Password;
use crate::error::UsersError;

/// A hash with `Argon2::default()` parameters of a password nobody knows. Logins for unknown emails verify
/// against it, so they cost the same time as logins with a wrong password and do not reveal which emails
/// have accounts.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$5Ms3gdOhKNy6QJC5bmRhtg$1WFyKb3nHJhLXH0xp+zUTq6nU8yb1ECWxWZOHv2iRkY";

/// The stored hash of accounts that cannot sign in with a password (external users): nobody knows its
/// password.
pub const UNUSABLE_HASH: &str = DUMMY_HASH;

/// Hashes a password into a PHC string with a fresh random salt.
pub async fn hash(password: &Password) -> Result<String, UsersError> {
    let password = password.clone();
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        Argon2::default()
            .hash_password(password.expose().as_bytes())
            .map(|hash| hash.to_string())
    })
    .await?
    .map_err(UsersError::from)
}

/// Whether `password` matches `stored`; with no stored hash, burns the same time and answers no.
pub async fn verify(password: &str, stored: Option<&str>) -> Result<bool, UsersError> {
    let known = stored.is_some();
    let stored = stored.unwrap_or(DUMMY_HASH).to_owned();
    let password = password.to_owned();
    let span = tracing::Span::current();
    let outcome = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        Argon2::default().verify_password(password.as_bytes(), stored.as_str())
    })
    .await?;
    match outcome {
        Ok(()) => Ok(known),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(other) => Err(other.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::phc::PasswordHash;

    #[test]
    fn the_dummy_hash_uses_the_default_parameters() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap_or_else(|e| panic!("{e}"));
        let defaults = argon2::Params::default();
        let params = argon2::Params::try_from(&parsed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(params.m_cost(), defaults.m_cost());
        assert_eq!(params.t_cost(), defaults.t_cost());
        assert_eq!(params.p_cost(), defaults.p_cost());
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let password =
            Password::parse("correct horse 42", None).unwrap_or_else(|e| panic!("{e:?}"));
        let stored = hash(&password).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            verify("correct horse 42", Some(&stored))
                .await
                .unwrap_or(false)
        );
        assert!(
            !verify("correct horse 43", Some(&stored))
                .await
                .unwrap_or(true)
        );
    }

    #[tokio::test]
    async fn unknown_accounts_never_verify() {
        assert!(!verify("anything 1234", None).await.unwrap_or(true));
    }
}
