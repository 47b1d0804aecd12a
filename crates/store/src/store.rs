//! The Redis connection and every key Herald keeps in it (CONTRACT §5).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, RedisResult, RetryMethod, Script};

/// Longest a single connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest Redis may take to answer one command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one store operation may take, reconnect and retry included: a
/// caller learns that Redis is away in bounded time and decides what to do.
const OPERATION_DEADLINE: Duration = Duration::from_secs(2);

static INBOUND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/inbound.lua")));
static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/gcra.lua")));
static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/pause.lua")));

/// What went wrong talking to Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or did not answer in time (connection
    /// refused, timeout, broken pipe, still loading): try again later.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// The configured URL is not a Redis URL.
    #[error("the Redis URL is not valid: {0}")]
    InvalidUrl(String),
    /// Redis answered with an error, or with a value Herald did not write.
    #[error("Redis refused {0}")]
    Command(String),
}

impl StoreError {
    fn from_redis(operation: &str, error: &RedisError) -> StoreError {
        if is_unavailable(error) {
            StoreError::Unavailable(format!("{operation}: {error}"))
        } else {
            StoreError::Command(format!("{operation}: {error}"))
        }
    }
}

/// Errors that say "not now" rather than "never": the connection, not the command.
fn is_unavailable(error: &RedisError) -> bool {
    error.is_io_error() || !matches!(error.retry_method(), RetryMethod::NoRetry)
}

/// One contact of one provider account: whose 24-hour window a key tracks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Contact {
    pub provider: String,
    pub account: String,
    /// E.164 without the `+`.
    pub digits: String,
}

/// Herald's Redis state: idempotency, in-flight marks, the 24-hour window,
/// account pauses and the shared rate limits. Cheap to clone; clones share
/// one multiplexed connection that reconnects in the background.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    prefix: Arc<str>,
}

impl fmt::Debug for Store {
    // The connection's own Debug shows the URL, which may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects now; fails promptly with [`StoreError::Unavailable`] when
    /// Redis does not answer, so the caller can retry on its own schedule.
    pub async fn connect(url: &str, prefix: &str) -> Result<Store, StoreError> {
        let client = client(url)?;
        let conn = tokio::time::timeout(
            OPERATION_DEADLINE,
            ConnectionManager::new_with_config(client, manager_config()),
        )
        .await
        .map_err(|_| no_answer("connect"))?
        .map_err(|e| StoreError::from_redis("connect", &e))?;
        Ok(Store::with(conn, prefix))
    }

    /// Connects on first use, so a process can start while Redis is away;
    /// every operation until then fails as [`StoreError::Unavailable`].
    /// Only a bad URL fails here. Needs a running Tokio runtime.
    pub fn connect_lazy(url: &str, prefix: &str) -> Result<Store, StoreError> {
        let conn = ConnectionManager::new_lazy_with_config(client(url)?, manager_config())
            .map_err(|e| StoreError::from_redis("connect", &e))?;
        Ok(Store::with(conn, prefix))
    }

    fn with(conn: ConnectionManager, prefix: &str) -> Store {
        Store {
            conn,
            prefix: prefix.into(),
        }
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = String::from(&*self.prefix);
        key.push_str(&parts.join(":"));
        key
    }

    /// Runs one operation within [`OPERATION_DEADLINE`]. A connection error
    /// makes the manager reconnect in the background while still failing the
    /// command that met it, so that command is retried once on the new
    /// connection.
    async fn run<T, F, Fut>(&self, operation: &str, op: F) -> Result<T, StoreError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let attempts = async {
            match op(self.conn.clone()).await {
                Err(e) if is_unavailable(&e) => op(self.conn.clone()).await,
                done => done,
            }
        };
        tokio::time::timeout(OPERATION_DEADLINE, attempts)
            .await
            .map_err(|_| no_answer(operation))?
            .map_err(|e| StoreError::from_redis(operation, &e))
    }

    /// `GET key`.
    async fn get<T: FromRedisValue>(&self, operation: &str, key: &str) -> Result<T, StoreError> {
        self.run(operation, |mut conn| async move {
            redis::cmd("GET").arg(key).query_async(&mut conn).await
        })
        .await
    }

    /// `SET key 1 NX PX ttl`: `true` when this call created the key, `false`
    /// when it was already there.
    async fn set_once(
        &self,
        operation: &str,
        key: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let reply: Option<String> = self
            .run(operation, |mut conn| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(reply.is_some())
    }

    /// `DEL key`.
    async fn delete(&self, operation: &str, key: &str) -> Result<(), StoreError> {
        self.run(operation, |mut conn| async move {
            redis::cmd("DEL").arg(key).query_async(&mut conn).await
        })
        .await
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("PING", |mut conn| async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(drop)
    }

    // ----- idempotency: `sent:<job id>` -----

    /// The vendor message id a job was sent as (`""` when the vendor gave
    /// none), or `None` when the job is not remembered as sent.
    pub async fn sent(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        let key = self.key(&["sent", job_id]);
        self.get("read the sent mark", &key).await
    }

    /// Remembers that a job was sent, for `ttl` (the idempotency horizon).
    pub async fn record_sent(
        &self,
        job_id: &str,
        vendor_message_id: Option<&str>,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(&["sent", job_id]);
        let value = vendor_message_id.unwrap_or("");
        self.run("record the send", |mut conn| {
            let key = &key;
            async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    // ----- in-flight marks: `inflight:<job id>` -----

    /// Marks a job as being sent for `ttl`; `false` when another delivery
    /// of it holds the mark. Covers the gap between the vendor call and
    /// [`Store::record_sent`].
    pub async fn claim_in_flight(&self, job_id: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.key(&["inflight", job_id]);
        self.set_once("claim the in-flight mark", &key, ttl).await
    }

    pub async fn release_in_flight(&self, job_id: &str) -> Result<(), StoreError> {
        let key = self.key(&["inflight", job_id]);
        self.delete("release the in-flight mark", &key).await
    }

    // ----- the 24-hour window: `inbound:<provider>:<account>:<digits>` -----

    fn inbound_key(&self, contact: &Contact) -> String {
        self.key(&[
            "inbound",
            &contact.provider,
            &contact.account,
            &contact.digits,
        ])
    }

    /// Records a customer's inbound message at `at_ms` (epoch ms, the
    /// vendor's timestamp) and returns the last-inbound time now stored,
    /// which is later than `at_ms` when a later message is already known:
    /// the value only ever moves forward. The key expires `window` + 1 h
    /// after the stored time, so a message older than that is not kept.
    pub async fn record_inbound(
        &self,
        contact: &Contact,
        at_ms: i64,
        window: Duration,
    ) -> Result<i64, StoreError> {
        let key = self.inbound_key(contact);
        let keep_for = i64::try_from(window.as_millis())
            .unwrap_or(i64::MAX)
            .saturating_add(3_600_000);
        let expire_at = at_ms.saturating_add(keep_for);
        self.run("record the inbound message", |mut conn| {
            let key = &key;
            async move {
                INBOUND
                    .key(key)
                    .arg(at_ms)
                    .arg(expire_at)
                    .invoke_async(&mut conn)
                    .await
            }
        })
        .await
    }

    /// The contact's last inbound message, epoch ms.
    pub async fn last_inbound(&self, contact: &Contact) -> Result<Option<i64>, StoreError> {
        let key = self.inbound_key(contact);
        self.get("read the last inbound message", &key).await
    }

    /// Forgets the contact's last inbound message (the vendor said the
    /// window is closed, so the record was wrong).
    pub async fn clear_inbound(&self, contact: &Contact) -> Result<(), StoreError> {
        let key = self.inbound_key(contact);
        self.delete("clear the last inbound message", &key).await
    }

    // ----- vendor back-pressure: `pause:<provider>:<account>` -----

    /// Pauses an account for every replica; an existing longer pause stays.
    pub async fn pause_account(
        &self,
        provider: &str,
        account: &str,
        for_: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(&["pause", provider, account]);
        self.run("pause the account", |mut conn| {
            let key = &key;
            async move {
                PAUSE
                    .key(key)
                    .arg(millis(for_))
                    .invoke_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    /// How much longer the account is paused, if it is.
    pub async fn account_paused_for(
        &self,
        provider: &str,
        account: &str,
    ) -> Result<Option<Duration>, StoreError> {
        let key = self.key(&["pause", provider, account]);
        let left: i64 = self
            .run("read the account pause", |mut conn| {
                let key = &key;
                async move { redis::cmd("PTTL").arg(key).query_async(&mut conn).await }
            })
            .await?;
        Ok(u64::try_from(left)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis))
    }

    // ----- webhook de-duplication: `webhook:<provider>:<account>:<message id>` -----

    /// Marks a vendor's message id as seen for `remember_for`; `true` the
    /// first time only, so a webhook the vendor delivers twice counts once.
    pub async fn first_webhook_sighting(
        &self,
        provider: &str,
        account: &str,
        message_id: &str,
        remember_for: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key(&["webhook", provider, account, message_id]);
        self.set_once("mark the webhook message as seen", &key, remember_for)
            .await
    }

    /// Forgets a sighting whose message could not be recorded, so that the
    /// vendor's retry of the webhook is not taken for a duplicate.
    pub async fn forget_webhook_sighting(
        &self,
        provider: &str,
        account: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let key = self.key(&["webhook", provider, account, message_id]);
        self.delete("forget the webhook message", &key).await
    }

    // ----- shared rate limits: `rate:…`, `pace:…` -----

    /// Reserves one permit of the GCRA limit kept at `<prefix><key>` and
    /// returns how long to wait before using it (one round trip).
    pub(crate) async fn reserve_permit(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Duration, StoreError> {
        let key = format!("{}{key}", self.prefix);
        let interval_us = u64::try_from(interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let wait_us: u64 = self
            .run("reserve a rate-limit permit", |mut conn| {
                let key = &key;
                async move {
                    GCRA.key(key)
                        .arg(interval_us)
                        .arg(burst)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(Duration::from_micros(wait_us))
    }
}

fn client(url: &str) -> Result<redis::Client, StoreError> {
    // The parser's message may quote the URL, and with it a password.
    redis::Client::open(url).map_err(|e| StoreError::InvalidUrl(format!("{:?}", e.kind())))
}

fn manager_config() -> ConnectionManagerConfig {
    // Few, short reconnect attempts: callers have their own retry policy, and
    // an operation must fail within OPERATION_DEADLINE rather than hang.
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(200))
}

fn no_answer(operation: &str) -> StoreError {
    StoreError::Unavailable(format!(
        "{operation}: no answer within {}s",
        OPERATION_DEADLINE.as_secs()
    ))
}

/// Whole milliseconds for `PX`, which refuses 0.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
