//! Pieces every service's OpenAPI document shares, so the gateway's merged document names them once.

use utoipa::Modify;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

/// Name of the bearer-token security scheme that handlers refer to with `security(("bearer_auth" = []))`.
pub const BEARER_SCHEME: &str = "bearer_auth";

/// Declares the [`BEARER_SCHEME`] (an HS256 JWT in `Authorization: Bearer`).
pub struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER_SCHEME,
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
