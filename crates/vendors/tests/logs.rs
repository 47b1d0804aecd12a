//! No secret reaches a log line, even when a vendor echoes it. A test binary
//! of its own: tracing caches each log call site's interest when it is first
//! hit, and a send on another test's thread (no subscriber) at that moment
//! could leave this test's subscriber deaf to it.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{KEY, answering, text};
use herald_vendors::Verdict;
use serde_json::json;
use wiremock::ResponseTemplate;

/// A `MakeWriter` that keeps every log line for inspection.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn secrets_echoed_by_a_vendor_appear_in_no_answer_and_no_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // 99digital with showRequest on, answering FAIL and echoing the request
    // with its key; a rejection that quotes the key in its message.
    let echo = json!({
        "status": "FAIL",
        "reason": 4,
        "message": format!("apiKey {KEY} is not allowed to send from this number"),
        "originalRequest": {"apiKey": KEY, "from": "972771234567", "to": "972501234567", "body": "hi"}
    });
    for status in [200, 401] {
        let (_server, account) = answering(
            "99digital",
            ResponseTemplate::new(status).set_body_json(&echo),
        )
        .await;
        let answer = account.send("+972501234567", &text("hi"), &[]).await;
        assert!(
            matches!(answer.verdict, Verdict::Permanent { .. }),
            "{answer:?}"
        );
        let response = answer.response.clone().unwrap();
        assert!(
            response.contains("[redacted]") && response.contains("972501234567"),
            "{response}"
        );
        assert!(!format!("{answer:?}").contains(KEY), "{answer:?}");
    }

    // PayHero quoting its Authorization header in the error it puts in `detail`.
    let quoted = json!({
        "error_code": "UNAUTHORIZED",
        "error_message": format!("invalid credentials in header 'Authorization: Basic {KEY}'"),
        "status_code": 401
    });
    let (_server, account) =
        answering("payhero", ResponseTemplate::new(401).set_body_json(&quoted)).await;
    let answer = account.send("+254787877878", &text("hi"), &[]).await;
    let Verdict::Permanent { detail, .. } = &answer.verdict else {
        panic!("{answer:?}")
    };
    assert_eq!(
        detail,
        "invalid credentials in header 'Authorization: Basic [redacted]'"
    );
    assert!(!format!("{answer:?}").contains(KEY), "{answer:?}");

    let logs = logs.text();
    assert!(
        logs.contains("vendor answered"),
        "the sends were logged: {logs}"
    );
    assert!(!logs.contains(KEY), "{logs}");
}
