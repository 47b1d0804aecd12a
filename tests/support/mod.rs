//! Running the real `herald` binary inside one test's isolated environment.

#![allow(dead_code)] // each test module uses its own part of the support

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use herald_testkit::TestEnv;

/// The `herald` binary this package built.
pub fn herald_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald"))
}

/// A configuration file for one test, pointing at the test's vhost and Redis
/// prefix. `extra` is appended as-is (provider tables, retry settings …).
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TestConfig {
    pub fn new(env: &TestEnv, extra: &str) -> TestConfig {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("herald.toml");
        let text = format!(
            "[amqp]\nurl = {amqp:?}\n\n[redis]\nurl = {redis:?}\nprefix = {prefix:?}\n\n{extra}\n",
            amqp = env.amqp_url,
            redis = env.redis_url,
            prefix = env.prefix,
        );
        std::fs::write(&path, text).expect("write config");
        TestConfig { dir, path }
    }

    /// `herald --config <this> <args…>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(herald_bin());
        command
            .arg("--config")
            .arg(&self.path)
            .args(args)
            .env_remove("HERALD_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        command
    }

    /// Runs `herald <args…>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run herald")
    }
}

/// Stdout of a finished command, with its stderr in the panic message on failure.
pub fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "herald failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
