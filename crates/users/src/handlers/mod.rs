//! HTTP handlers: parse the request, call the domain, shape the response. Every error is a `UsersError`
//! or an extractor's `Problem`, so every error body is problem+json.

pub mod admin;
pub mod auth;
pub mod internal;
pub mod me;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use platform::{FieldError, Problem};
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

/// The `{id}` of a user route. A malformed id is a 422 naming `id`, not axum's plain-text 400.
#[derive(Debug, Clone, Copy)]
pub struct UserId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for UserId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| Problem::bad_request("BAD_REQUEST", "the path is malformed"))?;
        Uuid::parse_str(&raw).map(UserId).map_err(|_| {
            Problem::validation(vec![FieldError::new(
                "id",
                "INVALID_FORMAT",
                "must be a UUID",
            )])
        })
    }
}

/// Tells an absent field (`None`: leave it) from an explicit `null` (`Some(None)`: clear it).
pub(crate) fn absent_or_nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
