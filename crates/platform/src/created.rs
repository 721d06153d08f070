//! `201 Created` answers name what they created in `Location` (RFC 9110 §15.3.2), so a client can fetch it
//! without knowing how URLs are built. The path is relative to the API's origin: the same through the gateway
//! and at a service directly.
//!
//! Every service builds the header here. A create that is replayed from a stored body (an `Idempotency-Key`,
//! or a reservation repeated for the same order) derives its `Location` from that body with
//! [`location_of_body`], so the replay names the same resource as the original answer.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use uuid::Uuid;

/// The path of the resource `id` in `collection`, e.g. `/api/v1/orders/{id}`.
pub fn location(collection: &str, id: Uuid) -> String {
    format!("{collection}/{id}")
}

/// The path of the resource a JSON body describes by its `id` field, in `collection`; `None` when the body
/// has no UUID `id`.
pub fn location_of_body(collection: &str, body: &serde_json::Value) -> Option<String> {
    let id = body.get("id")?.as_str()?;
    Uuid::parse_str(id).ok().map(|id| location(collection, id))
}

/// Sets `Location: path`. Paths built by [`location`] are always valid header values; anything else that is
/// not is left out rather than sent mangled.
pub fn set_location(headers: &mut HeaderMap, path: &str) {
    if let Ok(value) = HeaderValue::from_str(path) {
        headers.insert(header::LOCATION, value);
    }
}

/// A `201 Created` JSON answer with its `Location`.
#[derive(Debug, Clone)]
pub struct Created<T> {
    pub location: String,
    pub body: T,
}

impl<T> Created<T> {
    /// The resource `id` of `collection`, answered with `body`.
    pub fn new(collection: &str, id: Uuid, body: T) -> Self {
        Self {
            location: location(collection, id),
            body,
        }
    }
}

impl<T: Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let mut response = (StatusCode::CREATED, axum::Json(self.body)).into_response();
        set_location(response.headers_mut(), &self.location);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_created_answer_names_the_resource_in_location() {
        let id = Uuid::now_v7();
        let response = Created::new("/api/v1/orders", id, json!({"id": id})).into_response();
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(
            response.headers().get(header::LOCATION),
            Some(&HeaderValue::from_str(&format!("/api/v1/orders/{id}")).expect("a header value"))
        );
    }

    #[test]
    fn a_stored_body_gives_the_same_location_as_the_original() {
        let id = Uuid::now_v7();
        let body = json!({"id": id.to_string(), "status": "pending"});
        assert_eq!(
            location_of_body("/api/v1/orders", &body),
            Some(location("/api/v1/orders", id))
        );
        assert_eq!(
            location_of_body("/api/v1/orders", &json!({"id": "x"})),
            None
        );
        assert_eq!(location_of_body("/api/v1/orders", &json!({})), None);
    }
}
