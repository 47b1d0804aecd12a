//! The classification every vendor shares: what an HTTP status means, what a
//! failure read from a body means, and WhatsApp's "window closed" error in
//! whatever wrapping a vendor relays it. Each adapter only says how to read
//! its own body ([`Reading`]).

use std::time::Duration;

use herald_core::protocol::truncate_utf8;
use serde_json::Value;

use crate::{PermanentCause, Verdict};

/// WhatsApp's "re-engagement message" error: the 24-hour window is closed.
const WINDOW_CLOSED_CODE: &str = "131047";

/// How much of an unreadable body a detail quotes.
const SUMMARY_BYTES: usize = 200;

/// A failure a vendor reported in its body.
#[derive(Debug, Default)]
pub(crate) struct Failure {
    pub code: Option<String>,
    pub detail: String,
    /// A status the vendor put in its body, which may differ from the HTTP one.
    pub vendor_status: Option<u16>,
    /// A validation error that retrying cannot fix, whatever the status says.
    pub permanent: bool,
    pub window_closed: bool,
}

/// What a vendor's body says: accepted (with its message id, if it gave
/// one), or a failure.
pub(crate) type Reading = Result<Option<String>, Failure>;

/// Classifies one answer; `read` is the vendor's reading of its JSON body
/// (`Value::Null` when the body is not JSON).
pub(crate) fn answer(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    read: impl FnOnce(&Value) -> Reading,
) -> Verdict {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = String::from_utf8_lossy(body);
    let success = (200..300).contains(&status);
    let verdict = match read(&json) {
        Ok(vendor_message_id) if success => return Verdict::Sent { vendor_message_id },
        Ok(_) => by_status(
            status,
            retry_after,
            None,
            format!("HTTP {status}: {}", summary(&text)),
        ),
        Err(failure) if failure.window_closed => window_closed(failure.code, failure.detail),
        Err(Failure {
            code,
            detail,
            permanent: true,
            ..
        }) => rejected(code, detail),
        Err(Failure {
            code,
            detail,
            vendor_status,
            ..
        }) => {
            let failed_status = vendor_status
                .into_iter()
                .chain((!success).then_some(status))
                .find(|s| !(200..300).contains(s));
            match failed_status {
                Some(s) => by_status(s, retry_after, code, detail),
                // A 2xx that says "no" without a reason: the vendor refused it.
                None => rejected(code, detail),
            }
        }
    };
    match verdict {
        Verdict::Retryable { detail, .. }
        | Verdict::Permanent {
            detail,
            cause: PermanentCause::Rejected,
            ..
        } if says_window_closed(&text) => window_closed(Some(WINDOW_CLOSED_CODE.into()), detail),
        other => other,
    }
}

fn window_closed(code: Option<String>, detail: String) -> Verdict {
    Verdict::Permanent {
        code,
        detail,
        cause: PermanentCause::WindowClosed,
    }
}

/// The vendor refused the request itself.
pub(crate) fn rejected(code: Option<String>, detail: String) -> Verdict {
    Verdict::Permanent {
        code,
        detail,
        cause: PermanentCause::Rejected,
    }
}

/// What an HTTP (or vendor-reported) failure status means: throttling and
/// server trouble pass, everything else is the request's fault.
fn by_status(
    status: u16,
    retry_after: Option<Duration>,
    code: Option<String>,
    detail: String,
) -> Verdict {
    match status {
        429 => Verdict::Retryable {
            retry_after,
            rate_limited: true,
            detail,
        },
        408 | 500..=599 => Verdict::Retryable {
            retry_after,
            rate_limited: false,
            detail,
        },
        _ => rejected(code, detail),
    }
}

/// Whether a body relays WhatsApp's error 131047, as a Cloud-API error
/// (`"code": 131047`), in Meta's message text (`(#131047) Re-engagement
/// message`), or as JSON escaped inside a vendor's own error string. A bare
/// `131047` is not enough: it could be part of a phone number.
fn says_window_closed(text: &str) -> bool {
    let normalized: String = text
        .chars()
        .filter(|c| *c != '\\' && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    [
        "code\":131047",
        "code\":\"131047\"",
        "#131047",
        "re-engagement",
    ]
    .iter()
    .any(|pattern| normalized.contains(pattern))
}

/// The start of a body that could not be read as the vendor's JSON.
fn summary(text: &str) -> String {
    match text.trim() {
        "" => "empty body".to_owned(),
        trimmed => truncate_utf8(trimmed, SUMMARY_BYTES).to_owned(),
    }
}

/// A string field, or a number shown as text (vendors are loose about which).
pub(crate) fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first human-readable message among the usual error fields.
pub(crate) fn message_of(body: &Value) -> Option<String> {
    ["message", "error_message", "error", "detail", "reason"]
        .iter()
        .find_map(|key| match body.get(key)? {
            Value::Object(inner) => inner.get("message").and_then(text_of),
            other => text_of(other),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(_: &Value) -> Reading {
        Ok(Some("m1".into()))
    }

    #[test]
    fn statuses_split_into_retryable_and_permanent() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(
            answer(429, wait, b"slow down", accept),
            Verdict::Retryable {
                retry_after: wait,
                rate_limited: true,
                detail: "HTTP 429: slow down".into()
            }
        );
        for status in [408, 500, 502, 503] {
            assert!(matches!(
                answer(status, None, b"", accept),
                Verdict::Retryable {
                    rate_limited: false,
                    ..
                }
            ));
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(matches!(
                answer(status, None, b"", accept),
                Verdict::Permanent { .. }
            ));
        }
        assert_eq!(
            answer(200, None, b"", accept),
            Verdict::Sent {
                vendor_message_id: Some("m1".into())
            }
        );
    }

    #[test]
    fn a_failure_in_a_2xx_body_is_a_failure() {
        let refuse = |_: &Value| -> Reading {
            Err(Failure {
                detail: "no".into(),
                ..Failure::default()
            })
        };
        assert!(matches!(
            answer(200, None, b"{}", refuse),
            Verdict::Permanent {
                cause: PermanentCause::Rejected,
                ..
            }
        ));
        let busy = |_: &Value| -> Reading {
            Err(Failure {
                detail: "busy".into(),
                vendor_status: Some(503),
                ..Failure::default()
            })
        };
        assert!(matches!(
            answer(200, None, b"{}", busy),
            Verdict::Retryable { .. }
        ));
        let invalid = |_: &Value| -> Reading {
            Err(Failure {
                permanent: true,
                detail: "bad".into(),
                ..Failure::default()
            })
        };
        assert!(matches!(
            answer(503, None, b"{}", invalid),
            Verdict::Permanent { .. }
        ));
    }

    #[test]
    fn whatsapp_131047_in_any_wrapping_closes_the_window() {
        let meta = br#"{"error":{"message":"(#131047) Re-engagement message","code":131047}}"#;
        let escaped = br#"{"error_message":"failed: [{\"code\":131047}]"}"#;
        for body in [&meta[..], &escaped[..]] {
            assert!(matches!(
                answer(400, None, body, accept),
                Verdict::Permanent {
                    cause: PermanentCause::WindowClosed,
                    ..
                }
            ));
        }
        // A phone number that happens to contain the digits is not the error.
        assert!(!says_window_closed(r#"{"to":"+254713104712","error":"x"}"#));
    }

    #[test]
    fn messages_are_found_in_the_usual_fields() {
        assert_eq!(
            message_of(&serde_json::json!({"error": {"message": "bad"}})),
            Some("bad".into())
        );
        assert_eq!(
            message_of(&serde_json::json!({"reason": 3})),
            Some("3".into())
        );
        assert_eq!(message_of(&serde_json::json!({})), None);
        assert_eq!(summary("  "), "empty body");
    }
}
