//! Configuration: TOML, environment overrides, secrets, durations, and
//! errors that name the key.

use std::time::Duration;

use herald_core::config::{format_duration, parse_duration, read_secret};
use herald_core::{Config, RateScope};

fn load(text: &str) -> Result<Config, herald_core::ConfigError> {
    Config::from_toml_with_env(text, &[])
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, herald_core::ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_toml_with_env(text, &env)
}

const CONTRACT_EXAMPLE: &str = include_str!("../../../deploy/herald.example.toml");

#[test]
fn the_example_configuration_loads() {
    let config = load(CONTRACT_EXAMPLE).unwrap();
    let kaleyra = config.account("kaleyra", "default").unwrap();
    assert_eq!(kaleyra.rate_per_second, Some(20.0));
    assert_eq!(kaleyra.burst, 5);
    assert_eq!(kaleyra.per_recipient_interval, Some(Duration::from_secs(6)));
    assert_eq!(kaleyra.rate_scope, RateScope::Global);
    assert_eq!(kaleyra.settings["sid"].as_str(), Some("HXAP1XXXXXX17XX"));
    assert_eq!(config.retry.max_attempts, 6);
    assert_eq!(config.window.margin, Duration::from_secs(120));
    assert_eq!(config.idempotency.ttl, Duration::from_secs(7 * 86400));
}

#[test]
fn defaults_apply_without_a_file() {
    let config = load("").unwrap();
    assert_eq!(config.amqp.prefetch, 32);
    assert_eq!(config.redis.prefix, "herald:");
    assert_eq!(config.delay_tiers().len(), 5);
    assert_eq!(
        config.window.open_for(),
        Duration::from_secs(24 * 3600 - 120)
    );
}

#[test]
fn unknown_keys_are_named() {
    let e = load("[amqp]\nprefetchh = 3\n").unwrap_err();
    assert_eq!(e.key, "amqp.prefetchh", "{e}");
    let e = load("[nonsense]\n").unwrap_err();
    assert!(e.to_string().contains("nonsense"), "{e}");
}

#[test]
fn bad_durations_are_named() {
    let e = load("[retry]\ndelays = [\"5s\", \"soon\"]\n").unwrap_err();
    assert!(e.key.starts_with("retry.delays"), "{e}");
    assert!(e.problem.contains("soon"), "{e}");
    let e = load("[window]\nmargin = \"forever\"\n").unwrap_err();
    assert_eq!(e.key, "window.margin");
}

#[test]
fn nonsense_values_are_named() {
    assert_eq!(
        load("[retry]\nmax_attempts = 0\n").unwrap_err().key,
        "retry.max_attempts"
    );
    assert_eq!(
        load("[retry]\ndelays = []\n").unwrap_err().key,
        "retry.delays"
    );
    assert_eq!(
        load("[amqp]\nprefetch = 0\n").unwrap_err().key,
        "amqp.prefetch"
    );
    assert_eq!(
        load("[window]\nhours = 1\nmargin = \"2h\"\n")
            .unwrap_err()
            .key,
        "window.margin"
    );
    let e = load("[providers.kaleyra.default]\nbase_url = \"ftp://x\"\n").unwrap_err();
    assert_eq!(e.key, "providers.kaleyra.default.base_url");
    let e = load("[providers.kaleyra.default]\nbase_url = \"http://x\"\nrate_per_second = -1\n")
        .unwrap_err();
    assert_eq!(e.key, "providers.kaleyra.default.rate_per_second");
    let e = load("[providers.kaleyra.default]\nrate_per_second = 1\n").unwrap_err();
    assert!(e.to_string().contains("base_url"), "{e}");
}

#[test]
fn environment_overrides_every_section_key() {
    let config = load_env(
        "[amqp]\nurl = \"amqp://file\"\n",
        &[
            ("HERALD_AMQP_URL", "amqp://guest:guest@10.0.0.1:5672/%2f"),
            ("HERALD_AMQP_PREFETCH", "64"),
            ("HERALD_RETRY_MAX_ATTEMPTS", "3"),
            ("HERALD_RETRY_DELAYS", "[\"1s\", \"2s\"]"),
            ("HERALD_REDIS_PREFIX", "h2:"),
            (
                "HERALD_PROVIDERS__kaleyra__default__base_url",
                "http://127.0.0.1:9900",
            ),
            ("HERALD_PROVIDERS__kaleyra__default__burst", "3"),
            // Not overrides: secrets named by *_env, and the reserved ones.
            ("HERALD_API_TOKEN", "s3cret"),
            ("HERALD_CONFIG", "/etc/herald.toml"),
        ],
    )
    .unwrap();
    assert_eq!(config.amqp.url, "amqp://guest:guest@10.0.0.1:5672/%2f");
    assert_eq!(config.amqp.prefetch, 64);
    assert_eq!(config.retry.max_attempts, 3);
    assert_eq!(
        config.retry.delays,
        vec![Duration::from_secs(1), Duration::from_secs(2)]
    );
    assert_eq!(config.redis.prefix, "h2:");
    let kaleyra = config.account("kaleyra", "default").unwrap();
    assert_eq!(
        (kaleyra.base_url.as_str(), kaleyra.burst),
        ("http://127.0.0.1:9900", 3)
    );
}

#[test]
fn a_bad_override_is_named() {
    let e = load_env("", &[("HERALD_AMQP_PREFETCH", "lots")]).unwrap_err();
    assert_eq!(e.key, "amqp.prefetch", "{e}");
    let e = load_env("", &[("HERALD_PROVIDERS__kaleyra", "x")]).unwrap_err();
    assert_eq!(e.key, "HERALD_PROVIDERS__kaleyra");
}

#[test]
fn secrets_come_from_env_or_file_and_never_print() {
    let table: toml::Table = "api_key_env = \"HERALD_TEST_SECRET_PRESENT\""
        .parse()
        .unwrap();
    // SAFETY: this test binary sets the variable before any thread reads it.
    unsafe { std::env::set_var("HERALD_TEST_SECRET_PRESENT", "k-123") };
    let secret = read_secret(&table, "api_key", "providers.x.default").unwrap();
    assert_eq!(secret.expose(), "k-123");
    assert!(!format!("{secret:?}").contains("k-123"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "file-secret\n").unwrap();
    let table: toml::Table = format!("basic_token_file = {:?}", path.display().to_string())
        .parse()
        .unwrap();
    assert_eq!(
        read_secret(&table, "basic_token", "p").unwrap().expose(),
        "file-secret"
    );

    let table: toml::Table = "api_key_env = \"HERALD_TEST_SECRET_MISSING\""
        .parse()
        .unwrap();
    let e = read_secret(&table, "api_key", "providers.kaleyra.default").unwrap_err();
    assert_eq!(e.key, "providers.kaleyra.default.api_key_env");
    assert!(e.problem.contains("HERALD_TEST_SECRET_MISSING"));
    let e = read_secret(&toml::Table::new(), "api_key", "providers.kaleyra.default").unwrap_err();
    assert!(e.problem.contains("missing secret"));
}

#[test]
fn durations_parse_and_format() {
    assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
    assert_eq!(
        parse_duration("7d").unwrap(),
        Duration::from_secs(7 * 86400)
    );
    assert!(parse_duration("5 parsecs").is_err());
    for text in ["250ms", "5s", "2m", "1h", "7d", "90s"] {
        assert_eq!(format_duration(parse_duration(text).unwrap()), text);
    }
}

/// The Kubernetes configurations load, and each pod's termination grace
/// period outlasts `worker.shutdown_grace`, so in-flight jobs finish before
/// SIGKILL.
#[test]
fn the_kubernetes_configurations_load_and_their_pods_outlast_the_shutdown_grace() {
    let k8s = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/k8s");
    let pod_grace: Vec<u64> = ["worker.yaml", "api.yaml"]
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(format!("{k8s}/base/{file}")).unwrap();
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
                .map(|s| s.trim().parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(pod_grace.len(), 2, "both Deployments set it");
    for config in ["base/herald.toml", "overlays/example/herald.toml"] {
        let text = std::fs::read_to_string(format!("{k8s}/{config}")).unwrap();
        let loaded = load(&text).unwrap_or_else(|e| panic!("{config}: {e}"));
        assert!(!loaded.providers.is_empty(), "{config}");
        for grace in &pod_grace {
            assert!(
                Duration::from_secs(*grace) > loaded.worker.shutdown_grace,
                "{config}: shutdown_grace must end before the pod's {grace}s"
            );
        }
    }
}
