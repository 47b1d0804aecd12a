//! `POST /v1/messages`: a job or `{"jobs":[…]}`. Every job is validated
//! first; only when all are valid are they published, and the answer waits
//! for every confirm.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use chrono::Utc;
use serde_json::{Value, json};
use tracing::{info, warn};

use herald_core::job::DEFAULT_ACCOUNT;
use herald_core::{Config, Job, Problem};

use crate::error::{self, ApiError};
use crate::openapi::Accepted;
use crate::{Api, metrics};

pub async fn post(
    State(api): State<Api>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let body = error::body(body)?;
    let jobs = read_jobs(&body, api.config()).inspect_err(|_| metrics::jobs_refused("invalid"))?;
    if let Err(e) = api.broker().publish_all(&jobs).await {
        warn!(error = %e, jobs = jobs.len(), "jobs not confirmed by the broker");
        metrics::jobs_refused("broker_unavailable");
        return Err(ApiError::unavailable(format!(
            "the broker did not confirm the jobs ({e}). Some may have been queued; \
             sending the same request again is safe, since jobs with one id are one message"
        )));
    }
    for job in &jobs {
        metrics::job_published(&job.provider);
    }
    info!(jobs = jobs.len(), "jobs published");
    let ids = jobs.into_iter().map(|job| job.id).collect();
    Ok((StatusCode::ACCEPTED, Json(Accepted { ids })))
}

/// The jobs of a request body, or a `400` naming every problem of every
/// job by its index and field.
pub fn read_jobs(body: &[u8], config: &Config) -> Result<Vec<Job>, ApiError> {
    let values = submitted(error::json_body(body)?)?;
    let count = values.len();
    let mut jobs = Vec::with_capacity(count);
    let mut problems = Vec::new();
    let mut invalid = 0;
    let now = Utc::now();
    for (index, value) in values.into_iter().enumerate() {
        let mut routing = routing_problems(&value, config);
        let found = match Job::from_value(value) {
            Ok(job) if routing.is_empty() => match job.check_sendable(now) {
                Ok(()) => {
                    jobs.push(job);
                    continue;
                }
                Err(errors) => errors.problems,
            },
            Ok(_) => routing,
            Err(errors) => {
                // One problem per field: a malformed provider is not also "not configured".
                routing.retain(|p| !errors.mentions(&p.field));
                errors.problems.into_iter().chain(routing).collect()
            }
        };
        invalid += 1;
        problems.extend(
            found
                .into_iter()
                .map(|p| json!({ "job": index, "field": p.field, "problem": p.problem })),
        );
    }
    if problems.is_empty() {
        return Ok(jobs);
    }
    let error = if count == 1 {
        "the job is invalid; nothing was published".to_owned()
    } else {
        format!("{invalid} of {count} jobs are invalid; nothing was published")
    };
    Err(ApiError::invalid(error, problems))
}

/// The submitted jobs: the body itself, or the array of a `{"jobs":[…]}` batch.
fn submitted(body: Value) -> Result<Vec<Value>, ApiError> {
    let Value::Object(mut fields) = body else {
        return Ok(vec![body]);
    };
    let Some(jobs) = fields.remove("jobs") else {
        return Ok(vec![Value::Object(fields)]);
    };
    let mut problems: Vec<Value> = fields
        .keys()
        .map(|key| error::problem(key, "unknown field: a batch is {\"jobs\": [ … ]} only"))
        .collect();
    match jobs {
        Value::Array(jobs) if !jobs.is_empty() && problems.is_empty() => return Ok(jobs),
        Value::Array(jobs) if jobs.is_empty() => {
            problems.push(error::problem("jobs", "is empty: send at least one job"));
        }
        Value::Array(_) => {}
        _ => problems.push(error::problem("jobs", "must be an array of jobs")),
    }
    Err(ApiError::invalid(
        "the batch is malformed; nothing was published",
        problems,
    ))
}

/// A job for a provider or account this configuration does not know would
/// only reach the dead-letter queue: say so to the producer instead.
fn routing_problems(job: &Value, config: &Config) -> Vec<Problem> {
    let Some(provider) = job.get("provider").and_then(Value::as_str) else {
        return Vec::new();
    };
    let account = job
        .get("account")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ACCOUNT);
    let problem = |field: &str, problem: String| {
        vec![Problem {
            field: field.to_owned(),
            problem,
        }]
    };
    match config.providers.get(provider) {
        None => {
            let known: Vec<&str> = config.provider_names().collect();
            let known = if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            };
            problem(
                "provider",
                format!("no provider `{provider}` is configured (configured: {known})"),
            )
        }
        Some(accounts) if !accounts.contains_key(account) => problem(
            "account",
            format!(
                "provider `{provider}` has no account `{account}` (expected [providers.{provider}.{account}])"
            ),
        ),
        Some(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let toml = "[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n\
                    [providers.payhero.default]\nbase_url = \"https://backend.payhero.co.ke\"\n";
        Config::from_toml_with_env(toml, &[]).expect("valid configuration")
    }

    fn job(id: &str, provider: &str) -> Value {
        json!({"id": id, "provider": provider, "to": "+254712345678",
               "message": {"type": "text", "body": "hi"}})
    }

    fn fields(error: &ApiError) -> Vec<(u64, String)> {
        error
            .problems
            .iter()
            .map(|p| {
                (
                    p["job"].as_u64().unwrap(),
                    p["field"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn a_single_job_or_a_batch() {
        let one = read_jobs(job("a", "kaleyra").to_string().as_bytes(), &config()).unwrap();
        assert_eq!(one[0].id, "a");
        let batch = json!({"jobs": [job("a", "kaleyra"), job("b", "payhero")]});
        let many = read_jobs(batch.to_string().as_bytes(), &config()).unwrap();
        let ids: Vec<&str> = many.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn every_problem_of_every_job_is_named_by_index_and_field() {
        let mut bad = job("b", "kaleyra");
        bad["to"] = json!("0712");
        bad["colour"] = json!("red");
        let batch = json!({"jobs": [job("a", "kaleyra"), bad, job("c", "nope")]});
        let error = read_jobs(batch.to_string().as_bytes(), &config()).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.error.contains("2 of 3 jobs"), "{}", error.error);
        let mut named = fields(&error);
        named.sort();
        assert_eq!(
            named,
            [
                (1, "colour".into()),
                (1, "to".into()),
                (2, "provider".into())
            ]
        );
    }

    #[test]
    fn an_unconfigured_account_is_named() {
        let mut typo = job("a", "kaleyra");
        typo["account"] = json!("defualt");
        let error = read_jobs(typo.to_string().as_bytes(), &config()).unwrap_err();
        assert_eq!(fields(&error), [(0, "account".into())]);
        assert!(
            error.problems[0]["problem"]
                .as_str()
                .unwrap()
                .contains("[providers.kaleyra.defualt]")
        );
    }

    #[test]
    fn a_malformed_provider_is_not_also_called_unconfigured() {
        let error = read_jobs(job("a", "Bad Name!").to_string().as_bytes(), &config()).unwrap_err();
        assert_eq!(fields(&error), [(0, "provider".into())]);
    }

    #[test]
    fn malformed_batches_and_bodies_are_refused() {
        for (body, field) in [
            (json!({"jobs": []}), "jobs"),
            (json!({"jobs": {"id": "a"}}), "jobs"),
            (json!({"jobs": [job("a", "kaleyra")], "extra": 1}), "extra"),
        ] {
            let error = read_jobs(body.to_string().as_bytes(), &config()).unwrap_err();
            assert_eq!(error.problems[0]["field"], field, "{body}");
        }
        let error = read_jobs(b"{not json", &config()).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.error.contains("not JSON"));
    }
}
