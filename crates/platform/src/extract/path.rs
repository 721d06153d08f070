//! Path parameters with the same rejections as every other input: a malformed id, a number that is not one,
//! invalid UTF-8 or a NUL in a segment is a 422 `VALIDATION_FAILED` naming the route's parameter, in every
//! service alike, instead of axum's plain-text 400 or a service's own 404.

use axum::extract::path::ErrorKind;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{text, wording};
use crate::problem::{FieldError, Problem};

/// The route's parameters deserialized into `T`: `Path<Uuid>` for `/orders/{id}`, `Path<(Uuid, u32)>` or a
/// struct for several.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let parsed = axum::extract::Path::<T>::from_request_parts(parts, state).await;
        // Invalid UTF-8 fails both extractors; every other rejection leaves the raw parameters readable.
        let raw = RawPathParams::from_request_parts(parts, state).await.ok();
        let raw: Vec<(&str, &str)> = raw.iter().flat_map(|params| params.iter()).collect();
        let mut errors = Vec::new();
        for (key, value) in &raw {
            if let Err(error) = text::check(key, value) {
                errors.push(error);
            }
        }
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        match parsed {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(rejected(rejection, &raw)),
        }
    }
}

fn rejected(rejection: PathRejection, raw: &[(&str, &str)]) -> Problem {
    let PathRejection::FailedToDeserializePathParams(failure) = &rejection else {
        return misuse(&rejection);
    };
    // Only a single parameter deserialized as a whole leaves its key out of the error.
    let only_key = || match raw {
        [(key, _)] => (*key).to_owned(),
        _ => String::new(),
    };
    let (field, code, message) = match failure.kind() {
        ErrorKind::ParseErrorAtKey {
            key, expected_type, ..
        } => (
            key.clone(),
            "INVALID_FORMAT",
            wording::expectation(expected_type),
        ),
        ErrorKind::ParseErrorAtIndex {
            index,
            expected_type,
            ..
        } => {
            let key = raw
                .get(*index)
                .map(|(key, _)| (*key).to_owned())
                .unwrap_or_default();
            (key, "INVALID_FORMAT", wording::expectation(expected_type))
        }
        ErrorKind::ParseError { expected_type, .. } => (
            only_key(),
            "INVALID_FORMAT",
            wording::expectation(expected_type),
        ),
        ErrorKind::DeserializeError { key, message, .. } => {
            (key.clone(), "INVALID_FORMAT", wording::describe(message))
        }
        ErrorKind::InvalidUtf8InPathParam { key } => (
            key.clone(),
            "INVALID_ENCODING",
            "must be UTF-8 text once percent-decoded".to_owned(),
        ),
        _ => return misuse(&rejection),
    };
    Problem::validation(vec![FieldError::new(field, code, message)])
}

/// A route whose parameters cannot fit `T` at all: the code's mistake, not the client's.
fn misuse(rejection: &PathRejection) -> Problem {
    tracing::error!(error = %rejection, "path parameters do not fit the handler's extractor");
    Problem::internal()
}
