//! The HTTP side: one generic handler for every vendor path, the `/_mock`
//! control endpoints, and the shared state they work on.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::faults::{Faults, Reply};
use crate::record::{Received, Recorder, Stats};
use crate::vendors::{Endpoint, Provider, Refusal, Sent, endpoints};

/// State shared by every request and the library handle.
pub(crate) struct Shared {
    state: Mutex<Mock>,
    /// Cancelled at shutdown; hung and delayed requests give up on it, so
    /// graceful shutdown never waits for a request told to hang forever.
    pub shutdown: CancellationToken,
}

pub(crate) struct Mock {
    pub faults: Faults,
    /// Per provider, replies that take precedence over the faults, in order.
    pub scripts: BTreeMap<Provider, VecDeque<Reply>>,
    pub recorder: Recorder,
}

impl Shared {
    pub fn new(faults: Faults) -> Shared {
        let state = Mock {
            faults,
            scripts: BTreeMap::new(),
            recorder: Recorder::default(),
        };
        Shared {
            state: Mutex::new(state),
            shutdown: CancellationToken::new(),
        }
    }

    /// A panic while holding the lock leaves plain data behind, still usable.
    pub fn lock(&self) -> MutexGuard<'_, Mock> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Mock {
    /// What `endpoint` answers a request, and how long it waits first
    /// (`None`: forever). The vendor's own checks come first, then the
    /// provider's script, then its faults.
    fn answer(
        &mut self,
        endpoint: &Endpoint,
        headers: &HeaderMap,
        parsed: &Result<Value, String>,
    ) -> (Answer, Option<Duration>) {
        let refusal = match parsed {
            Err(problem) => Some(Refusal::Invalid(problem.clone())),
            Ok(request) => endpoint.check(headers, request),
        };
        if let Some(refusal) = refusal {
            return (Answer::Refuse(refusal), Some(Duration::ZERO));
        }
        let provider = endpoint.provider();
        let spec = self.faults.for_provider(provider);
        let scripted = self
            .scripts
            .get_mut(&provider)
            .and_then(VecDeque::pop_front);
        let reply = scripted
            .unwrap_or_else(|| spec.decide(self.recorder.next_seq(provider), rand::random()));
        match Answer::from(reply) {
            Answer::Hang { answer_after } => (Answer::Hang { answer_after }, answer_after),
            answer => (answer, Some(spec.latency(rand::random()))),
        }
    }
}

/// What one request gets, after checks, script and faults.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    Success,
    Refuse(Refusal),
    Hang { answer_after: Option<Duration> },
}

impl Answer {
    fn status(&self, provider: Provider) -> Option<StatusCode> {
        match self {
            Answer::Success
            | Answer::Hang {
                answer_after: Some(_),
            } => Some(StatusCode::OK),
            Answer::Refuse(refusal) => Some(refusal.status(provider)),
            Answer::Hang { answer_after: None } => None,
        }
    }
}

impl From<Reply> for Answer {
    fn from(reply: Reply) -> Answer {
        match reply {
            Reply::Ok => Answer::Success,
            Reply::Unauthorized => Answer::Refuse(Refusal::Unauthorized),
            Reply::RateLimited { retry_after_secs } => {
                Answer::Refuse(Refusal::RateLimited { retry_after_secs })
            }
            Reply::ServerError(code) => Answer::Refuse(Refusal::ServerError(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )),
            Reply::Permanent => Answer::Refuse(Refusal::Permanent),
            Reply::WindowClosed => Answer::Refuse(Refusal::WindowClosed),
            Reply::Hang { answer_after } => Answer::Hang { answer_after },
        }
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let vendors = endpoints().iter().fold(Router::new(), |router, endpoint| {
        router.route(
            endpoint.path(),
            post(
                move |State(shared): State<Arc<Shared>>,
                      headers: HeaderMap,
                      uri: Uri,
                      body: Bytes| {
                    serve_vendor(endpoint, shared, headers, uri, body)
                },
            ),
        )
    });
    vendors
        .route("/_mock/requests", get(list_requests).delete(clear_requests))
        .route("/_mock/stats", get(stats))
        .route(
            "/_mock/faults",
            get(show_faults).post(set_faults).delete(reset_faults),
        )
        .route("/_mock/script", post(add_script))
        .with_state(shared)
}

async fn serve_vendor(
    endpoint: &'static Endpoint,
    shared: Arc<Shared>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let provider = endpoint.provider();
    let received_at = Utc::now();
    let parsed = endpoint.parse(&body);
    let request = match &parsed {
        Ok(value) => value.clone(),
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    let (answer, wait) = {
        let mut mock = shared.lock();
        let (answer, wait) = mock.answer(endpoint, &headers, &parsed);
        let status = answer.status(provider).map(|s| s.as_u16());
        tracing::debug!(%provider, path = uri.path(), ?status, "mock vendor request");
        mock.recorder.record(Received {
            provider,
            path: uri.path().to_owned(),
            headers: flatten(&headers),
            body: request.clone(),
            received_at,
            status,
        });
        (answer, wait)
    };
    let answered = async {
        match wait {
            Some(wait) => tokio::time::sleep(wait).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = answered => respond(endpoint, &answer, &request, received_at, rand::random()),
        () = shared.shutdown.cancelled() => {
            (StatusCode::SERVICE_UNAVAILABLE, "mock vendor shutting down").into_response()
        }
    }
}

/// The response for an answer: pure, given the randomness for message ids.
fn respond(
    endpoint: &Endpoint,
    answer: &Answer,
    request: &Value,
    now: DateTime<Utc>,
    token: u128,
) -> Response {
    match answer {
        Answer::Success | Answer::Hang { .. } => Json(endpoint.success_body(&Sent {
            request,
            now,
            token,
        }))
        .into_response(),
        Answer::Refuse(refusal) => {
            let (status, body) = endpoint.provider().refusal(refusal, request);
            let mut response = (status, Json(body)).into_response();
            if let Refusal::RateLimited { retry_after_secs } = refusal {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            response
        }
    }
}

fn flatten(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut flat: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        flat.entry(name.as_str().to_owned())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    flat
}

/// A control request that makes no sense: 400 naming the problem.
struct BadControl(String);

impl IntoResponse for BadControl {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(json!({ "error": self.0 }))).into_response()
    }
}

/// Parses a JSON control body whatever its content type, so a bare
/// `curl -d` works, and names the offending field when it does not parse.
fn control_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, BadControl> {
    serde_json::from_slice(body).map_err(|e| BadControl(e.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFilter {
    provider: Option<Provider>,
}

async fn list_requests(
    State(shared): State<Arc<Shared>>,
    Query(filter): Query<ProviderFilter>,
) -> Json<Vec<Received>> {
    Json(shared.lock().recorder.requests(filter.provider))
}

async fn clear_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().recorder.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stats> {
    Json(shared.lock().recorder.stats())
}

fn faults_view(state: &Mock) -> Json<Value> {
    Json(json!({ "faults": state.faults, "scripts": state.scripts }))
}

async fn show_faults(State(shared): State<Arc<Shared>>) -> Json<Value> {
    faults_view(&shared.lock())
}

async fn set_faults(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, BadControl> {
    let faults: Faults = control_body(&body)?;
    faults.validate().map_err(|e| BadControl(e.to_string()))?;
    let mut state = shared.lock();
    state.faults = faults;
    Ok(faults_view(&state))
}

async fn reset_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    let mut state = shared.lock();
    state.faults = Faults::default();
    state.scripts.clear();
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Script {
    provider: Provider,
    replies: Vec<Reply>,
}

async fn add_script(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> Result<Json<Value>, BadControl> {
    let script: Script = control_body(&body)?;
    let mut state = shared.lock();
    state
        .scripts
        .entry(script.provider)
        .or_default()
        .extend(script.replies);
    Ok(faults_view(&state))
}
