//! The one place that talks HTTP: sends a rendered request with the shared
//! client and hands the status, `Retry-After` and body to the adapter's
//! classification. Redaction happens in the caller, which knows the secrets.

use std::error::Error as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::RETRY_AFTER;

use crate::{Adapter, RequestBody, VendorRequest, Verdict};

/// The most of a vendor's body read: answers are small, and a misbehaving
/// vendor must not balloon a worker's memory.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The process's one pooled client.
pub(crate) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// An answer before redaction.
pub(crate) struct RawAnswer {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub body: Option<Vec<u8>>,
}

pub(crate) async fn send(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    request: &VendorRequest,
    adapter: &dyn Adapter,
) -> RawAnswer {
    let mut builder = client.post(url).timeout(timeout);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    builder = match &request.body {
        RequestBody::Json(value) => builder.json(value),
        RequestBody::Form(pairs) => builder.form(pairs),
    };
    let response = match builder.send().await {
        Ok(response) => response,
        Err(e) => {
            return RawAnswer {
                verdict: network_failure(&e, timeout),
                status: None,
                body: None,
            };
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()));
    // A body cut short is classified from what arrived: the status has
    // already been given, and calling a 2xx a failure would send twice.
    let body = read_capped(response).await;
    RawAnswer {
        verdict: adapter.classify(status, retry_after, &body),
        status: Some(status),
        body: Some(body),
    }
}

/// Network errors and timeouts: the vendor may never have seen the request.
fn network_failure(error: &reqwest::Error, timeout: Duration) -> Verdict {
    let detail = if error.is_timeout() {
        format!(
            "no answer within {}",
            herald_core::config::format_duration(timeout)
        )
    } else {
        // reqwest's own message is terse; the cause (refused, reset, DNS) is in the chain.
        let mut detail = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            detail.push_str(": ");
            detail.push_str(&cause.to_string());
            source = cause.source();
        }
        detail
    };
    Verdict::Retryable {
        retry_after: None,
        rate_limited: false,
        detail,
    }
}

async fn read_capped(mut response: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_BODY_BYTES - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == MAX_BODY_BYTES {
            break;
        }
    }
    body
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3); a date
/// in the past means "now".
pub(crate) fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:27:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
