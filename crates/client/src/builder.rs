//! A typed way to build a job in Rust; `build` applies the same validation a
//! published body gets, so a producer cannot publish what the worker rejects.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use herald_core::job::DEFAULT_ACCOUNT;
use herald_core::{Job, JobErrors, Message};

#[derive(Debug, Clone)]
pub struct JobBuilder {
    job: Job,
}

impl JobBuilder {
    /// A job of any message kind.
    pub fn new(
        id: impl Into<String>,
        provider: impl Into<String>,
        to: impl Into<String>,
        message: Message,
    ) -> Self {
        JobBuilder {
            job: Job {
                id: id.into(),
                provider: provider.into(),
                account: DEFAULT_ACCOUNT.to_owned(),
                to: to.into(),
                message,
                fallback_template: None,
                not_before: None,
                expires_at: None,
                options: BTreeMap::new(),
                metadata: None,
            },
        }
    }

    /// A free-form text (session) message.
    pub fn text(
        id: impl Into<String>,
        provider: impl Into<String>,
        to: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        JobBuilder::new(id, provider, to, Message::Text { body: body.into() })
    }

    /// A template message with body parameters.
    pub fn template(
        id: impl Into<String>,
        provider: impl Into<String>,
        to: impl Into<String>,
        name: impl Into<String>,
        language: impl Into<String>,
        params: Vec<String>,
    ) -> Self {
        let message = Message::Template {
            name: name.into(),
            language: language.into(),
            header: None,
            body: params,
        };
        JobBuilder::new(id, provider, to, message)
    }

    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.job.account = account.into();
        self
    }

    /// The template sent instead when the 24-hour window is closed.
    pub fn fallback_template(
        mut self,
        name: impl Into<String>,
        language: impl Into<String>,
        params: Vec<String>,
    ) -> Self {
        self.job.fallback_template = Some(Message::Template {
            name: name.into(),
            language: language.into(),
            header: None,
            body: params,
        });
        self
    }

    pub fn not_before(mut self, at: DateTime<Utc>) -> Self {
        self.job.not_before = Some(at);
        self
    }

    pub fn expires_at(mut self, at: DateTime<Utc>) -> Self {
        self.job.expires_at = Some(at);
        self
    }

    pub fn option(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.job.options.insert(key.into(), value.into());
        self
    }

    pub fn metadata(mut self, metadata: Map<String, Value>) -> Self {
        self.job.metadata = Some(metadata);
        self
    }

    /// The validated job, or every problem with it.
    pub fn build(self) -> Result<Job, JobErrors> {
        self.job.validate()?;
        Ok(self.job)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_valid_job_and_rejects_an_invalid_one() {
        let job = JobBuilder::text("order-1", "kaleyra", "+254712345678", "shipped")
            .account("acme")
            .fallback_template("order_update", "en", vec!["1".into()])
            .option("ref", "cust-88")
            .build()
            .unwrap();
        assert_eq!(job.account, "acme");
        assert_eq!(Job::parse(&job.to_body()).unwrap(), job);

        let errors = JobBuilder::text("bad id!", "kaleyra", "0712", "")
            .build()
            .unwrap_err();
        for field in ["id", "to", "message.body"] {
            assert!(errors.mentions(field), "{field} in {errors}");
        }
    }
}
