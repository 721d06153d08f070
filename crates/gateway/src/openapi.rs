//! The merged OpenAPI 3.1 document of every service behind the gateway, served at `/openapi.json`, and
//! the Swagger UI page at `/docs`. The UI's files are compiled into the binary, so it works offline.

use axum::Router;
use serde_json::json;
use utoipa::openapi::OpenApi;
use utoipa_swagger_ui::{Config as SwaggerConfig, SwaggerUi};

use crate::error::GatewayError;
use crate::headers::DOCS_PATH;

pub(crate) const SPEC_PATH: &str = "/openapi.json";

/// The gateway's own part: document info, the bearer scheme and the operations routes.
fn gateway_document() -> serde_json::Value {
    let object = |description: &str| json!({ "description": description, "content": { "application/json": { "schema": { "type": "object" } } } });
    let problem = |description: &str| json!({ "description": description, "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } } });
    // `/admin/*` is served on the admin listener, not on this port: each path names that server.
    let admin = |method: &str, operation_id: &str, summary: &str, ok: serde_json::Value| {
        json!({
            "servers": [{
                "url": "http://{host}:{admin_port}",
                "description": "the gateway's admin listener (`gateway.admin_port`)",
                "variables": {
                    "host": { "default": "127.0.0.1", "description": "`service.host`" },
                    "admin_port": { "default": "9901", "description": "`gateway.admin_port`" }
                }
            }],
            method: {
                "tags": ["admin"], "operationId": operation_id, "summary": summary,
                "security": [{ "bearer_auth": [] }],
                "responses": {
                    "200": ok,
                    "401": problem("`UNAUTHORIZED`: the bearer token is missing, invalid, expired or revoked"),
                    "403": problem("`FORBIDDEN`: the caller is not an admin")
                }
            }
        })
    };
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "LogiCore API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every LogiCore service behind one gateway. Send `Authorization: Bearer <access_token>` \
                except on public routes; errors are `application/problem+json` (RFC 9457).",
        },
        "tags": [
            { "name": "operations", "description": "Liveness, readiness and this document" },
            { "name": "admin", "description": "Operator routes on the gateway's admin listener \
                (`gateway.admin_port`, default 9901, bound to `service.host`), never on the public port; an admin \
                token is required" }
        ],
        "components": {
            "securitySchemes": {
                "bearer_auth": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" }
            }
        },
        "paths": {
            "/health": { "get": {
                "tags": ["operations"], "operationId": "gateway_health", "summary": "Liveness",
                "description": "200 while the process serves requests; checks no dependency.",
                "responses": { "200": object("`{\"status\":\"ok\"}`") }
            }},
            "/readyz": { "get": {
                "tags": ["operations"], "operationId": "gateway_readiness", "summary": "Readiness",
                "description": "Whether every upstream answers its `/health` (probed at most about once a second). \
                    Only the verdict: the details, and `/metrics`, are on the admin listener (`gateway.admin_port`).",
                "responses": {
                    "200": object("`{\"status\":\"ready\"}`: every required upstream is up"),
                    "503": object("`{\"status\":\"not_ready\"}`: a required upstream is down")
                }
            }},
            "/admin/circuit-breakers": admin("get", "gateway_admin_circuit_breakers", "Every upstream's circuit breaker",
                object("each upstream's breaker state and counts")),
            "/openapi.json": { "get": {
                "tags": ["operations"], "operationId": "gateway_openapi", "summary": "This document",
                "responses": { "200": object("the merged OpenAPI 3.1 document") }
            }},
        }
    })
}

/// The gateway's document with every service's paths, schemas and security schemes added. On a
/// clash the earlier one wins: the gateway's own, then the specs in the order given.
pub(crate) fn merged(specs: Vec<OpenApi>) -> Result<OpenApi, GatewayError> {
    let mut merged: OpenApi = serde_json::from_value(gateway_document()).map_err(|e| {
        GatewayError::config("openapi", format!("the gateway document is invalid: {e}"))
    })?;
    platform::openapi::add_problem_schemas(&mut merged);
    for spec in specs {
        merged.merge(spec);
    }
    Ok(merged)
}

/// `/openapi.json` and the Swagger UI under `/docs`. The validator badge is off: it would fetch from
/// an external site, which the docs page's content security policy forbids anyway.
pub(crate) fn docs_router(spec: OpenApi) -> Router {
    let config = SwaggerConfig::default()
        .validator_url("none")
        .persist_authorization(true)
        .display_request_duration(true);
    SwaggerUi::new(DOCS_PATH)
        .url(SPEC_PATH, spec)
        .config(config)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateway_document_is_valid_openapi_with_the_operations_routes() {
        let spec = merged(Vec::new()).unwrap_or_else(|e| panic!("{e}"));
        for path in [
            "/health",
            "/readyz",
            "/openapi.json",
            "/admin/circuit-breakers",
        ] {
            assert!(spec.paths.get_path_item(path).is_some(), "{path} missing");
        }
        // Served on the admin listener only.
        assert!(spec.paths.get_path_item("/metrics").is_none());
    }
}
