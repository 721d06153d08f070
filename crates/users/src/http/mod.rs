//! HTTP handlers: parse the request, call the domain, shape the response. Every error is a `UsersError`
//! or an extractor's `Problem`, so every error body is problem+json.

pub mod admin;
pub mod auth;
pub mod internal;
pub mod me;

/// The collection users live in: a new user's `Location` is this plus its id.
pub(crate) const USERS: &str = "/api/v1/users";
