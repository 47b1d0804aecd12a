//! Running the real `herald` binary inside one test's isolated environment.

#![allow(dead_code)] // each test module uses its own part of the support

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use herald_testkit::TestEnv;

/// The `herald` binary this package built.
pub fn herald_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_herald"))
}

/// A configuration file for one test. The file holds `toml` as given
/// (provider tables, retry settings …); the test's vhost and Redis prefix
/// reach the process as environment overrides, so `toml` may have its own
/// `[amqp]` or `[redis]` tables.
pub struct TestConfig {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    overrides: Vec<(String, String)>,
}

impl TestConfig {
    pub fn new(env: &TestEnv, toml: &str) -> TestConfig {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, toml).expect("write config");
        let overrides = vec![
            ("HERALD_AMQP_URL".to_owned(), env.amqp_url.clone()),
            ("HERALD_REDIS_URL".to_owned(), env.redis_url.clone()),
            ("HERALD_REDIS_PREFIX".to_owned(), env.prefix.clone()),
        ];
        TestConfig {
            dir,
            path,
            overrides,
        }
    }

    /// Writes a file next to the configuration (a secret, a CSV …).
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path
    }

    /// The configuration as the process sees it.
    pub fn load(&self) -> herald_core::Config {
        herald_core::Config::from_toml_with_env(
            &std::fs::read_to_string(&self.path).unwrap(),
            &self.overrides,
        )
        .expect("test configuration")
    }

    /// `herald --config <this> <args…>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(herald_bin());
        command
            .arg("--config")
            .arg(&self.path)
            .args(args)
            .env_remove("HERALD_CONFIG")
            .envs(self.overrides.iter().map(|(k, v)| (k, v)))
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

/// Messages ready in `queue`, read with a passive declaration (exact, unlike
/// the management API's figures, which lag).
pub async fn queue_depth(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = lapin::options::QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
        .await
        .expect("the queue exists")
        .message_count()
}

/// A spawned `herald` process that is killed if the test ends (or panics)
/// before stopping it, so no test leaves a worker behind.
pub struct Running(pub std::process::Child);

impl Running {
    pub fn spawn(command: &mut Command) -> Running {
        Running(command.spawn().expect("spawn herald"))
    }
}

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The test's side of the broker: `topology` declared, a channel for reading
/// queues, and a confirming publisher. Keep `connection` for as long as the
/// channel and publisher are used.
pub struct Broker {
    pub connection: lapin::Connection,
    pub channel: lapin::Channel,
    pub publisher: herald_client::Publisher,
}

pub async fn broker(env: &TestEnv, topology: &herald_client::Topology) -> Broker {
    let connection = herald_client::connect(&env.amqp_url, "test")
        .await
        .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    topology
        .declare(&channel)
        .await
        .expect("declare the topology");
    let publisher = herald_client::Publisher::new(&connection)
        .await
        .expect("publisher");
    Broker {
        connection,
        channel,
        publisher,
    }
}
