//! Vendor adapters: one module per Business Solution Provider behind the
//! [`Adapter`] trait, and [`Vendors`], which sends a rendered request with one
//! pooled HTTP client.
//!
//! Owns: each vendor's wire format (path, auth, encoding, field names, phone
//! format), the reading of its answers, and the classification of failures.
//! Adapters are pure functions over plain data; only [`Vendors::send`] does IO.
//! Must not touch: the broker, Redis, retries or the 24-hour window: it
//! answers "what did the vendor say", never "what happens to the job next".
//! Secrets never leave this crate: requests carry them, errors and
//! recorded responses never do.

// Skeleton: the adapter modules and `Vendors` are filled in by the vendor work.
