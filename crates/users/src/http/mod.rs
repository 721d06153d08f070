//! HTTP handlers: parse the request, call the domain, shape the response. Every error is a `UsersError`
//! or an extractor's `Problem`, so every error body is problem+json.

pub mod admin;
pub mod auth;
pub mod internal;
pub mod me;

use serde::{Deserialize, Deserializer};

/// The collection users live in: a new user's `Location` is this plus its id.
pub(crate) const USERS: &str = "/api/v1/users";

/// Tells an absent field (`None`: leave it) from an explicit `null` (`Some(None)`: clear it).
pub(crate) fn absent_or_nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
