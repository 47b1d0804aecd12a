//! Herald's plain data: the send job and its validation (CONTRACT §1), the
//! names on the wire (§2–§4) and the configuration (§9).
//!
//! Owns: what a job, a dead-letter reason, an event and a configuration *are*.
//! Must not touch: the network. No broker, Redis or HTTP code lives here, so
//! every other crate can depend on it and every rule here is unit-testable.

pub mod config;
pub mod job;
pub mod metrics;
pub mod protocol;

pub use config::{AccountConfig, Config, ConfigError, ConfigErrors, RateScope, Secret};
pub use job::{Job, JobErrors, MediaKind, Message, Problem, TemplateHeader};
pub use protocol::{DeadReason, Event, EventStatus};
