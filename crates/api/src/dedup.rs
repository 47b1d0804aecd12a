//! Remembers which vendor message ids were already recorded, so a webhook
//! delivered twice counts once: `<prefix>webhook:<provider>:<account>:<id>`,
//! set with `SET NX` and a TTL.

use std::time::Duration;

use redis::aio::ConnectionManager;

/// How long a message id is remembered: longer than any vendor keeps
/// retrying a webhook (Meta retries for up to 7 days).
pub const REMEMBER_FOR: Duration = Duration::from_secs(8 * 24 * 3600);

/// Longest one Redis command may take before the webhook is answered `503`.
const DEADLINE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Dedup {
    conn: ConnectionManager,
    prefix: String,
}

impl Dedup {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Dedup> {
        let client = redis::Client::open(url)?;
        let conn = tokio::time::timeout(DEADLINE, client.get_connection_manager()).await??;
        Ok(Dedup {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, provider: &str, account: &str, message_id: &str) -> String {
        format!("{}webhook:{provider}:{account}:{message_id}", self.prefix)
    }

    /// Marks the message as seen; `true` the first time only.
    pub async fn first_sighting(
        &self,
        provider: &str,
        account: &str,
        message_id: &str,
    ) -> Result<bool, String> {
        let mut set = redis::cmd("SET");
        set.arg(self.key(provider, account, message_id))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(REMEMBER_FOR.as_millis() as u64);
        let answer: Option<String> = self.query(&set).await?;
        Ok(answer.is_some())
    }

    /// Forgets a sighting whose recording failed, so the vendor's retry counts.
    pub async fn forget(
        &self,
        provider: &str,
        account: &str,
        message_id: &str,
    ) -> Result<(), String> {
        let mut del = redis::cmd("DEL");
        del.arg(self.key(provider, account, message_id));
        self.query::<()>(&del).await
    }

    async fn query<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, String> {
        let mut conn = self.conn.clone();
        tokio::time::timeout(DEADLINE, command.query_async(&mut conn))
            .await
            .map_err(|_| format!("Redis did not answer within {}s", DEADLINE.as_secs()))?
            .map_err(|e| format!("Redis: {e}"))
    }
}
