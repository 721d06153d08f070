//! Pieces every service's OpenAPI document shares, so the gateway's merged document names them once, and
//! [`complete`]: the one place that states what every operation may answer besides its own responses (the errors
//! the platform's extractors, the bearer check, the gateway's rate limit and its breaker produce), so no handler
//! has to repeat them and none can forget one.

use std::borrow::Cow;
use utoipa::openapi::path::{Operation, Parameter, ParameterIn, PathItem};
use utoipa::openapi::response::Response;

use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, HeaderBuilder, KnownFormat, OpenApi, Ref, RefOr, Schema};
use utoipa::{Modify, PartialSchema, ToSchema};

use crate::extract::LARGEST_DOCUMENT_NUMBER;
use crate::idempotency::KEY_MAX;
use crate::pagination::{DEFAULT_LIMIT, MAX_LIMIT};
use crate::problem::{FieldError, PROBLEM_CONTENT_TYPE, Problem};

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

/// A free-form JSON object (a user's preferences) as the platform's `Json` extractor takes it: any object
/// whose numbers, however deep, have a magnitude below [`LARGEST_DOCUMENT_NUMBER`] (PostgreSQL's `jsonb` would
/// keep larger ones in a form no JSON parser reads back). `request_body(content = JsonDocument)`.
pub struct JsonDocument;

/// The component every value inside a [`JsonDocument`] refers to, itself included.
const JSON_VALUE: &str = "JsonValue";

impl PartialSchema for JsonDocument {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(Ref::from_schema_name(JSON_VALUE)))
            .into()
    }
}

impl ToSchema for JsonDocument {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JsonDocument")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let value = || Ref::from_schema_name(JSON_VALUE);
        let json_value = AnyOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(SchemaType::from_iter([
                Type::String,
                Type::Boolean,
                Type::Null,
            ])))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .exclusive_minimum(Some(-LARGEST_DOCUMENT_NUMBER))
                    .exclusive_maximum(Some(LARGEST_DOCUMENT_NUMBER)),
            )
            .item(ArrayBuilder::new().items(value()))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(value())),
            )
            .description(Some("Any JSON value; numbers of magnitude below 1e100"));
        schemas.push((JSON_VALUE.to_owned(), json_value.into()));
    }
}

/// Finishes a service's generated document:
/// - operation ids get the service's name as a prefix (`users_get_me`), so they stay unique once the gateway
///   merges every service's document;
/// - every error response is `application/problem+json` with the shared [`Problem`] schema, whatever the handler's
///   attribute said, and every response has a description;
/// - the responses the platform produces for any operation are added where the handler did not describe them:
///   401/403 on operations that take a bearer token, 400/413/415/422 on operations with a JSON body, 400/422 on
///   operations with parameters, 404 on operations with a path id, 429 (the gateway's rate limit) and 503 (an
///   upstream or the database unavailable) everywhere;
/// - the paging parameters carry the rule [`crate::pagination::PageParams`] enforces.
pub fn complete(mut openapi: OpenApi, service: &str) -> OpenApi {
    add_problem_schemas(&mut openapi);
    for item in openapi.paths.paths.values_mut() {
        for operation in operations(item) {
            complete_operation(operation, service);
        }
    }
    openapi
}

/// Declares the [`Problem`] and [`FieldError`] schemas that error responses refer to.
pub fn add_problem_schemas(openapi: &mut OpenApi) {
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    components
        .schemas
        .insert(FieldError::name().into_owned(), FieldError::schema());
}

/// Every operation of a path item.
pub fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn complete_operation(operation: &mut Operation, service: &str) {
    let prefix = format!("{service}_");
    operation.operation_id = operation.operation_id.take().map(|id| {
        if id.starts_with(&prefix) {
            id
        } else {
            format!("{prefix}{id}")
        }
    });

    let parameters: Vec<&mut Parameter> = operation
        .parameters
        .iter_mut()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(parameter) => Some(parameter),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has_path_parameter = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Path);
    let has_parameters = !parameters.is_empty();
    let conditional = parameters
        .iter()
        .any(|p| p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("if-match"));
    for parameter in parameters {
        constrain_paging(parameter);
        constrain_idempotency_key(parameter);
    }
    let has_body = operation.request_body.is_some();
    let authenticated = operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty());

    let mut standard: Vec<(u16, &str)> = Vec::new();
    if authenticated {
        standard.push((
            401,
            "`UNAUTHORIZED`: the bearer token is missing, invalid, expired or revoked",
        ));
        standard.push((403, "`FORBIDDEN`: the caller's role may not do this"));
    }
    if has_body || has_parameters {
        standard.push((
            400,
            "`MALFORMED_JSON` or `BAD_REQUEST`: the body is not JSON, or the path, query or body \
            holds what no field can take (e.g. invalid UTF-8 or a NUL character)",
        ));
        standard.push((
            422,
            "`VALIDATION_FAILED`: `errors` names every invalid field or parameter",
        ));
    }
    if has_body {
        standard.push((
            413,
            "`PAYLOAD_TOO_LARGE`: the body is larger than the service accepts",
        ));
        standard.push((
            415,
            "`UNSUPPORTED_MEDIA_TYPE`: the body is not `application/json`",
        ));
    }
    if conditional {
        standard.push((
            412,
            "`PRECONDITION_FAILED`: `If-Match` names another version than the current one",
        ));
    }
    if has_path_parameter {
        standard.push((
            404,
            "`NOT_FOUND`: nothing has this id (an id that is not a UUID names nothing either)",
        ));
    }
    standard.push((
        429,
        "`RATE_LIMITED`: the caller's request budget is spent; `Retry-After` says when to retry",
    ));
    standard.push((
        503,
        "`UPSTREAM_UNAVAILABLE` or `DATABASE_UNAVAILABLE`: retry after `Retry-After` seconds",
    ));

    let responses = &mut operation.responses.responses;
    for (status, description) in standard {
        responses
            .entry(status.to_string())
            .or_insert_with(|| RefOr::T(Response::new(description)));
    }
    for (status, response) in responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        let code = status.parse::<u16>().ok();
        if response.description.trim().is_empty() {
            response.description = code
                .and_then(|c| axum::http::StatusCode::from_u16(c).ok())
                .and_then(|c| c.canonical_reason())
                .unwrap_or("The response")
                .to_owned();
        }
        if code.is_some_and(|c| c >= 400) {
            problem_response(response, code == Some(429) || code == Some(503));
        }
    }
}

/// Makes an error response what the platform sends: a [`Problem`] as `application/problem+json`, with
/// `Retry-After` where the problem carries one.
fn problem_response(response: &mut Response, retry_after: bool) {
    response.content.clear();
    response.content.insert(
        PROBLEM_CONTENT_TYPE.to_owned(),
        RefOr::T(Content::new(Some(Ref::from_schema_name(Problem::name())))),
    );
    if retry_after {
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(0)),
                        ))
                        .description(Some("Seconds to wait before retrying"))
                        .build(),
                )
            });
    }
}

/// The `Idempotency-Key` header, described by the rule [`crate::idempotency`] checks.
fn constrain_idempotency_key(parameter: &mut Parameter) {
    if parameter.parameter_in != ParameterIn::Header
        || !parameter.name.eq_ignore_ascii_case("idempotency-key")
    {
        return;
    }
    let schema = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(KEY_MAX))
        .pattern(Some("^[ -~]*[!-~][ -~]*$"));
    parameter.schema = Some(RefOr::T(schema.into()));
}

/// `limit` and `cursor`, the query parameters of every list, described by the rule that checks them.
fn constrain_paging(parameter: &mut Parameter) {
    if parameter.parameter_in != ParameterIn::Query {
        return;
    }
    let schema: Schema = match parameter.name.as_str() {
        "limit" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
            .minimum(Some(1))
            .maximum(Some(MAX_LIMIT))
            .default(Some(DEFAULT_LIMIT.into()))
            .into(),
        // A cursor is a row id in unpadded base64url: 22 characters, the last one carrying only two bits.
        "cursor" => ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .pattern(Some("^[A-Za-z0-9_-]{21}[AQgw]$"))
            .into(),
        _ => return,
    };
    parameter.schema = Some(RefOr::T(schema));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn document(operation: Value) -> Value {
        let doc: OpenApi = serde_json::from_value(json!({
            "openapi": "3.1.0",
            "info": { "title": "t", "version": "1" },
            "paths": { "/things/{id}": { "patch": operation } },
        }))
        .unwrap();
        serde_json::to_value(complete(doc, "things")).unwrap()
    }

    #[test]
    fn an_authenticated_operation_with_a_body_and_a_path_id_gets_every_standard_error() {
        let json = document(json!({
            "operationId": "update",
            "summary": "Changes a thing",
            "security": [{ "bearer_auth": [] }],
            "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
            "requestBody": { "content": { "application/json": { "schema": { "type": "object" } } } },
            "responses": {
                "200": { "description": "" },
                "409": { "description": "`CONFLICT`", "content": { "application/json": { "schema": { "type": "object" } } } },
            },
        }));
        let operation = &json["paths"]["/things/{id}"]["patch"];
        assert_eq!(operation["operationId"], "things_update");
        let responses = operation["responses"].as_object().unwrap();
        let statuses: Vec<&str> = responses.keys().map(String::as_str).collect();
        assert_eq!(
            statuses,
            [
                "200", "400", "401", "403", "404", "409", "413", "415", "422", "429", "503"
            ]
        );
        assert_eq!(responses["200"]["description"], "OK");
        assert_eq!(responses["409"]["description"], "`CONFLICT`");
        for (status, response) in responses.iter().filter(|(s, _)| s.as_str() >= "400") {
            let content = response["content"].as_object().unwrap();
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/problem+json"],
                "{status}"
            );
            assert_eq!(
                content["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem"
            );
        }
        assert!(responses["429"]["headers"]["Retry-After"].is_object());
        assert!(json["components"]["schemas"]["Problem"].is_object());
        assert!(json["components"]["schemas"]["FieldError"].is_object());
    }

    #[test]
    fn a_public_operation_without_input_gets_no_auth_or_validation_errors() {
        let json = document(json!({
            "operationId": "things_ping",
            "responses": { "200": { "description": "pong" } },
        }));
        let operation = &json["paths"]["/things/{id}"]["patch"];
        assert_eq!(operation["operationId"], "things_ping");
        let statuses: Vec<&String> = operation["responses"].as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["200", "429", "503"]);
    }

    #[test]
    fn paging_parameters_carry_the_limits_the_api_enforces() {
        let json = document(json!({
            "parameters": [
                { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer" } },
                { "name": "cursor", "in": "query", "required": false, "schema": { "type": "string" } },
            ],
            "responses": { "200": { "description": "a page" } },
        }));
        let parameters = &json["paths"]["/things/{id}"]["patch"]["parameters"];
        assert_eq!(parameters[0]["schema"]["minimum"], 1);
        assert_eq!(parameters[0]["schema"]["maximum"], MAX_LIMIT);
        assert_eq!(parameters[0]["schema"]["default"], DEFAULT_LIMIT);
        assert_eq!(parameters[1]["schema"]["minLength"], 1);
        let cursor = crate::pagination::encode_cursor(uuid::Uuid::now_v7());
        let pattern = parameters[1]["schema"]["pattern"].as_str().unwrap();
        assert_eq!(pattern, "^[A-Za-z0-9_-]{21}[AQgw]$");
        assert!(
            cursor.len() == 22 && "AQgw".contains(&cursor[21..]),
            "{cursor}"
        );
    }
}
