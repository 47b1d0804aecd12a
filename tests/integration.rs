//! Herald's integration tests: the real `herald` binary and libraries against
//! the real RabbitMQ and Redis (vendors faked at the HTTP boundary only).
//! One test binary, so the workspace links it once; each module is one area.

mod bench;
mod cli;
mod dlq;
mod enqueue;
mod help_examples;
mod lifecycle;
mod metrics;
mod mock_vendor;
mod rate_limit;
mod support;
mod topology;
mod window;
mod worker;
mod worker_process;
