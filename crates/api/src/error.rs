//! Every error answer has one shape: `{"error": "…", "problems": […]}`, so a
//! client needs one code path to show what went wrong.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An answer that is not a success.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: String,
    /// Details, one JSON object each (`{"field","problem"}`, plus `"job"` for a job).
    pub problems: Vec<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            problems: Vec::new(),
        }
    }

    /// `400` with the problems of a request's fields.
    pub fn invalid(error: impl Into<String>, problems: Vec<Value>) -> ApiError {
        ApiError {
            problems,
            ..ApiError::new(StatusCode::BAD_REQUEST, error)
        }
    }

    /// `503`: a service Herald depends on did not do its part; try again.
    pub fn unavailable(error: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "problems": self.problems });
        (self.status, Json(body)).into_response()
    }
}

/// One problem with one field of a request.
pub fn problem(field: &str, problem: impl Into<String>) -> Value {
    json!({ "field": field, "problem": problem.into() })
}

/// The request body, or why it could not be read (too large → `413`).
pub fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let error = if status == StatusCode::PAYLOAD_TOO_LARGE {
            format!(
                "the request body is larger than {} bytes; send fewer jobs per request",
                crate::MAX_BODY_BYTES
            )
        } else {
            format!("could not read the request body: {}", rejection.body_text())
        };
        ApiError::new(status, error)
    })
}

/// The body as JSON, or a `400` saying where it stops being JSON.
pub fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(
            "the request body is not JSON",
            vec![problem("$", e.to_string())],
        )
    })
}
