//! A private `redis-server` on a random loopback port, so a scenario can
//! stop it and start it again without touching the machine's own Redis.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Whether the data outlives a crash of the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// Append-only file, fsynced on every write: a SIGKILL loses nothing.
    Kept,
    /// Memory only: a restart starts empty.
    Lost,
}

pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    persistence: Persistence,
    /// `None` while stopped; killed when dropped.
    server: Option<Child>,
}

impl PrivateRedis {
    /// Starts a server keeping its files in `dir`, and waits until it answers.
    pub async fn start(dir: &Path, persistence: Persistence) -> anyhow::Result<PrivateRedis> {
        let mut redis = PrivateRedis {
            port: crate::free_port()?,
            dir: dir.to_owned(),
            persistence,
            server: None,
        };
        redis.restart().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Crashes the server (SIGKILL), as an outage would.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut server) = self.server.take() {
            server.kill().await.context("kill redis-server")?;
        }
        Ok(())
    }

    /// Starts the server again on the same port, with whatever its
    /// persistence kept.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let appendonly = match self.persistence {
            Persistence::Kept => "yes",
            Persistence::Lost => "no",
        };
        let port = self.port.to_string();
        let server = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port, "--save", ""])
            .args(["--appendonly", appendonly, "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start redis-server (is it installed?)")?;
        self.server = Some(server);
        self.wait_until_up().await
    }

    async fn wait_until_up(&self) -> anyhow::Result<()> {
        let client = ::redis::Client::open(self.url())?;
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && ::redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "the private redis-server on port {} did not answer within 5 s (see {})",
            self.port,
            self.dir.join("redis.log").display()
        )
    }
}
