//! Configuration: TOML, environment overrides, secrets, durations, and
//! errors that name the key.

use std::time::Duration;

use herald_core::config::{format_duration, parse_duration, read_secret};
use herald_core::{Config, ConfigErrors, RateScope};

/// The first problem, for tests about one problem.
fn load(text: &str) -> Result<Config, herald_core::ConfigError> {
    load_all(text, &[]).map_err(|e| e.problems[0].clone())
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, herald_core::ConfigError> {
    load_all(text, env).map_err(|e| e.problems[0].clone())
}

fn load_all(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
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
    let meta = config.account("meta", "default").unwrap();
    assert_eq!(meta.rate_per_second, Some(80.0));
    assert_eq!(meta.per_recipient_interval, Some(Duration::from_secs(6)));
    assert_eq!(config.retry.max_attempts, 6);
    assert_eq!(config.window.margin, Duration::from_secs(120));
    assert_eq!(config.idempotency.ttl, Duration::from_secs(7 * 86400));
}

#[test]
fn a_meta_account_defaults_to_metas_throughput_and_others_to_no_limit() {
    let config = load(
        "[providers.meta.default]\nbase_url = \"https://graph.facebook.com\"\n\
         [providers.meta.raised]\nbase_url = \"https://graph.facebook.com\"\nrate_per_second = 250\n\
         [providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"",
    )
    .unwrap();
    let rate = |provider, account| config.account(provider, account).unwrap().rate_per_second;
    assert_eq!(rate("meta", "default"), Some(80.0));
    assert_eq!(rate("meta", "raised"), Some(250.0));
    assert_eq!(rate("kaleyra", "default"), None);
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
            // Not overrides: the reserved ones.
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

#[test]
fn every_problem_is_reported_at_once() {
    let errors = load_all(
        "[amqp]\nprefetch = 0\n[retry]\nmax_attempts = 0\ndelays = [\"0s\", \"5s\"]\n\
         [providers.kaleyra.default]\nbase_url = \"ftp://x\"\nburst = 0\n",
        &[("HERALD_AMQP_PREFTCH", "64")],
    )
    .unwrap_err();
    for key in [
        "amqp.prefetch",
        "retry.max_attempts",
        "retry.delays[0]",
        "providers.kaleyra.default.base_url",
        "providers.kaleyra.default.burst",
        "HERALD_AMQP_PREFTCH",
    ] {
        assert!(errors.names(key), "{key} in {errors}");
    }
    let text = errors.to_string();
    assert!(text.starts_with("6 configuration problems:"), "{text}");
}

#[test]
fn an_override_that_names_no_key_is_an_error_naming_the_closest_key() {
    let e = load_env("", &[("HERALD_AMQP_PREFTCH", "64")]).unwrap_err();
    assert_eq!(e.key, "HERALD_AMQP_PREFTCH");
    assert!(
        e.problem
            .contains("did you mean HERALD_AMQP_PREFETCH (configuration key amqp.prefetch)"),
        "{e}"
    );
    let e = load_env("", &[("HERALD_NOTHING_LIKE_IT_AT_ALL", "1")]).unwrap_err();
    assert!(e.problem.contains("HERALD_<SECTION>_<KEY>"), "{e}");
}

#[test]
fn variables_the_configuration_names_as_secrets_are_not_overrides() {
    let toml = "[api]\ntoken_env = \"HERALD_API_TOKEN\"\n\
                [providers.kaleyra.default]\nbase_url = \"http://x\"\napi_key_env = \"HERALD_KALEYRA_KEY\"\n";
    let env = [
        ("HERALD_API_TOKEN", "s3cret"),
        ("HERALD_KALEYRA_KEY", "k"),
        ("HERALD_LOG_FORMAT", "json"),
        ("HERALD_TEST_AMQP_URL", "amqp://x"),
    ];
    assert!(load_all(toml, &env).is_ok());
    // Unnamed by the configuration, the same variable is a typo.
    assert!(load_all("", &[("HERALD_KALEYRA_KEY", "k")]).is_err());
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
