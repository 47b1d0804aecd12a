//! The API's OpenAPI 3.1 description, served at `GET /openapi.json` and
//! committed as `schema/openapi.json` (a test keeps the copy current).
//!
//! OpenAPI 3.1's schemas are JSON Schema 2020-12, which is what schemars
//! writes, so every body is described by a Rust type: the job is
//! herald-core's `Job` itself (one schema for the worker, the API and
//! `schema/job.schema.json`), the inbound request is the handler's own type,
//! and the answers are the types below, which the `/v1/*` handlers return.
//! The error and webhook answers are still built as JSON where they are
//! made; the contract test (schemathesis, `.ci/api-contract`) holds every
//! answer of the running API to this description.

use std::sync::OnceLock;

use axum::Json;
use schemars::{JsonSchema, SchemaGenerator, generate::SchemaSettings};
use serde::Serialize;
use serde_json::{Map, Value, json};

use herald_core::Job;

use crate::inbound::InboundRequest;

/// `202` from `POST /v1/messages`.
#[derive(Serialize, JsonSchema)]
pub struct Accepted {
    /// The published jobs' ids, in the order given.
    pub ids: Vec<String>,
}

/// Every error answer.
#[derive(Serialize, JsonSchema)]
pub struct ErrorAnswer {
    /// What went wrong, in a sentence.
    pub error: String,
    /// One entry per problem with a field of the request.
    pub problems: Vec<FieldProblem>,
}

#[derive(Serialize, JsonSchema)]
pub struct FieldProblem {
    /// The field, as a path (`to`, `message.body`, `$` for the whole body).
    pub field: String,
    pub problem: String,
    /// In a batch, the index of the job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<u64>,
}

/// `{"jobs": […]}`: many jobs in one request, all or none published.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    #[schemars(length(min = 1))]
    pub jobs: Vec<Job>,
}

/// The 24-hour window to a contact.
#[derive(Serialize, JsonSchema)]
pub struct Window {
    pub provider: String,
    pub account: String,
    /// E.164.
    pub contact: String,
    pub open: bool,
    /// RFC 3339; `null` when no inbound message is known.
    pub last_inbound: Option<String>,
    /// RFC 3339; `null` when the window is not open.
    pub closes_at: Option<String>,
}

/// `200` from `POST /v1/inbound`: the window after recording.
#[derive(Serialize, JsonSchema)]
pub struct Recorded {
    #[serde(flatten)]
    pub window: Window,
    /// RFC 3339: the instant recorded for this message.
    pub recorded: String,
}

/// `200` from a webhook.
#[derive(Serialize, JsonSchema)]
pub struct WebhookAnswer {
    pub recorded: Vec<RecordedMessage>,
    /// Vendor message ids seen before: a repeated delivery changes nothing.
    pub duplicates: Vec<String>,
    pub note: String,
}

#[derive(Serialize, JsonSchema)]
pub struct RecordedMessage {
    /// The vendor's message id.
    pub id: String,
    pub contact: String,
    pub at: String,
}

/// `GET /openapi.json`.
pub async fn serve() -> Json<Value> {
    Json(document().clone())
}

/// The document, built once.
pub fn document() -> &'static Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    DOCUMENT.get_or_init(build)
}

fn build() -> Value {
    let mut generator = SchemaGenerator::new(
        SchemaSettings::draft2020_12().with(|s| s.definitions_path = "/components/schemas".into()),
    );
    // Each a `$ref` to components/schemas/<type name>, where the
    // generator's definitions go, with every type they use.
    let job = generator.subschema_for::<Job>().to_value();
    let batch = generator.subschema_for::<Batch>().to_value();
    let accepted = generator.subschema_for::<Accepted>().to_value();
    let error = generator.subschema_for::<ErrorAnswer>().to_value();
    let inbound = generator.subschema_for::<InboundRequest>().to_value();
    let recorded = generator.subschema_for::<Recorded>().to_value();
    let window = generator.subschema_for::<Window>().to_value();
    let webhook = generator.subschema_for::<WebhookAnswer>().to_value();
    let schemas = generator.take_definitions(true);

    let body = |schema: &Value, example: Value| json!({ "required": true, "content": { "application/json": { "schema": schema, "example": example } } });
    let answer = |description: &str, schema: &Value| json!({ "description": description, "content": { "application/json": { "schema": schema } } });
    let text = |description: &str| json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } });
    let errors = |codes: &[(&str, &str)]| -> Map<String, Value> {
        codes
            .iter()
            .map(|(code, why)| ((*code).to_owned(), answer(why, &error)))
            .collect()
    };
    let with = |mut responses: Map<String, Value>, code: &str, response: Value| {
        responses.insert(code.to_owned(), response);
        Value::Object(responses)
    };
    let path_param = |name: &str, description: &str, example: &str| {
        json!({ "name": name, "in": "path", "required": true, "description": description,
                "schema": { "type": "string" }, "example": example })
    };
    let bearer = json!([{ "bearer": [] }]);
    let unauthorized = ("401", "no or wrong bearer token");
    let invalid = ("400", "the request is invalid: every problem is named");
    let too_large = ("413", "the body is larger than 1 MiB");

    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Herald API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Publish WhatsApp send jobs, record customers' inbound messages (the 24-hour window) and receive vendors' webhooks. CONTRACT §7.",
        },
        "paths": {
            "/v1/messages": { "post": {
                "operationId": "publishJobs",
                "summary": "Publish a job or a batch; 202 only once the broker confirmed every job",
                "security": bearer,
                "requestBody": body(&json!({ "oneOf": [job, batch] }), json!({
                    "id": "order-1234-shipped", "provider": "kaleyra", "to": "+254712345678",
                    "message": { "type": "template", "name": "order_update", "language": "en", "body": ["1234"] },
                })),
                "responses": with(errors(&[invalid, unauthorized, too_large, ("503", "the broker did not confirm; sending the same request again is safe")]),
                    "202", answer("every job is queued", &accepted)),
            }},
            "/v1/inbound": { "post": {
                "operationId": "recordInbound",
                "summary": "Record a customer's inbound message (opens or moves the window forward)",
                "security": bearer,
                "requestBody": body(&inbound, json!({ "provider": "kaleyra", "contact": "+254712345678" })),
                "responses": with(errors(&[invalid, unauthorized, too_large, ("503", "Redis is unavailable; try again")]),
                    "200", answer("recorded; the window now", &recorded)),
            }},
            "/v1/window/{provider}/{account}/{contact}": { "get": {
                "operationId": "showWindow",
                "summary": "Is the 24-hour window to a contact open?",
                "security": bearer,
                "parameters": [
                    path_param("provider", "a configured provider", "kaleyra"),
                    path_param("account", "a configured account of it", "default"),
                    path_param("contact", "E.164, with or without the +", "+254712345678"),
                ],
                "responses": with(errors(&[invalid, unauthorized, ("503", "Redis is unavailable; try again")]),
                    "200", answer("the window", &window)),
            }},
            "/webhooks/{provider}/{account}": { "post": {
                "operationId": "vendorWebhook",
                "summary": "A vendor's own inbound-message callback, de-duplicated by its message id",
                "security": [{ "webhookSecretHeader": [] }, { "webhookSecretQuery": [] }],
                "parameters": [
                    path_param("provider", "a configured provider", "kaleyra"),
                    path_param("account", "a configured account of it", "default"),
                ],
                "requestBody": body(
                    &json!({ "description": "the vendor's own format (Meta-style, 99digital, Kaleyra …)" }),
                    json!({ "from": "254712345678", "id": "wamid.example", "created_at": "2026-11-21T10:00:00Z", "wanumber": "12025550123" }),
                ),
                "responses": with(errors(&[
                    ("400", "not a callback of this vendor that Herald can read"),
                    ("401", "no or wrong webhook secret"),
                    ("404", "no such provider or account"),
                    too_large,
                    ("503", "Redis is unavailable; the vendor's retry will be recorded"),
                ]), "200", answer("what was recorded", &webhook)),
            }},
            "/healthz": { "get": {
                "operationId": "health",
                "summary": "The process runs",
                "responses": { "200": text("ok") },
            }},
            "/metrics": { "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": { "200": text("Prometheus text format") },
            }},
            "/openapi.json": { "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": { "200": { "description": "OpenAPI 3.1", "content": { "application/json": {} } } },
            }},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "api.token_env / api.token_file" },
                "webhookSecretHeader": { "type": "apiKey", "in": "header", "name": "X-Herald-Webhook-Secret", "description": "the account's webhook_secret_env / webhook_secret_file" },
                "webhookSecretQuery": { "type": "apiKey", "in": "query", "name": "secret" },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_copy_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/openapi.json");
        let generated = serde_json::to_string_pretty(document()).unwrap() + "\n";
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "schema/openapi.json is stale: run `herald schema --openapi > schema/openapi.json`"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let text = document().to_string();
        let schemas = document()["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
        assert!(schemas.contains_key("Job") && schemas.contains_key("Message"));
    }
}
