//! The API's OpenAPI 3.1 description, served at `GET /openapi.json` and
//! committed as `schema/openapi.json` (a test keeps the copy current).
//!
//! OpenAPI 3.1's schemas are JSON Schema 2020-12, which is what schemars
//! writes, so every body is described by a Rust type: the job is
//! herald-core's `Job` itself (one schema for the worker, the API and
//! `schema/job.schema.json`), the inbound request is the handler's own type,
//! and the answers are the types below, which the `/v1/*` handlers return.
//! The error, webhook and status-report answers are still built as JSON
//! where they are made; the contract test (schemathesis, `.ci/api-contract`) holds every
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
    /// What each status of the callback did.
    pub statuses: Vec<StatusOutcome>,
    pub note: String,
}

#[derive(Serialize, JsonSchema)]
pub struct RecordedMessage {
    /// The vendor's message id.
    pub id: String,
    pub contact: String,
    pub at: String,
}

/// A message's state, forward only (CONTRACT §10).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Accepted,
    Sent,
    Delivered,
    Failed,
    Read,
}

impl From<herald_store::State> for MessageState {
    fn from(state: herald_store::State) -> MessageState {
        use herald_store::State;
        match state {
            State::Accepted => MessageState::Accepted,
            State::Sent => MessageState::Sent,
            State::Delivered => MessageState::Delivered,
            State::Failed => MessageState::Failed,
            State::Read => MessageState::Read,
        }
    }
}

/// `200` from `GET /v1/messages/{id}`: a job's whole story.
#[derive(Serialize, JsonSchema)]
pub struct Story {
    /// The job's id.
    pub id: String,
    pub provider: String,
    pub account: String,
    /// E.164.
    pub to: String,
    pub state: MessageState,
    /// `null` when no vendor accepted the job.
    pub vendor_message_id: Option<String>,
    /// Vendor calls made for the job.
    pub attempts: u32,
    pub fallback_used: bool,
    /// Why the job was dead-lettered (CONTRACT §3); `null` when it was not.
    pub dead_reason: Option<String>,
    /// RFC 3339; `null` for a job dead-lettered before any vendor accepted it.
    pub accepted_at: Option<String>,
    pub timeline: Vec<Moment>,
}

/// One line of a story's timeline.
#[derive(Serialize, JsonSchema)]
pub struct Moment {
    pub state: MessageState,
    /// RFC 3339.
    pub at: String,
    /// The vendor's error code and words, when it gave any.
    pub detail: Option<String>,
}

/// `POST /v1/statuses`: a vendor's status report for a message it accepted.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    /// A configured provider.
    pub provider: String,
    /// A configured account of it; `default` when absent.
    pub account: Option<String>,
    /// The vendor's id for the message (what its acceptance answered).
    #[schemars(length(min = 1))]
    pub vendor_message_id: String,
    pub status: ReportedStatus,
    /// RFC 3339; now when absent.
    pub at: Option<String>,
    /// The vendor's error code (`131047`: the window closed, the fallback
    /// template is sent; `131050`: the contact opted out and is suppressed).
    pub error_code: Option<ErrorCode>,
    pub detail: Option<String>,
}

/// The statuses a report may carry (`accepted` is Herald's own).
#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    Sent,
    Delivered,
    Read,
    Failed,
}

/// A string or a number.
#[derive(Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ErrorCode {
    Text(String),
    Number(f64),
}

/// `200` from `POST /v1/statuses`: what the report did.
#[derive(Serialize, JsonSchema)]
pub struct StatusOutcome {
    pub vendor_message_id: String,
    /// `held`: the acceptance is not recorded yet, the report waits for it;
    /// `forgotten`: the job is no longer remembered; `advanced`: the state
    /// moved forward; `recorded`: a late status joined the timeline;
    /// `repeated`: already known, nothing changed; `ignored` (webhooks
    /// only): a status Herald does not follow.
    pub outcome: Outcome,
    /// The job's id (not for `held` or `forgotten`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The job's state now (not for `held` or `forgotten`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<MessageState>,
}

#[derive(Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Held,
    Forgotten,
    Advanced,
    Recorded,
    Repeated,
    Ignored,
}

/// `POST /v1/suppressions`: suppress a contact of one account.
#[derive(Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuppressRequest {
    /// A configured provider.
    pub provider: String,
    /// A configured account of it; `default` when absent.
    pub account: Option<String>,
    /// E.164.
    pub contact: String,
}

/// `200` from `POST` and `DELETE` on suppressions: the contact now.
#[derive(Serialize, JsonSchema)]
pub struct Suppression {
    pub provider: String,
    pub account: String,
    /// E.164.
    pub contact: String,
    pub suppressed: bool,
}

/// `200` from `GET /v1/suppressions/{provider}/{account}`.
#[derive(Serialize, JsonSchema)]
pub struct Suppressions {
    pub provider: String,
    pub account: String,
    pub suppressed: Vec<Suppressed>,
}

#[derive(Serialize, JsonSchema)]
pub struct Suppressed {
    /// E.164.
    pub contact: String,
    /// RFC 3339: when it was suppressed.
    pub since: Option<String>,
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
    let story = generator.subschema_for::<Story>().to_value();
    let status = generator.subschema_for::<StatusRequest>().to_value();
    let outcome = generator.subschema_for::<StatusOutcome>().to_value();
    let suppress = generator.subschema_for::<SuppressRequest>().to_value();
    let suppression = generator.subschema_for::<Suppression>().to_value();
    let suppressions = generator.subschema_for::<Suppressions>().to_value();
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
    let query_param = |name: &str, description: &str, example: &str| {
        json!({ "name": name, "in": "query", "required": false, "description": description,
                "schema": { "type": "string" }, "example": example })
    };
    let bearer = json!([{ "bearer": [] }]);
    let unauthorized = ("401", "no or wrong bearer token");
    let invalid = ("400", "the request is invalid: every problem is named");
    let too_large = ("413", "the body is larger than 1 MiB");
    let redis_away = ("503", "Redis is unavailable; try again");

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
            "/v1/messages/{id}": { "get": {
                "operationId": "showMessage",
                "summary": "A job's whole story: its state and timeline since a vendor accepted it",
                "security": bearer,
                "parameters": [path_param("id", "the job's id", "order-1234-shipped")],
                "responses": with(errors(&[
                    unauthorized,
                    ("404", "Herald does not know the job (never accepted by a vendor, or older than the idempotency horizon)"),
                    redis_away,
                ]), "200", answer("the story", &story)),
            }},
            "/v1/statuses": { "post": {
                "operationId": "reportStatus",
                "summary": "A vendor's status for a message it accepted; acted on (a window-closed failure sends the fallback template, an opt-out suppresses)",
                "security": bearer,
                "requestBody": body(&status, json!({
                    "provider": "kaleyra", "vendor_message_id": "wamid.example", "status": "delivered",
                    "at": "2026-11-21T10:00:00Z",
                })),
                "responses": with(errors(&[
                    ("400", "the status is invalid: every problem is named by field; nothing was changed"),
                    unauthorized,
                    too_large,
                    ("503", "Redis or the broker is unavailable; sending the same report again is safe"),
                ]), "200", answer("what the report did", &outcome)),
            }},
            "/v1/suppressions": { "post": {
                "operationId": "suppressContact",
                "summary": "Suppress a contact of one account: the worker refuses jobs to it without a vendor call",
                "security": bearer,
                "requestBody": body(&suppress, json!({ "provider": "kaleyra", "account": "default", "contact": "+254712345678" })),
                "responses": with(errors(&[invalid, unauthorized, too_large, redis_away]),
                    "200", answer("suppressed", &suppression)),
            }},
            "/v1/suppressions/{provider}/{account}": { "get": {
                "operationId": "listSuppressions",
                "summary": "The suppressed contacts of one account",
                "security": bearer,
                "parameters": [
                    path_param("provider", "a configured provider", "kaleyra"),
                    path_param("account", "a configured account of it", "default"),
                ],
                "responses": with(errors(&[
                    ("400", "no such provider or account"),
                    unauthorized,
                    redis_away,
                ]), "200", answer("the suppressed contacts", &suppressions)),
            }},
            "/v1/suppressions/{provider}/{account}/{contact}": { "delete": {
                "operationId": "releaseSuppression",
                "summary": "Release a suppressed contact",
                "security": bearer,
                "parameters": [
                    path_param("provider", "a configured provider", "kaleyra"),
                    path_param("account", "a configured account of it", "default"),
                    path_param("contact", "E.164, with or without the +", "+254712345678"),
                ],
                "responses": with(errors(&[
                    ("400", "no such provider or account, or the contact is not E.164"),
                    unauthorized,
                    ("404", "the contact is not suppressed"),
                    redis_away,
                ]), "200", answer("released", &suppression)),
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
            "/webhooks/{provider}/{account}": {
              "get": {
                "operationId": "metaWebhookHandshake",
                "summary": "Meta's subscription handshake: the challenge back, to the holder of the account's verify token",
                "parameters": [
                    path_param("provider", "`meta`, the only provider with a handshake", "meta"),
                    path_param("account", "a configured account of it", "default"),
                    query_param("hub.mode", "must be `subscribe`", "subscribe"),
                    query_param("hub.verify_token", "the account's verify token", "verify-token"),
                    query_param("hub.challenge", "answered back as it came", "1158201444"),
                ],
                "responses": with(errors(&[
                    ("400", "not a subscription request (hub.mode is not `subscribe` or hub.challenge is missing)"),
                    ("403", "hub.verify_token is missing or wrong, or the account has no verify token configured"),
                    ("404", "not meta, or no such account"),
                ]), "200", text("hub.challenge, as it came")),
              },
              "post": {
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
                    ("401", "no or wrong webhook secret (Meta: no or wrong X-Hub-Signature-256)"),
                    ("403", "the account has no webhook secret (Meta: app secret) configured: every callback is refused"),
                    ("404", "no such provider or account"),
                    too_large,
                    ("503", "Redis or the broker is unavailable; the vendor's retry will be recorded"),
                ]), "200", answer("what was recorded", &webhook)),
              },
            },
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
