//! Herald's state in Redis (CONTRACT §5): which jobs were sent (idempotency)
//! and which are being sent (in-flight marks), each contact's last inbound
//! message (the 24-hour window), vendor-requested account pauses, the
//! vendor message ids already taken from webhooks, and the rate limits
//! shared by every replica.
//!
//! Owns: every Redis key under the configured prefix, the Lua scripts that
//! change them atomically, the send path's state contract ([`SendState`],
//! with an in-memory twin for tests) and the pure window rule ([`WindowState`]).
//! Must not touch: the broker, the vendors, or what a send *means*; the
//! worker decides what to do with the answers given here.
//!
//! Keys, under the prefix (default `herald:`):
//! - `sent:<job id>` = vendor message id (`""` when none), TTL = idempotency horizon
//! - `inflight:<job id>` = the claim's token, TTL = the permits' wait and the
//!   longest vendor call; only its owner releases it
//! - `suppressed:<provider>:<account>:<digits>` = epoch ms it was suppressed
//! - `inbound:<provider>:<account>:<digits>` = epoch ms, only moves forward,
//!   expires window + 1 h after the stored time
//! - `pause:<provider>:<account>`, TTL = the pause
//! - `webhook:<provider>:<account>:<message id>`, TTL = longer than the
//!   vendor retries a webhook (de-duplicates redelivered webhooks)
//! - `rate:<provider>:<account>`, `pace:<provider>:<account>:<digits>` = GCRA
//!   theoretical arrival time in µs, expiring once idle

mod limit;
mod memory;
mod state;
mod store;
mod window;

pub use limit::{FALLBACK_SHARE, Limiter, REDIS_RETRY_INTERVAL, Rate, RecipientPacer};
pub use memory::MemoryState;
pub use state::{Admission, Admit, Claim, Recorded, SendState, Unrecorded};
pub use store::{Contact, Store, StoreError};
pub use window::{WindowState, inbound_time, oldest_open_inbound};
