//! A stand-in for the WhatsApp vendors Herald sends through (the five BSPs
//! and Meta's Cloud API), served on
//! localhost for demos, integration tests and benchmarks (`herald
//! mock-vendor`, `herald bench`).
//!
//! Owns: each vendor's send API as its docs describe it (paths, encodings,
//! auth, success and error bodies), a record of what was received, and fault
//! injection (latency, 5xx, 429 with `Retry-After`, permanent refusals,
//! WhatsApp's 131047, hangs, scripted sequences).
//! Must not touch: Herald's own adapters (`herald-vendors`), the broker or
//! Redis. It checks that a credential is present, never what it is.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use herald_mock_vendor::{Faults, MockVendor, Provider, Reply};
//! let mock = MockVendor::start("127.0.0.1:0".parse().unwrap(), Faults::default()).await?;
//! mock.script(Provider::Kaleyra, [Reply::ServerError(500), Reply::Ok]);
//! // point an adapter's base_url at mock.base_url(), send, then:
//! let received = mock.requests_for(Provider::Kaleyra);
//! mock.shutdown().await
//! # }
//! ```

mod faults;
mod record;
mod server;
mod vendors;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::DropGuard;

pub use faults::{FaultSpec, Faults, InvalidFaults, Reply};
pub use record::{ProviderStats, Received, Stats};
pub use vendors::{Auth, Endpoint, Provider, endpoints};

use server::Shared;

/// The mock vendor server.
pub struct MockVendor;

impl MockVendor {
    /// Binds `addr` (port 0 picks a free one) and serves until the handle is
    /// shut down or dropped.
    pub async fn start(addr: SocketAddr, faults: Faults) -> io::Result<MockVendorHandle> {
        faults
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(faults));
        let shutdown = shared.shutdown.clone();
        let serve = axum::serve(listener, server::router(shared.clone()))
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let task = tokio::spawn(async move { serve.await });
        Ok(MockVendorHandle {
            addr,
            shared,
            task,
            _stop_on_drop: shutdown.drop_guard(),
        })
    }
}

/// A running mock: where it listens, what it received, and its faults.
pub struct MockVendorHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<io::Result<()>>,
    _stop_on_drop: DropGuard,
}

impl MockVendorHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`: the `base_url` to configure for any provider.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received (up to the last 100 000), oldest first.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.lock().recorder.requests(None)
    }

    pub fn requests_for(&self, provider: Provider) -> Vec<Received> {
        self.shared.lock().recorder.requests(Some(provider))
    }

    /// Counts per provider and status since the last clear.
    pub fn stats(&self) -> Stats {
        self.shared.lock().recorder.stats()
    }

    /// Forgets the requests and counts so far.
    pub fn clear_requests(&self) {
        self.shared.lock().recorder.clear();
    }

    /// Replaces the faults; pending scripts are kept.
    pub fn set_faults(&self, faults: Faults) -> Result<(), InvalidFaults> {
        faults.validate()?;
        self.shared.lock().faults = faults;
        Ok(())
    }

    /// Queues replies for `provider`'s next requests, ahead of its faults.
    pub fn script(&self, provider: Provider, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .lock()
            .scripts
            .entry(provider)
            .or_default()
            .extend(replies);
    }

    /// Stops accepting, abandons hung requests, and waits for the rest.
    pub async fn shutdown(self) -> io::Result<()> {
        let MockVendorHandle {
            task,
            _stop_on_drop,
            ..
        } = self;
        drop(_stop_on_drop);
        task.await.map_err(io::Error::other)?
    }
}
