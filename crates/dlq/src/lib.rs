//! Dead-letter tooling: reading the `herald.dead` queue as plain
//! [`DeadLetter`]s, and the engines behind `herald dlq`: browse (list, show,
//! stats, export), replay, purge and import.
//!
//! Owns: everything done to the dead-letter queue after a letter lands in it.
//! Every engine works in one bounded [`pass`](Pass) over what the queue held
//! when it started, leaves the letters it does not act on in place, and
//! removes a letter only after what replaces it (a confirmed republish, or an
//! export line on disk) is durable: a crash at any instant loses nothing and
//! doubles at most the one letter in flight.
//!
//! Must not touch: how letters are made (the worker's settle step), the
//! topology (herald-client declares it), or terminals (the CLI draws tables
//! and progress bars; engines report through [`Progress`]).

mod browse;
pub mod filter;
pub mod letter;
pub mod line;
mod pass;
mod replay;
mod transfer;

pub use browse::{Stats, browse, collect, stats};
pub use filter::{Filter, parse_instant};
pub use letter::{DeadLetter, Envelope, XDeath};
pub use line::{ExportLine, LineError};
pub use pass::{Pass, Taken, Tally};
pub use replay::{Rate, ReplayOptions, ReplayReport, replay, replayed_properties};
pub use transfer::{
    ExportFile, ImportReport, ImportTarget, PurgeReport, export, import, purge, read_export,
};

use std::path::PathBuf;

use herald_client::PublishError;

/// Which letters a command acts on: those the filter matches, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    pub filter: Filter,
    pub limit: Option<u64>,
}

/// Hears how far an engine got, e.g. to draw a progress bar.
pub trait Progress {
    /// The number of steps the work will take.
    fn start(&self, total: u64);
    /// One more step done.
    fn step(&self);
}

/// No progress reporting.
impl Progress for () {
    fn start(&self, _total: u64) {}
    fn step(&self) {}
}

#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error(
        "cannot open the dead-letter queue herald.dead (declare the topology with `herald topology declare`): {0}"
    )]
    NoDeadQueue(lapin::Error),
    #[error("the broker cancelled the dead-letter queue consumer")]
    ConsumerCancelled,
    #[error(
        "the channel closed before an ack reached the broker: that letter stays in herald.dead and may now exist twice"
    )]
    AckLost,
    #[error("publish failed: {0}")]
    Publish(#[from] PublishError),
    #[error("{}: {source}", path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}, line {line}: {source}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        source: LineError,
    },
    #[error("import stopped after {imported} of {total} messages: {source}")]
    ImportStopped {
        imported: u64,
        total: u64,
        source: PublishError,
    },
}
