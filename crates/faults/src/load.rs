//! The jobs a scenario publishes, as plain data: what goes on the wire and
//! how the job should end. Every job's text carries its id, so the vendor's
//! record of a request names the job whatever the vendor's field is called.

use herald_client::JobBuilder;
use herald_core::Job;

use crate::check::{Attempted, Expect};

/// The providers the load is spread over (text messages, no window).
pub const PROVIDERS: [&str; 3] = ["kaleyra", "pingup", "payhero"];

/// The Kaleyra account that enforces the 24-hour window, for the jobs
/// that must die `window_closed` (and be replayed once the customer wrote).
pub const WINDOWED_ACCOUNT: &str = "windowed";

/// The one customer the windowed jobs go to.
pub const WINDOWED_CONTACT: &str = "+254700000001";

const MARK: &str = "herald-fault-job[";

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Planned {
    pub id: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    pub expect: Expect,
}

impl Planned {
    pub fn attempted(&self) -> Attempted {
        Attempted {
            id: self.id.clone(),
            expect: self.expect.clone(),
        }
    }

    fn job(job: Job) -> Planned {
        Planned {
            routing_key: job.provider.clone(),
            body: job.to_body(),
            id: job.id,
            expect: Expect::Sent,
        }
    }
}

/// `n` healthy text jobs, round-robin over [`PROVIDERS`].
pub fn healthy(tag: &str, n: usize) -> Vec<Planned> {
    (0..n)
        .map(|i| {
            let id = format!("{tag}-{i:05}");
            let provider = PROVIDERS[i % PROVIDERS.len()];
            let to = format!("+2547{:08}", i);
            Planned::job(
                JobBuilder::text(&id, provider, to, text_for(&id))
                    .build()
                    .expect("a valid job"),
            )
        })
        .collect()
}

/// `n` session messages to [`WINDOWED_CONTACT`] on the windowed account.
pub fn windowed(tag: &str, n: usize) -> Vec<Planned> {
    (0..n)
        .map(|i| {
            let id = format!("{tag}-{i:05}");
            Planned::job(
                JobBuilder::text(&id, "kaleyra", WINDOWED_CONTACT, text_for(&id))
                    .account(WINDOWED_ACCOUNT)
                    .build()
                    .expect("a valid job"),
            )
        })
        .collect()
}

/// Healthy jobs with every `every`-th replaced by a poison message, cycling
/// through the ways a message can be beyond sending.
pub fn poisoned(tag: &str, n: usize, every: usize) -> Vec<Planned> {
    let mut jobs = healthy(tag, n);
    for (k, job) in jobs.iter_mut().step_by(every).enumerate() {
        *job = poison(&job.id, k);
    }
    jobs
}

/// The `k`-th kind of poison, with the reason it must die for.
fn poison(id: &str, k: usize) -> Planned {
    let to = "+254712345678";
    let text = text_for(id);
    let (routing_key, body, expect) = match k % 7 {
        0 => ("kaleyra", format!("not json: {text}"), "invalid_job"),
        1 => (
            "pingup",
            format!(
                r#"{{"id":"{id}","provider":"pingup","to":"12345","message":{{"type":"text","body":"{text}"}}}}"#
            ),
            "invalid_job",
        ),
        2 => (
            "payhero",
            format!(
                r#"{{"id":"{id}","provider":"payhero","to":"{to}","message":{{"type":"text","body":"{text}"}},"priority":"high"}}"#
            ),
            "invalid_job",
        ),
        3 => (
            "kaleyra",
            format!(
                r#"{{"id":"{id}","provider":"kaleyra","to":"{to}","message":{{"type":"text","body":""}}}}"#
            ),
            "invalid_job",
        ),
        4 => (
            "kaleyra",
            format!(
                r#"{{"id":"{id}","provider":"kaleyra","account":"nosuch","to":"{to}","message":{{"type":"text","body":"{text}"}}}}"#
            ),
            "unknown_account",
        ),
        5 => (
            "pingup",
            format!(
                r#"{{"id":"{id}","provider":"pingup","to":"{to}","message":{{"type":"media","media":"image","url":"https://example.com/{id}.png"}}}}"#
            ),
            "unsupported_message",
        ),
        _ => (
            "nosuch",
            format!(
                r#"{{"id":"{id}","provider":"nosuch","to":"{to}","message":{{"type":"text","body":"{text}"}}}}"#
            ),
            "unknown_provider",
        ),
    };
    Planned {
        id: id.to_owned(),
        routing_key: routing_key.to_owned(),
        body: body.into_bytes(),
        expect: Expect::Dead(expect),
    }
}

fn text_for(id: &str) -> String {
    format!("{MARK}{id}]")
}

/// The job id inside a request the vendor received, wherever the vendor
/// keeps the text.
pub fn job_id_in(request: &serde_json::Value) -> Option<String> {
    let text = request.to_string();
    let start = text.find(MARK)? + MARK.len();
    let len = text[start..].find(']')?;
    Some(text[start..start + len].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_is_found_in_any_vendor_field() {
        let kaleyra = serde_json::json!({"to": "254700000001", "body": text_for("sk-00007")});
        assert_eq!(job_id_in(&kaleyra).as_deref(), Some("sk-00007"));
        let pingup = serde_json::json!({"text_message": text_for("a.b:c-1")});
        assert_eq!(job_id_in(&pingup).as_deref(), Some("a.b:c-1"));
        assert_eq!(job_id_in(&serde_json::json!({"body": "hello"})), None);
    }

    #[test]
    fn every_poison_is_rejected_by_herald_core_as_its_reason_says() {
        let jobs = poisoned("p", 70, 5);
        let poison: Vec<&Planned> = jobs.iter().filter(|j| j.expect != Expect::Sent).collect();
        assert_eq!(poison.len(), 14);
        for job in poison
            .iter()
            .filter(|j| j.expect == Expect::Dead("invalid_job"))
        {
            assert!(
                herald_core::Job::parse(&job.body).is_err(),
                "{}",
                String::from_utf8_lossy(&job.body)
            );
        }
        // Unknown providers never reach a worker: the broker routes them.
        let routed = poison.iter().filter(|j| j.routing_key != "nosuch");
        for job in routed.filter(|j| j.expect != Expect::Dead("invalid_job")) {
            let parsed = herald_core::Job::parse(&job.body).expect("well-formed");
            assert_eq!(parsed.id, job.id);
        }
    }
}
