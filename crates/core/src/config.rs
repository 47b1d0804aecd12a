//! Configuration (CONTRACT §9): a TOML file, every key overridable from the
//! environment, secrets named by `*_env` / `*_file`, durations like `5s`.
//!
//! A configuration that does not make sense stops the process at start with
//! a message naming the key; nothing here guesses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Reserved `HERALD_*` variables that are not configuration overrides.
const NOT_OVERRIDES: &[&str] = &["HERALD_CONFIG", "HERALD_LOG_FORMAT"];
/// The test harness's variables (`HERALD_TEST_AMQP_URL` …), which the
/// `herald` processes tests start inherit.
const TEST_VARIABLES: &str = "HERALD_TEST_";

/// Keys that `HERALD_<SECTION>_<KEY>` may override, by section.
const OVERRIDABLE: &[(&str, &[&str])] = &[
    ("amqp", &["url", "prefetch", "delivery_limit"]),
    ("redis", &["url", "prefix"]),
    ("window", &["hours", "margin"]),
    ("retry", &["immediate", "delays", "max_attempts"]),
    ("idempotency", &["ttl"]),
    ("http", &["listen"]),
    ("api", &["listen", "token_env", "token_file"]),
    ("worker", &["shutdown_grace"]),
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct Config {
    pub amqp: AmqpConfig,
    pub redis: RedisConfig,
    pub window: WindowConfig,
    pub retry: RetryConfig,
    pub idempotency: IdempotencyConfig,
    pub http: HttpConfig,
    pub api: ApiConfig,
    pub worker: WorkerConfig,
    /// `[providers.<provider>.<account>]`.
    pub providers: BTreeMap<String, BTreeMap<String, AccountConfig>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    pub url: String,
    /// Unacknowledged deliveries per provider queue.
    pub prefetch: u16,
    /// `x-delivery-limit` of the provider queues: redeliveries the broker
    /// allows before it dead-letters a job that keeps crashing workers.
    pub delivery_limit: u32,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            prefetch: 32,
            delivery_limit: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    pub url: String,
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379/0".into(),
            prefix: "herald:".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowConfig {
    pub hours: u32,
    #[serde(with = "duration")]
    pub margin: Duration,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            hours: 24,
            margin: Duration::from_secs(120),
        }
    }
}

impl WindowConfig {
    /// How long after an inbound message a session message may still be sent.
    pub fn open_for(&self) -> Duration {
        Duration::from_secs(u64::from(self.hours) * 3600).saturating_sub(self.margin)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Quick in-process retries for network blips before a delayed one.
    pub immediate: u32,
    /// The delay before each delayed retry; the last repeats. Each distinct
    /// value is one delay tier queue.
    #[serde(with = "durations")]
    pub delays: Vec<Duration>,
    /// Vendor calls per job, every retry counted.
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            immediate: 1,
            delays: ["5s", "30s", "2m", "10m", "1h"]
                .iter()
                .map(|d| parse_duration(d).expect("valid default"))
                .collect(),
            max_attempts: 6,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdempotencyConfig {
    #[serde(with = "duration")]
    pub ttl: Duration,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:9090".parse().expect("valid"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub token_env: Option<String>,
    pub token_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "0.0.0.0:8080".parse().expect("valid"),
            token_env: None,
            token_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// After SIGTERM: how long in-flight jobs may take to finish.
    #[serde(with = "duration")]
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Whether a rate limit is shared by every replica or kept per process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateScope {
    #[default]
    Global,
    Local,
}

/// One `[providers.<provider>.<account>]` table. The keys every provider
/// shares are typed here; vendor-specific keys (`sid`, `from`, `session`,
/// secrets …) stay in `settings` for the provider's adapter to check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountConfig {
    pub base_url: String,
    /// Requests per second for this account; absent means Herald does not limit.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    #[serde(default = "default_burst")]
    pub burst: u32,
    #[serde(default)]
    pub rate_scope: RateScope,
    #[serde(default, with = "optional_duration")]
    pub per_recipient_interval: Option<Duration>,
    #[serde(default = "default_true")]
    pub enforce_window: bool,
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    #[serde(flatten)]
    pub settings: toml::Table,
}

/// Vendors' own default throughput, per account, for accounts that set none:
/// Meta's Cloud API takes 80 messages a second per business number unless
/// Meta has raised it (CONTRACT §14).
const DEFAULT_RATES: &[(&str, f64)] = &[("meta", 80.0)];

fn default_burst() -> u32 {
    1
}
fn default_true() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A configuration problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Every problem of a configuration, so one look fixes them all instead of
/// one restart per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub problems: Vec<ConfigError>,
}

impl ConfigErrors {
    /// `Ok(value)` when no problem was found.
    pub fn check<T>(problems: Vec<ConfigError>, value: T) -> Result<T, ConfigErrors> {
        if problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigErrors { problems })
        }
    }

    /// Whether a problem names this key.
    pub fn names(&self, key: &str) -> bool {
        self.problems.iter().any(|p| p.key == key)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(problem: ConfigError) -> Self {
        ConfigErrors {
            problems: vec![problem],
        }
    }
}

impl std::fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let [one] = &self.problems[..] {
            return write!(f, "{one}");
        }
        write!(f, "{} configuration problems:", self.problems.len())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Loads `path` (or `HERALD_CONFIG`, or built-in defaults when neither is
    /// given), applies `HERALD_*` environment overrides, and checks the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let path = path
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("HERALD_CONFIG").map(PathBuf::from));
        let text = match &path {
            Some(p) => std::fs::read_to_string(p).map_err(|e| {
                ConfigError::new("--config", format!("cannot read {}: {e}", p.display()))
            })?,
            None => String::new(),
        };
        Config::from_toml_with_env(&text, &env)
    }

    /// Parses TOML text, applies the given `HERALD_*` overrides, and checks,
    /// reporting every problem found.
    pub fn from_toml_with_env(
        text: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigErrors> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError::new(
                e.span()
                    .map(|s| format!("at byte {}", s.start))
                    .unwrap_or_else(|| "file".into()),
                e.message().to_owned(),
            )
        })?;
        let mut problems = Vec::new();
        let mut unknown = Vec::new();
        for (name, raw) in env {
            match apply_override(&mut table, name, raw) {
                Ok(Applied::Yes) => {}
                Ok(Applied::NotAKey) => unknown.push(name.as_str()),
                Err(problem) => problems.push(problem),
            }
        }
        // A variable the configuration names as a secret's source is not an
        // override; anything else under HERALD_ is a typo.
        let secret_sources = secret_sources(&table);
        problems.extend(
            unknown
                .into_iter()
                .filter(|name| !secret_sources.contains(name))
                .map(unknown_override),
        );
        let config = match serde_path_to_error::deserialize(toml::Value::Table(table)) {
            Ok(mut config) => {
                Config::apply_default_rates(&mut config);
                Some(config)
            }
            Err(e) => {
                let key = e.path().to_string();
                problems.push(ConfigError::new(
                    if key == "." { "file".into() } else { key },
                    e.inner().to_string(),
                ));
                None
            }
        };
        if let Some(config) = &config {
            problems.extend(Config::problems(config));
        }
        ConfigErrors::check(problems, ())?;
        Ok(config.expect("no problem means it deserialized"))
    }

    /// Holds an account that names no `rate_per_second` to its vendor's
    /// published default, where the vendor has one.
    fn apply_default_rates(&mut self) {
        for (provider, rate) in DEFAULT_RATES {
            let accounts = self.providers.get_mut(*provider).into_iter().flatten();
            for (_, account) in accounts {
                account.rate_per_second.get_or_insert(*rate);
            }
        }
    }

    /// Every value that does not make sense, by key.
    fn problems(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: String, problem: &str| {
            if !ok {
                problems.push(ConfigError::new(key, problem));
            }
        };
        check(
            self.amqp.prefetch > 0,
            "amqp.prefetch".into(),
            "must be at least 1",
        );
        check(
            !self.retry.delays.is_empty(),
            "retry.delays".into(),
            "needs at least one delay",
        );
        for (i, delay) in self.retry.delays.iter().enumerate() {
            check(
                !delay.is_zero(),
                format!("retry.delays[{i}]"),
                "must be longer than zero",
            );
        }
        check(
            self.retry.max_attempts > 0,
            "retry.max_attempts".into(),
            "must be at least 1",
        );
        check(
            self.window.hours > 0 && !self.window.open_for().is_zero(),
            "window.margin".into(),
            "leaves no open window (margin ≥ hours)",
        );
        check(
            self.idempotency.ttl >= Duration::from_secs(60),
            "idempotency.ttl".into(),
            "must be at least 1m",
        );
        for (provider, accounts) in &self.providers {
            for (account, settings) in accounts {
                let key = |k: &str| format!("providers.{provider}.{account}.{k}");
                check(
                    settings.base_url.starts_with("http://")
                        || settings.base_url.starts_with("https://"),
                    key("base_url"),
                    "must be an http:// or https:// URL",
                );
                check(
                    settings
                        .rate_per_second
                        .is_none_or(|rate| rate.is_finite() && rate > 0.0),
                    key("rate_per_second"),
                    "must be a positive number",
                );
                check(settings.burst > 0, key("burst"), "must be at least 1");
            }
        }
        problems
    }

    /// One account's configuration.
    pub fn account(&self, provider: &str, account: &str) -> Option<&AccountConfig> {
        self.providers.get(provider)?.get(account)
    }

    /// Configured providers, for consumer and topology set-up.
    pub fn provider_names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    /// Distinct delay tiers, shortest first.
    pub fn delay_tiers(&self) -> Vec<Duration> {
        let mut tiers = self.retry.delays.clone();
        tiers.sort();
        tiers.dedup();
        tiers
    }
}

/// Whether an environment variable was a configuration override.
enum Applied {
    Yes,
    /// A `HERALD_*` name that is no key: a typo, or a secret's source.
    NotAKey,
}

/// `HERALD_<SECTION>_<KEY>` for section keys; `HERALD_PROVIDERS__<provider>__<account>__<key>`
/// for account keys (double underscores, since names may contain `_`).
/// Variables outside `HERALD_`, and the reserved ones, are not overrides.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<Applied, ConfigError> {
    let Some(rest) = name.strip_prefix("HERALD_") else {
        return Ok(Applied::Yes);
    };
    if NOT_OVERRIDES.contains(&name) || name.starts_with(TEST_VARIABLES) {
        return Ok(Applied::Yes);
    }
    let value = parse_env_value(raw);
    if let Some(path) = rest.strip_prefix("PROVIDERS__") {
        let parts: Vec<&str> = path.split("__").collect();
        let [provider, account, key] = parts[..] else {
            return Err(ConfigError::new(
                name,
                "expected HERALD_PROVIDERS__<provider>__<account>__<key>",
            ));
        };
        let account_table = ensure_table(table, &["providers", &provider.to_lowercase(), account]);
        account_table.insert(key.to_lowercase(), value);
        return Ok(Applied::Yes);
    }
    let lower = rest.to_lowercase();
    for (section, keys) in OVERRIDABLE {
        if let Some(key) = lower
            .strip_prefix(section)
            .and_then(|k| k.strip_prefix('_'))
            && keys.contains(&key)
        {
            ensure_table(table, &[section]).insert(key.to_owned(), value);
            return Ok(Applied::Yes);
        }
    }
    Ok(Applied::NotAKey)
}

/// Every environment variable the configuration names with a `*_env` key.
fn secret_sources(table: &toml::Table) -> Vec<&str> {
    table
        .iter()
        .flat_map(|(key, value)| match value {
            toml::Value::Table(inner) => secret_sources(inner),
            toml::Value::String(var) if key.ends_with("_env") => vec![var.as_str()],
            _ => Vec::new(),
        })
        .collect()
}

/// The override variable of every section key, e.g. `HERALD_AMQP_PREFETCH`.
fn override_names() -> impl Iterator<Item = (String, String)> {
    OVERRIDABLE.iter().flat_map(|(section, keys)| {
        keys.iter().map(move |key| {
            (
                format!("HERALD_{}_{}", section, key).to_uppercase(),
                format!("{section}.{key}"),
            )
        })
    })
}

/// An unknown `HERALD_*` variable, named with the override it most likely meant.
fn unknown_override(name: &str) -> ConfigError {
    let closest = override_names()
        .map(|(variable, key)| (strsim::levenshtein(name, &variable), variable, key))
        .min_by_key(|(distance, _, _)| *distance);
    let hint = match closest {
        Some((distance, variable, key)) if distance <= 3 => {
            format!("did you mean {variable} (configuration key {key})?")
        }
        _ => "overrides are HERALD_<SECTION>_<KEY> (e.g. HERALD_AMQP_URL) or \
              HERALD_PROVIDERS__<provider>__<account>__<key>"
            .to_owned(),
    };
    ConfigError::new(
        name,
        format!("is not a configuration key and no *_env key names it; {hint}"),
    )
}

fn ensure_table<'a>(table: &'a mut toml::Table, path: &[&str]) -> &'a mut toml::Table {
    let mut current = table;
    for part in path {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current
}

/// An environment value is read as a TOML value when it is one (`64`, `true`,
/// `["1s","5s"]`), else as a plain string (`amqp://…`).
fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// A secret read from the environment or a file. It never prints itself.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that must put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Reads the secret `name` of a settings table: `<name>_env` names an
/// environment variable, `<name>_file` a file (trailing newline trimmed).
/// `key_prefix` (e.g. `providers.kaleyra.default`) makes errors name the key.
pub fn read_secret(
    settings: &toml::Table,
    name: &str,
    key_prefix: &str,
) -> Result<Secret, ConfigError> {
    let env_key = format!("{name}_env");
    let file_key = format!("{name}_file");
    let full = |k: &str| format!("{key_prefix}.{k}");
    match (settings.get(&env_key), settings.get(&file_key)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            full(&env_key),
            format!("give {env_key} or {file_key}, not both"),
        )),
        (Some(var), None) => {
            let var = var
                .as_str()
                .ok_or_else(|| ConfigError::new(full(&env_key), "must be a string"))?;
            match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret(v)),
                _ => Err(ConfigError::new(
                    full(&env_key),
                    format!("environment variable {var} is not set"),
                )),
            }
        }
        (None, Some(path)) => {
            let path = path
                .as_str()
                .ok_or_else(|| ConfigError::new(full(&file_key), "must be a string"))?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new(full(&file_key), format!("cannot read {path}: {e}"))
            })?;
            let value = text.trim_end_matches(['\r', '\n']).to_owned();
            if value.is_empty() {
                return Err(ConfigError::new(
                    full(&file_key),
                    format!("{path} is empty"),
                ));
            }
            Ok(Secret(value))
        }
        (None, None) => Err(ConfigError::new(
            full(&env_key),
            format!("missing secret: set {env_key} or {file_key}"),
        )),
    }
}

/// Parses `5s`, `2m`, `7d`, `250ms`, `1h 30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 5s, 2m or 7d ({e})"))
}

/// Formats a duration in its largest whole unit: `5s`, `2m`, `1h`, `250ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

mod duration {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(*d))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

mod optional_duration {
    use super::*;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format_duration(*d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod durations {
    use super::*;
    pub fn serialize<S: serde::Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(ds.iter().map(|d| format_duration(*d)))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        let texts = Vec::<String>::deserialize(d)?;
        texts
            .iter()
            .map(|t| parse_duration(t).map_err(serde::de::Error::custom))
            .collect()
    }
}
