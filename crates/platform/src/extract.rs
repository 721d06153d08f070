//! Request extractors whose every rejection is a problem+json response naming the field at fault.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use crate::problem::{FieldError, Problem};

mod path;
mod text;
pub mod timestamp;
mod wording;

pub use path::Path;

/// Checks beyond what the type system says: lengths, formats, ranges.
pub trait Validate {
    fn validate(&self) -> Result<(), Vec<FieldError>>;
}

/// Free-form JSON documents (preferences) are stored as PostgreSQL `jsonb`, which keeps a number as an exact
/// decimal: one as large as `1e308` is written out in 309 digits that JSON parsers cannot read back into a
/// double, so the stored document could never be served again. Such magnitudes are refused on the way in.
pub const LARGEST_DOCUMENT_NUMBER: f64 = 1e100;

impl Validate for serde_json::Map<String, serde_json::Value> {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        for (key, value) in self {
            oversized_numbers(value, key, &mut errors);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn oversized_numbers(value: &serde_json::Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        serde_json::Value::Number(number)
            if number
                .as_f64()
                .is_none_or(|n| n.abs() >= LARGEST_DOCUMENT_NUMBER) =>
        {
            errors.push(FieldError::new(
                path,
                "OUT_OF_RANGE",
                "must be a number of magnitude below 1e100",
            ));
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                oversized_numbers(item, &format!("{path}[{index}]"), errors);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, field) in fields {
                oversized_numbers(field, &format!("{path}.{key}"), errors);
            }
        }
        _ => {}
    }
}

/// For PATCH bodies, with `#[serde(default, deserialize_with = "platform::extract::nullable")]`: tells an
/// absent field (`None`: leave it) from an explicit `null` (`Some(None)`: clear it).
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// For request bodies and queries that are checked by parsing them into commands in the handler, where the
/// parsed values are needed anyway: the extractor's own check has nothing to add.
/// `platform::validated_by_parsing!(CreateOrder, OrderQuery);`
#[macro_export]
macro_rules! validated_by_parsing {
    ($($type:ty),+ $(,)?) => {
        $(impl $crate::extract::Validate for $type {
            fn validate(&self) -> Result<(), Vec<$crate::FieldError>> {
                Ok(())
            }
        })+
    };
}

/// Collects field errors: `v.check(ok, "email", "INVALID_FORMAT", "must be an email address")`.
#[derive(Debug, Default)]
pub struct Validator {
    errors: Vec<FieldError>,
}

impl Validator {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn check(&mut self, ok: bool, field: &str, code: &str, message: &str) -> &mut Self {
        if !ok {
            self.errors.push(FieldError::new(field, code, message));
        }
        self
    }

    pub fn push(&mut self, error: FieldError) -> &mut Self {
        self.errors.push(error);
        self
    }

    pub fn finish(&mut self) -> Result<(), Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(std::mem::take(&mut self.errors))
        }
    }
}

/// A JSON body, deserialized then validated. 415 without a JSON content type, 413 over the body limit,
/// 400 when it is not JSON, 422 with the field path when a field is missing, mistyped or invalid.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&request) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "the body must be JSON with content-type application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(bytes_rejection)?;
        let value = parse_json::<T>(&bytes)?;
        value.validate().map_err(Problem::validation)?;
        Ok(Json(value))
    }
}

fn has_json_content_type(request: &Request) -> bool {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return false;
    };
    let Ok(text) = content_type.to_str() else {
        return false;
    };
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn bytes_rejection(rejection: BytesRejection) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            "the request body is larger than this endpoint accepts",
        )
    } else {
        Problem::bad_request("BAD_REQUEST", "the request body could not be read")
    }
}

/// Parses JSON, telling syntax errors (400) from errors in the data (422 with the field path, in the API's
/// words), and refusing text no database can store wherever it is in the body, keys included.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if let Some(error) = text::nul_in_json(bytes) {
        return Err(Problem::validation(vec![error]));
    }
    // Every request body of the API is an object. serde would also fill a struct from an array of its
    // fields in order (`[null, null]` as an all-optional patch), which no client means.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Problem::validation(vec![FieldError::new(
            "",
            "INVALID_TYPE",
            "must be an object",
        )]));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => {
            deserializer.end().map_err(|e| {
                Problem::bad_request("MALFORMED_JSON", format!("the body is not valid JSON: {e}"))
            })?;
            return Ok(value);
        }
        Err(error) => error,
    };
    // JSON does not tell `3` from `3.0`, and JSON Schema calls both integers; serde does not. A body that
    // failed on its data is read again with its integral decimals (`3.0`, `1e3`) as integers, if it has any.
    let retried = (error.inner().classify() == serde_json::error::Category::Data)
        .then(|| integral_numbers_as_integers(bytes))
        .flatten()
        .map(serde_path_to_error::deserialize);
    let error = match retried {
        Some(Ok(value)) => return Ok(value),
        Some(Err(retry_error)) => retry_error,
        None => error,
    };
    let path = error.path().to_string();
    Err(json_problem(path, error.into_inner()))
}

/// Integers up to 2^53 in magnitude: every one is exactly a double, so `3.0` can only have meant `3`.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// The document with every decimal-written integral number (`3.0`, `1e3`) turned into an integer, or `None`
/// when it has none (or is not JSON).
fn integral_numbers_as_integers(bytes: &[u8]) -> Option<serde_json::Value> {
    fn walk(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(number) if !number.is_i64() && !number.is_u64() => {
                match number.as_f64() {
                    Some(float) if float.fract() == 0.0 && float.abs() <= EXACT_INTEGER_LIMIT => {
                        // Exact: the magnitude is at most 2^53.
                        *value = serde_json::Value::from(float as i64);
                        true
                    }
                    _ => false,
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().fold(false, |any, item| walk(item) | any)
            }
            serde_json::Value::Object(members) => members
                .values_mut()
                .fold(false, |any, member| walk(member) | any),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then_some(value)
}

/// A data error of a JSON body as the API reports it: 422 naming the field, or 400 when it is not JSON.
fn json_problem(path: String, inner: serde_json::Error) -> Problem {
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = strip_position(&inner.to_string());
            let (field, code) = match named_field(&message) {
                Some(("missing field", name)) => (join_path(&path, name), "REQUIRED"),
                // serde_path_to_error's path already ends in the unknown field.
                Some(("unknown field", _)) => (path, "UNKNOWN_FIELD"),
                _ => (path, "INVALID_TYPE"),
            };
            let field = if field == "." { String::new() } else { field };
            Problem::validation(vec![FieldError::new(
                field,
                code,
                wording::describe(&message),
            )])
        }
        serde_json::error::Category::Eof | serde_json::error::Category::Syntax => {
            Problem::bad_request(
                "MALFORMED_JSON",
                format!("the body is not valid JSON: {inner}"),
            )
        }
        serde_json::error::Category::Io => {
            Problem::bad_request("BAD_REQUEST", "the request body could not be read")
        }
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// serde's "missing field `x`" or "unknown field `x`, …" → ("missing field", "x").
fn named_field(message: &str) -> Option<(&str, &str)> {
    let (kind, rest) = message.split_once(" `")?;
    let name = rest.split('`').next()?;
    matches!(kind, "missing field" | "unknown field").then_some((kind, name))
}

fn join_path(path: &str, field: &str) -> String {
    if path.is_empty() || path == "." {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// Query parameters with problem+json rejections naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let errors: Vec<FieldError> = form_urlencoded::parse(query.as_bytes())
            .flat_map(|(key, value)| [text::check(&key, &key), text::check(&key, &value)])
            .filter_map(Result::err)
            .collect();
        if !errors.is_empty() {
            return Err(Problem::validation(errors));
        }
        let deserializer = serde_urlencoded_deserializer(query);
        let value: T = serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let field = err.path().to_string();
            let message = err.into_inner().to_string();
            let field = match named_field(&message) {
                Some((_, name)) => name.to_owned(),
                None if field == "." => String::new(),
                None => field,
            };
            Problem::validation(vec![FieldError::new(
                field,
                "INVALID_PARAMETER",
                wording::describe(&message),
            )])
        })?;
        value.validate().map_err(Problem::validation)?;
        Ok(Query(value))
    }
}

fn serde_urlencoded_deserializer(query: &str) -> serde_urlencoded::Deserializer<'_> {
    serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        age: u32,
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        let problem = parse_json::<Body>(b"{\"email\": ").unwrap_err();
        assert_eq!(problem.status, 400);
        assert_eq!(problem.code, "MALFORMED_JSON");
    }

    #[test]
    fn a_missing_field_is_named() {
        let problem = parse_json::<Body>(br#"{"email":"a@b.c"}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].field, "age");
        assert_eq!(problem.errors[0].code, "REQUIRED");
    }

    #[test]
    fn a_mistyped_field_is_named() {
        let problem = parse_json::<Body>(br#"{"email":"a@b.c","age":"old"}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].field, "age");
        assert_eq!(problem.errors[0].code, "INVALID_TYPE");
    }

    #[test]
    fn an_integer_written_as_a_decimal_is_an_integer_and_a_fraction_is_not() {
        #[derive(Debug, Deserialize, PartialEq)]
        struct Line {
            quantity: i64,
            weight: f64,
            note: Option<String>,
        }
        let line = parse_json::<Line>(br#"{"quantity": 3.0, "weight": 2.0, "note": "3.0"}"#);
        assert_eq!(
            line.ok(),
            Some(Line {
                quantity: 3,
                weight: 2.0,
                note: Some("3.0".into())
            })
        );
        let thousand = parse_json::<Line>(br#"{"quantity": 1e3, "weight": 0.5}"#);
        assert_eq!(thousand.map(|line| line.quantity).ok(), Some(1000));
        let problem = parse_json::<Line>(br#"{"quantity": 2.5, "weight": 0.5}"#).unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].field, "quantity");
        assert_eq!(problem.errors[0].code, "INVALID_TYPE");
        let beyond_exact = parse_json::<Line>(br#"{"quantity": 1e17, "weight": 0.5}"#).unwrap_err();
        assert_eq!(beyond_exact.errors[0].field, "quantity");
    }

    #[test]
    fn an_array_is_not_a_body_even_for_a_struct_serde_could_fill_from_one() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Patch {
            name: Option<String>,
            age: Option<u32>,
        }
        let problem = parse_json::<Patch>(b" [null, null]").unwrap_err();
        assert_eq!(problem.status, 422);
        assert_eq!(problem.errors[0].message, "must be an object");
    }

    #[test]
    fn a_document_number_jsonb_could_not_give_back_is_refused_naming_its_path() {
        let document = parse_json::<serde_json::Map<String, serde_json::Value>>(
            br#"{"ok": 1.5e15, "units": {"max": [1, 1.7976931348623157e308]}}"#,
        )
        .unwrap_or_default();
        let errors = document.validate().unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "units.max[1]");
        assert_eq!(errors[0].code, "OUT_OF_RANGE");
    }

    #[test]
    fn trailing_garbage_is_malformed() {
        let problem = parse_json::<Body>(br#"{"email":"a@b.c","age":3} x"#).unwrap_err();
        assert_eq!(problem.code, "MALFORMED_JSON");
    }
}
