//! Herald's integration tests: the real `herald` binary and libraries against
//! the real RabbitMQ and Redis (vendors faked at the HTTP boundary only).
//! One test binary, so the workspace links it once; each module is one area.

mod support;
mod worker;
mod worker_process;
mod window;
mod rate_limit;
mod dlq;
mod enqueue;
mod topology;
mod mock_vendor;
