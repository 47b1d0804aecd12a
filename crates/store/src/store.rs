//! The Redis connection and every key Herald keeps in it (CONTRACT §5).

use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use herald_core::config::WindowConfig;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, RedisResult, RetryMethod, Script};

use crate::lifecycle::{Acceptance, Death};
use crate::state::{Admission, Admit, Claim, Recorded, SendState, Unrecorded};
use crate::window::{inbound_time, oldest_open_inbound};

/// Longest a single connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest Redis may take to answer one command.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one store operation may take, reconnect and retry included: a
/// caller learns that Redis is away in bounded time and decides what to do.
const OPERATION_DEADLINE: Duration = Duration::from_secs(2);

static INBOUND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/inbound.lua")));
static GCRA: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/gcra_reserve.lua"),
        include_str!("lua/gcra.lua")
    ))
});
static ADMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/gcra_reserve.lua"),
        include_str!("lua/admit.lua")
    ))
});
static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/record.lua")));
static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/release.lua")));
static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/pause.lua")));

/// What went wrong talking to Redis. The split is what callers act on:
/// waiting fixes an unavailable Redis, it does not fix a refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Redis could not be reached or did not answer in time (connection
    /// refused, timeout, broken pipe, still loading): try again later.
    #[error("Redis unavailable (could not {operation}): {cause}")]
    Unavailable {
        operation: &'static str,
        cause: String,
    },
    /// Redis answered with an error (e.g. a key holding a value of the wrong
    /// type) or with a value Herald did not write: trying again will not help.
    #[error("Redis refused to {operation}: {cause}")]
    Refused {
        operation: &'static str,
        cause: String,
    },
    /// The configured URL is not a Redis URL.
    #[error("the Redis URL is not valid: {0}")]
    InvalidUrl(String),
}

impl StoreError {
    fn from_redis(operation: &'static str, error: &RedisError) -> StoreError {
        let cause = error.to_string();
        if is_unavailable(error) {
            StoreError::Unavailable { operation, cause }
        } else {
            StoreError::Refused { operation, cause }
        }
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
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

/// Every key name (CONTRACT §5), built here and nowhere else. In Redis
/// Cluster mode (CONTRACT §13) `key` is where an account's hash tag goes,
/// so that one script may touch a job's keys and its account's together.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    fn key(&self, parts: &[&str]) -> String {
        let mut key = String::from(&*self.prefix);
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                key.push(':');
            }
            key.push_str(part);
        }
        key
    }

    fn sent(&self, job_id: &str) -> String {
        self.key(&["sent", job_id])
    }

    fn inflight(&self, job_id: &str) -> String {
        self.key(&["inflight", job_id])
    }

    fn inbound(&self, c: &Contact) -> String {
        self.key(&["inbound", &c.provider, &c.account, &c.digits])
    }

    fn vendor_closed(&self, c: &Contact) -> String {
        self.key(&["closed", &c.provider, &c.account, &c.digits])
    }

    fn suppressed(&self, c: &Contact) -> String {
        self.key(&["suppressed", &c.provider, &c.account, &c.digits])
    }

    /// The index of an account's suppressed contacts (a set of digits), so
    /// they can be listed without scanning the keyspace.
    fn suppressions(&self, provider: &str, account: &str) -> String {
        self.key(&["suppressions", provider, account])
    }

    fn pause(&self, provider: &str, account: &str) -> String {
        self.key(&["pause", provider, account])
    }

    fn rate(&self, provider: &str, account: &str) -> String {
        self.key(&["rate", provider, account])
    }

    fn pace(&self, c: &Contact) -> String {
        self.key(&["pace", &c.provider, &c.account, &c.digits])
    }

    pub(crate) fn vmsg(&self, provider: &str, vendor_message_id: &str) -> String {
        self.key(&["vmsg", provider, vendor_message_id])
    }

    pub(crate) fn status(&self, job_id: &str) -> String {
        self.key(&["status", job_id])
    }

    pub(crate) fn held(&self) -> String {
        self.key(&["held"])
    }

    /// The statuses waiting for one vendor message's acceptance.
    pub(crate) fn waiting(&self, provider: &str, vendor_message_id: &str) -> String {
        self.key(&["held", provider, vendor_message_id])
    }

    /// Held statuses whose acceptance is recorded, for the API to apply.
    pub(crate) fn ready(&self) -> String {
        self.key(&["ready"])
    }

    /// Scripts build the keys they find by reading (a job's record from its
    /// correlation) from this.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    fn webhook(&self, provider: &str, account: &str, message_id: &str) -> String {
        self.key(&["webhook", provider, account, message_id])
    }
}

/// Herald's Redis state: idempotency, in-flight claims, the 24-hour window,
/// suppressions, account pauses and the shared rate limits. Cheap to clone;
/// clones share one multiplexed connection that reconnects in the background.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    pub(crate) keys: Keys,
}

impl fmt::Debug for Store {
    // The connection's own Debug shows the URL, which may carry a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.keys.prefix)
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
            keys: Keys {
                prefix: prefix.into(),
            },
        }
    }

    /// Runs one operation within [`OPERATION_DEADLINE`]. A connection error
    /// makes the manager reconnect in the background while still failing the
    /// command that met it, so that command is retried once on the new
    /// connection.
    pub(crate) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        op: F,
    ) -> Result<T, StoreError>
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
    async fn get<T: FromRedisValue>(
        &self,
        operation: &'static str,
        key: &str,
    ) -> Result<T, StoreError> {
        self.run(operation, |mut conn| async move {
            redis::cmd("GET").arg(key).query_async(&mut conn).await
        })
        .await
    }

    /// `SET key 1 NX PX ttl`: `true` when this call created the key, `false`
    /// when it was already there.
    async fn set_once(
        &self,
        operation: &'static str,
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
    async fn delete(&self, operation: &'static str, key: &str) -> Result<(), StoreError> {
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
        self.get("read the sent mark", &self.keys.sent(job_id))
            .await
    }

    // ----- the send path's two round trips: admit, then record or release -----

    /// Everything before a vendor call in one atomic script: not sent yet,
    /// not suppressed, not claimed by another delivery, account not paused,
    /// window open (or a fallback allowed), then the shared permits are
    /// reserved and the claim taken.
    async fn admit_job(&self, admit: &Admit<'_>) -> Result<Admission, StoreError> {
        let contact = admit.contact;
        let claim = Claim::new(admit.job_id);
        let open_after = admit
            .window
            .map(|window| oldest_open_inbound(Utc::now(), window).to_string())
            .unwrap_or_default();
        let keys = [
            self.keys.sent(admit.job_id),
            self.keys.inflight(admit.job_id),
            self.keys.suppressed(contact),
            self.keys.pause(&contact.provider, &contact.account),
            self.keys.inbound(contact),
            self.keys.rate(&contact.provider, &contact.account),
            self.keys.pace(contact),
            self.keys.vendor_closed(contact),
        ];
        let (rate_us, burst) = admit
            .rate
            .map_or((0, 1), |rate| (micros(rate.interval()), rate.burst()));
        let pacing_us = admit.pacing.map_or(0, |rate| micros(rate.interval()));
        let (verdict, number, text): (String, i64, String) = self
            .run("admit the job", |mut conn| {
                let (keys, claim, open_after) = (&keys, &claim, &open_after);
                async move {
                    let mut script = ADMIT.prepare_invoke();
                    for key in keys {
                        script.key(key);
                    }
                    script
                        .arg(claim.token())
                        .arg(millis(admit.claim_for))
                        .arg(open_after)
                        .arg(if admit.has_fallback { "1" } else { "0" })
                        .arg(rate_us)
                        .arg(burst)
                        .arg(pacing_us)
                        .invoke_async(&mut conn)
                        .await
                }
            })
            .await?;
        let ms = |n: i64| Duration::from_millis(u64::try_from(n).unwrap_or(0));
        Ok(match verdict.as_str() {
            "duplicate" => Admission::Duplicate {
                vendor_message_id: Some(text).filter(|id| !id.is_empty()),
            },
            "suppressed" => Admission::Suppressed,
            "busy" => Admission::Busy {
                claim_left: ms(number),
            },
            "paused" => Admission::Paused { left: ms(number) },
            "closed" => Admission::WindowClosed {
                last_inbound_ms: (number >= 0).then_some(number),
                closed_by_vendor_ms: text.parse().ok(),
            },
            "admitted" | "fallback" => Admission::Admitted {
                claim,
                wait: Duration::from_micros(u64::try_from(number).unwrap_or(0)),
                fallback: verdict == "fallback",
            },
            other => {
                return Err(StoreError::Refused {
                    operation: "admit the job",
                    cause: format!("unexpected answer {other:?} from the admit script"),
                });
            }
        })
    }

    async fn record_claimed(
        &self,
        claim: Claim,
        acceptance: &Acceptance<'_>,
        remember_for: Duration,
    ) -> Result<Recorded, Unrecorded> {
        let job = acceptance.job;
        let vendor_message_id = acceptance.vendor_message_id.unwrap_or("");
        let keys = [
            self.keys.sent(claim.job_id()),
            self.keys.inflight(claim.job_id()),
            self.keys.vmsg(&job.provider, vendor_message_id),
            self.keys.status(claim.job_id()),
            self.keys.waiting(&job.provider, vendor_message_id),
            self.keys.held(),
            self.keys.ready(),
        ];
        let fields = acceptance.fields();
        let answer: Result<(i64, String), StoreError> = self
            .run("record the send", |mut conn| {
                let (keys, claim, fields) = (&keys, &claim, &fields);
                async move {
                    let mut script = RECORD.prepare_invoke();
                    for key in keys {
                        script.key(key);
                    }
                    script
                        .arg(claim.token())
                        .arg(vendor_message_id)
                        .arg(millis(remember_for))
                        .arg(claim.job_id());
                    for (name, value) in fields {
                        script.arg(*name).arg(value);
                    }
                    script.invoke_async(&mut conn).await
                }
            })
            .await;
        match answer {
            Ok((0, _)) => Ok(Recorded::First),
            Ok((_, earlier)) => Ok(Recorded::AlreadySent {
                vendor_message_id: Some(earlier).filter(|id| !id.is_empty()),
            }),
            Err(error) => Err(Unrecorded { claim, error }),
        }
    }

    async fn release_claim(&self, claim: Claim) -> Result<(), StoreError> {
        let key = self.keys.inflight(claim.job_id());
        self.run("release the claim", |mut conn| {
            let (key, claim) = (&key, &claim);
            async move {
                RELEASE
                    .key(key)
                    .arg(claim.token())
                    .invoke_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    // ----- the 24-hour window: `inbound:<provider>:<account>:<digits>` -----

    /// Records a customer's inbound message at `at_ms` (epoch ms, the
    /// vendor's timestamp) and returns the last-inbound time now stored,
    /// which is later than `at_ms` when a later message is already known:
    /// the value only ever moves forward. A time in the future counts as
    /// now: a message cannot have been sent after it reached us, and a clock
    /// running ahead must not keep the window open past the real 24 hours.
    /// The key expires the window's `hours` + 1 h after the stored time.
    /// Every writer (API, webhooks, CLI) records through here.
    pub async fn record_inbound(
        &self,
        contact: &Contact,
        at_ms: i64,
        window: &WindowConfig,
    ) -> Result<i64, StoreError> {
        let now = Utc::now();
        let at_ms = DateTime::from_timestamp_millis(at_ms)
            .map_or(now, |at| inbound_time(at, now))
            .timestamp_millis();
        let key = self.keys.inbound(contact);
        let keep_for = i64::from(window.hours)
            .saturating_mul(3_600_000)
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
        self.get("read the last inbound message", &self.keys.inbound(contact))
            .await
    }

    /// Forgets the contact's last inbound message, because the vendor said
    /// the window is closed (so the record was wrong), and remembers when,
    /// so a later dead letter can say who closed it.
    pub async fn clear_inbound(&self, contact: &Contact) -> Result<(), StoreError> {
        let (inbound, closed) = (self.keys.inbound(contact), self.keys.vendor_closed(contact));
        self.run("clear the last inbound message", |mut conn| {
            let (inbound, closed) = (&inbound, &closed);
            async move {
                redis::pipe()
                    .atomic()
                    .del(inbound)
                    .ignore()
                    .cmd("SET")
                    .arg(closed)
                    .arg(Utc::now().timestamp_millis())
                    .arg("PX")
                    .arg(millis(VENDOR_CLOSED_KEPT))
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    // ----- vendor back-pressure: `pause:<provider>:<account>` -----

    /// Pauses an account for every replica; an existing longer pause stays.
    pub async fn pause_account(
        &self,
        provider: &str,
        account: &str,
        for_: Duration,
    ) -> Result<(), StoreError> {
        let key = self.keys.pause(provider, account);
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
        let key = self.keys.pause(provider, account);
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

    // ----- opt-outs: `suppressed:<provider>:<account>:<digits>` -----

    /// Suppresses a contact: jobs to it are dead-lettered as `suppressed`
    /// without a vendor call until it is released (CONTRACT §11).
    pub async fn suppress(&self, contact: &Contact) -> Result<(), StoreError> {
        let key = self.keys.suppressed(contact);
        let index = self.keys.suppressions(&contact.provider, &contact.account);
        self.run("suppress the contact", |mut conn| {
            let (key, index) = (&key, &index);
            async move {
                redis::pipe()
                    .atomic()
                    .set(key, Utc::now().timestamp_millis())
                    .ignore()
                    .sadd(index, &contact.digits)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            }
        })
        .await
    }

    /// Releases a suppressed contact; `false` when it was not suppressed.
    pub async fn release_suppression(&self, contact: &Contact) -> Result<bool, StoreError> {
        let key = self.keys.suppressed(contact);
        let index = self.keys.suppressions(&contact.provider, &contact.account);
        let (removed,): (u32,) = self
            .run("release the suppression", |mut conn| {
                let (key, index) = (&key, &index);
                async move {
                    redis::pipe()
                        .atomic()
                        .del(key)
                        .srem(index, &contact.digits)
                        .ignore()
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        Ok(removed == 1)
    }

    /// Every suppressed contact of an account by digits, with when it was
    /// suppressed (epoch ms), from the account's index of suppressions.
    pub async fn suppressed(
        &self,
        provider: &str,
        account: &str,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let index = self.keys.suppressions(provider, account);
        let mut digits: Vec<String> = self
            .run("list the suppressed contacts", |mut conn| {
                let index = &index;
                async move {
                    redis::cmd("SMEMBERS")
                        .arg(index)
                        .query_async(&mut conn)
                        .await
                }
            })
            .await?;
        digits.sort();
        let mut contacts = Vec::with_capacity(digits.len());
        for digits in digits {
            let contact = Contact {
                provider: provider.to_owned(),
                account: account.to_owned(),
                digits,
            };
            let key = self.keys.suppressed(&contact);
            // A suppression set before the index existed, or released by
            // hand, is listed by what its own key says.
            if let Some(since) = self.get::<Option<i64>>("read a suppression", &key).await? {
                contacts.push((contact.digits, since));
            }
        }
        Ok(contacts)
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
        let key = self.keys.webhook(provider, account, message_id);
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
        let key = self.keys.webhook(provider, account, message_id);
        self.delete("forget the webhook message", &key).await
    }

    // ----- shared rate limits: `rate:…`, `pace:…` -----

    /// Where an account's shared rate limit is kept.
    pub(crate) fn rate_key(&self, provider: &str, account: &str) -> String {
        self.keys.rate(provider, account)
    }

    /// Where the pacing of messages to one contact is kept.
    pub(crate) fn pace_key(&self, contact: &Contact) -> String {
        self.keys.pace(contact)
    }

    /// Reserves one permit of the GCRA limit kept at `key` and
    /// returns how long to wait before using it (one round trip).
    pub(crate) async fn reserve_permit(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Duration, StoreError> {
        let interval_us = micros(interval);
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

fn no_answer(operation: &'static str) -> StoreError {
    StoreError::Unavailable {
        operation,
        cause: format!("no answer within {}s", OPERATION_DEADLINE.as_secs()),
    }
}

/// How long the vendor's closing of a window is remembered: as long as an
/// inbound time would be (24 h and an hour).
const VENDOR_CLOSED_KEPT: Duration = Duration::from_secs(25 * 3600);

/// Whole microseconds, at least 1 (a rate's interval is never zero).
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Whole milliseconds for `PX`, which refuses 0.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SendState for Store {
    async fn admit(&self, admit: &Admit<'_>) -> Result<Admission, StoreError> {
        self.admit_job(admit).await
    }

    async fn record_sent(
        &self,
        claim: Claim,
        acceptance: &Acceptance<'_>,
        remember_for: Duration,
    ) -> Result<Recorded, Unrecorded> {
        self.record_claimed(claim, acceptance, remember_for).await
    }

    async fn release(&self, claim: Claim) -> Result<(), StoreError> {
        self.release_claim(claim).await
    }

    async fn record_dead(
        &self,
        death: &Death<'_>,
        remember_for: Duration,
    ) -> Result<(), StoreError> {
        Store::record_dead(self, death, remember_for).await
    }

    async fn sent(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        Store::sent(self, job_id).await
    }

    async fn paused_for(
        &self,
        provider: &str,
        account: &str,
    ) -> Result<Option<Duration>, StoreError> {
        self.account_paused_for(provider, account).await
    }

    async fn pause_account(
        &self,
        provider: &str,
        account: &str,
        for_: Duration,
    ) -> Result<(), StoreError> {
        Store::pause_account(self, provider, account, for_).await
    }

    async fn clear_inbound(&self, contact: &Contact) -> Result<(), StoreError> {
        Store::clear_inbound(self, contact).await
    }

    async fn suppress(&self, contact: &Contact) -> Result<(), StoreError> {
        Store::suppress(self, contact).await
    }
}
