//! LogiCore as an OAuth2 authorization server and OpenID provider: `POST /oauth/token` (client
//! credentials, RFC 6749 §4.4), the discovery document (OpenID Connect Discovery 1.0, RFC 8414) and the
//! JWKS the gateway and the services verify with.
//!
//! Token errors carry RFC 6749 §5.2's `error` member (`invalid_request`, `invalid_client`,
//! `unsupported_grant_type`, `invalid_scope`) inside the usual problem+json, so OAuth client libraries and
//! LogiCore's clients both find what they look for.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use platform::Problem;
use platform::auth::Role;
use platform::auth::scopes::{self, SCOPES};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::clients;
use crate::error::UsersError;
use crate::state::AppState;

/// The form of `POST /oauth/token`.
#[derive(Debug, ToSchema)]
pub struct TokenRequest {
    /// Only `client_credentials`.
    #[schema(pattern = "^client_credentials$", example = "client_credentials")]
    pub grant_type: String,
    /// Unless sent with HTTP Basic authentication.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub client_id: Option<String>,
    /// Unless sent with HTTP Basic authentication.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub client_secret: Option<String>,
    /// Space-separated scopes, a subset of the client's; all of them when absent.
    #[schema(pattern = r"^[^\x00-\x1f\x7f-\x9f]*$")]
    pub scope: Option<String>,
}

/// RFC 6749 §5.1.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientToken {
    pub access_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

/// An RFC 6749 §5.2 error as problem+json.
fn oauth_error(
    status: StatusCode,
    error: &'static str,
    description: impl Into<String>,
) -> UsersError {
    let description = description.into();
    UsersError::Problem(
        Problem::new(status, &error.to_ascii_uppercase(), description.clone())
            .with_extension("error", json!(error))
            .with_extension("error_description", json!(description)),
    )
}

fn invalid_request(description: impl Into<String>) -> UsersError {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

/// The client credentials of a request: HTTP Basic (RFC 6749 §2.3.1, form-encoded id and secret) or the
/// form, not both.
fn credentials(headers: &HeaderMap, form: &TokenRequest) -> Result<(String, String), UsersError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, encoded) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("basic")
                .then_some(encoded.trim())
        });
    match (basic, &form.client_id, &form.client_secret) {
        (Some(encoded), None, None) => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    invalid_request("the Basic credentials are not base64 of id:secret")
                })?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid_request("the Basic credentials are not id:secret"))?;
            let decode = |part: &str| {
                percent_decode(part)
                    .ok_or_else(|| invalid_request("the Basic credentials are not form-encoded"))
            };
            Ok((decode(id)?, decode(secret)?))
        }
        (None, Some(id), Some(secret)) => Ok((id.clone(), secret.clone())),
        (Some(_), _, _) => Err(invalid_request(
            "send the client credentials either with Basic authentication or in the form, not both",
        )),
        (None, _, _) => Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client_id and client_secret are required",
        )),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
}

/// The form (RFC 6749 §3.2): each known parameter at most once, a parameter without a value as if it
/// were absent, and unknown parameters ignored.
fn parse_form(headers: &HeaderMap, body: &[u8]) -> Result<TokenRequest, UsersError> {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|value| {
            value
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_type {
        return Err(invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let mut known: [(&str, Option<String>); 4] = [
        ("grant_type", None),
        ("client_id", None),
        ("client_secret", None),
        ("scope", None),
    ];
    for (name, value) in form_urlencoded::parse(body) {
        let Some((name, slot)) = known.iter_mut().find(|(known, _)| *known == name) else {
            continue;
        };
        if slot.is_some() {
            return Err(invalid_request(format!("{name} is sent more than once")));
        }
        if value.chars().any(char::is_control) {
            return Err(invalid_request(format!(
                "{name} contains control characters"
            )));
        }
        if !value.is_empty() {
            *slot = Some(value.into_owned());
        }
    }
    let [grant_type, client_id, client_secret, scope] = known.map(|(_, value)| value);
    Ok(TokenRequest {
        grant_type: grant_type.ok_or_else(|| invalid_request("grant_type is required"))?,
        client_id,
        client_secret,
        scope,
    })
}

/// Issues a machine client a short-lived access token.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "A token", body = ClientToken),
        (status = 400, description = "`INVALID_REQUEST`, `UNSUPPORTED_GRANT_TYPE` or `INVALID_SCOPE`, with RFC 6749's `error` member", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`INVALID_CLIENT`: unknown client, wrong secret or revoked client", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The form is too large", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UsersError> {
    let form = parse_form(&headers, &body)?;
    if form.grant_type != "client_credentials" {
        return Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only client_credentials is supported",
        ));
    }
    let (client_id, secret) = credentials(&headers, &form)?;
    let client = clients::authenticate(&state.db, &client_id, &secret)
        .await?
        .ok_or_else(|| {
            tracing::warn!(client_id = %client_id.chars().take(64).collect::<String>(), "client authentication failed");
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client, wrong secret or revoked client",
            )
        })?;
    let granted: Vec<String> = match form.scope.as_deref().map(str::split_whitespace) {
        None => client.scopes.clone(),
        Some(requested) => {
            let requested: Vec<String> = requested.map(str::to_owned).collect();
            if requested.is_empty() || requested.iter().any(|scope| !client.scopes.contains(scope))
            {
                return Err(oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("the client may ask for: {}", client.scopes.join(" ")),
                ));
            }
            requested
        }
    };
    let role = scopes::role_of(granted.iter().map(String::as_str)).unwrap_or(Role::Customer);
    let access_token = state.signer.client_token(client.id, role, &granted)?;
    let answer = ClientToken {
        access_token,
        token_type: "Bearer",
        expires_in: state.signer.client_ttl().as_secs(),
        scope: granted.join(" "),
    };
    let mut response = axum::Json(answer).into_response();
    // RFC 6749 §5.1: a token must not be cached.
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// LogiCore's public signing keys (RFC 7517), the only thing the gateway and the services verify tokens
/// with. Upcoming and retiring keys are included, so rotation logs nobody out.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "oauth",
    responses((status = 200, description = "The JSON Web Key Set", body = Object, content_type = "application/jwk-set+json")),
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = axum::Json(state.signer.jwks()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jwk-set+json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}

/// The OpenID provider's metadata. Its URLs are the issuer's when `auth.issuer` is a URL (set it to the
/// public address, e.g. `https://api.example.com`, for a conformant provider), else the request's host.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "oauth",
    responses((status = 200, description = "Provider metadata", body = Object)),
)]
pub async fn openid_configuration(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let issuer = state.signer.issuer();
    let base = if issuer.starts_with("https://") || issuer.starts_with("http://") {
        issuer.trim_end_matches('/').to_owned()
    } else {
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .filter(|host| {
                !host.is_empty()
                    && host.chars().all(|c| {
                        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')
                    })
            })
            .unwrap_or("localhost");
        format!("http://{host}")
    };
    let algorithm = state.signer.algorithm_name();
    let document = json!({
        "issuer": issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": SCOPES.iter().map(|scope| scope.name).collect::<Vec<_>>(),
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [algorithm],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "name", "role"],
    });
    let mut response = axum::Json(document).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<TokenRequest, UsersError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        parse_form(&headers, body.as_bytes())
    }

    #[test]
    fn repeated_or_control_laden_parameters_are_refused_and_unknown_ones_ignored() {
        assert!(form("grant_type=client_credentials&client_id=a&client_secret=b").is_ok());
        assert!(form("grant_type=client_credentials&grant_type=password").is_err());
        assert!(form("grant_type=client%00credentials").is_err());
        assert!(
            form("grant_type=").is_err(),
            "a parameter without a value is absent"
        );
        let ignored = form("x=%01&x=2&grant_type=client_credentials&client_id=&scope=a")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (ignored.client_id, ignored.scope.as_deref()),
            (None, Some("a"))
        );
        assert!(parse_form(&HeaderMap::new(), b"grant_type=client_credentials").is_err());
    }

    #[test]
    fn basic_credentials_are_form_decoded_and_exclusive() {
        let request = TokenRequest {
            grant_type: "client_credentials".into(),
            client_id: None,
            client_secret: None,
            scope: None,
        };
        let mut headers = HeaderMap::new();
        let encoded = base64::engine::general_purpose::STANDARD.encode("my%20id:s%3Acret");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {encoded}")).unwrap_or_else(|e| panic!("{e}")),
        );
        let (id, secret) = credentials(&headers, &request).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((id.as_str(), secret.as_str()), ("my id", "s:cret"));
        let both = TokenRequest {
            client_id: Some("x".into()),
            ..request
        };
        assert!(credentials(&headers, &both).is_err());
    }
}
