//! The fault suite of `crates/faults` against this package's `herald`
//! binary: `cargo test --test faults -- short|full [scenario…]`. Exits
//! non-zero when a job was lost, a duplicate is unexplained or a dead
//! letter has the wrong reason.

use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = match herald_faults::Plan::from_args(&args) {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("fault suite: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(herald_faults::run(
        Path::new(env!("CARGO_BIN_EXE_herald")),
        &plan,
    )) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("fault suite: {e:#}");
            ExitCode::FAILURE
        }
    }
}
