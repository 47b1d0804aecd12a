//! The API's one broker session: publishes jobs with confirms, and opens a
//! fresh session (redeclaring the topology) when the last one broke.

use std::time::Duration;

use futures::future::try_join_all;
use lapin::Connection;
use tokio::sync::Mutex;
use tracing::{info, warn};

use herald_client::{
    Outgoing, PendingConfirm, PublishError, Publisher, Topology, connect, redact_url,
};
use herald_core::protocol::EVENTS_EXCHANGE;
use herald_core::{Job, LifecycleEvent};

/// Longest a request waits for the broker: connecting, publishing and
/// every confirm. A broker that blocks publishers (memory alarm) must not
/// hold HTTP requests forever.
const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// Why jobs are not known to be published.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach the broker: {0}")]
    Unreachable(lapin::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("the broker did not confirm within {}s", PUBLISH_DEADLINE.as_secs())]
    NoConfirm,
}

struct Session {
    // Kept so the connection lives as long as its channel.
    connection: Connection,
    publisher: Publisher,
}

impl Session {
    async fn open(url: &str, topology: &Topology) -> Result<Session, lapin::Error> {
        let connection = connect(url, "api").await?;
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        let publisher = Publisher::on_channel(channel).await?;
        Ok(Session {
            connection,
            publisher,
        })
    }

    fn usable(&self) -> bool {
        self.connection.status().connected() && self.publisher.channel().status().connected()
    }
}

pub struct Broker {
    url: String,
    topology: Topology,
    session: Mutex<Option<Session>>,
}

impl Broker {
    /// Connects and declares the topology, so a misconfigured broker stops
    /// the start instead of the first request.
    pub async fn connect(url: &str, topology: Topology) -> Result<Broker, lapin::Error> {
        let session = Session::open(url, &topology).await?;
        info!(broker = %redact_url(url), "connected to the broker; topology declared");
        Ok(Broker {
            url: url.to_owned(),
            topology,
            session: Mutex::new(Some(session)),
        })
    }

    /// The current publisher, reconnecting first when the session broke.
    async fn publisher(&self) -> Result<Publisher, lapin::Error> {
        let mut session = self.session.lock().await;
        if let Some(current) = session.as_ref().filter(|s| s.usable()) {
            return Ok(current.publisher.clone());
        }
        warn!(broker = %redact_url(&self.url), "broker session lost; reconnecting");
        let fresh = Session::open(&self.url, &self.topology).await?;
        let publisher = fresh.publisher.clone();
        *session = Some(fresh);
        Ok(publisher)
    }

    /// Publishes every job, all in flight at once, and returns once the
    /// broker confirmed each one: `Ok` means every job is durably queued.
    pub async fn publish_all(&self, jobs: &[Job]) -> Result<(), BrokerError> {
        let publish = async {
            let publisher = self.publisher().await.map_err(BrokerError::Unreachable)?;
            let mut pending = Vec::with_capacity(jobs.len());
            for job in jobs {
                pending.push(publisher.start_job(job).await?);
            }
            try_join_all(pending.into_iter().map(PendingConfirm::wait)).await?;
            Ok(())
        };
        tokio::time::timeout(PUBLISH_DEADLINE, publish)
            .await
            .map_err(|_| BrokerError::NoConfirm)?
    }

    /// Publishes a lifecycle event (CONTRACT §10) and waits for its confirm;
    /// an event nobody is bound to is not an error.
    pub async fn publish_event(&self, event: &LifecycleEvent) -> Result<(), BrokerError> {
        let body = serde_json::to_vec(event).expect("an event serialises");
        let routing_key = event.event.routing_key();
        let publish = async {
            let publisher = self.publisher().await.map_err(BrokerError::Unreachable)?;
            let message = Outgoing::json(EVENTS_EXCHANGE, &routing_key, &body).unrouted_ok();
            publisher.publish(message).await?;
            Ok(())
        };
        tokio::time::timeout(PUBLISH_DEADLINE, publish)
            .await
            .map_err(|_| BrokerError::NoConfirm)?
    }

    /// Closes the session cleanly (on shutdown).
    pub async fn close(&self) {
        if let Some(session) = self.session.lock().await.take()
            && let Err(e) = session
                .connection
                .close(200, "herald api stopping".into())
                .await
        {
            warn!(error = %e, "closing the broker connection");
        }
    }
}
