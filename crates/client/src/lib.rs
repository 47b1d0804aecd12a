//! The AMQP side shared by producers, the worker and the operator tools: a
//! typed job builder, a publisher that reports success only after the
//! broker's confirm, and the broker topology of CONTRACT §2.
//!
//! Owns: connecting to RabbitMQ, declaring and inspecting the topology, and
//! confirmed publishing. Must not touch: what happens to a job (that is the
//! worker's pipeline) or Redis.

mod builder;
pub mod bulk;
mod publisher;
pub mod topology;

pub use builder::JobBuilder;
pub use publisher::{
    Outgoing, PendingConfirm, PublishError, Publisher, header_str, header_u32, job_message,
    persistent_json, without_headers,
};
pub use topology::{QueueStatus, Topology};

use lapin::{Connection, ConnectionProperties};

/// Connects to the broker, naming the connection after its role so the
/// management UI shows who is who.
pub async fn connect(url: &str, role: &str) -> Result<Connection, lapin::Error> {
    let properties =
        ConnectionProperties::default().with_connection_name(format!("herald {role}").into());
    Connection::connect(url, properties).await
}

/// A URL safe to print: the password replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
