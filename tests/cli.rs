//! What a new user meets first: exit statuses, `herald config check`,
//! uncoloured logs in pipes, and tearing a set-up down.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use herald_testkit::TestEnv;

use crate::support::{Running, TestConfig, stdout_of};

const CONFIG: &str = "\
[providers.kaleyra.default]
base_url = \"http://127.0.0.1:1\"
[providers.pingup.default]
base_url = \"http://127.0.0.1:1\"
";

/// `topology status --json` after a tear-down: exit 3, every queue missing.
#[track_caller]
fn assert_every_queue_missing(status: &std::process::Output) {
    assert_eq!(status.status.code(), Some(3));
    let queues: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let all_missing = queues
        .as_array()
        .unwrap()
        .iter()
        .all(|q| q["exists"] == false);
    assert!(all_missing, "{queues}");
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn exit_statuses_tell_ok_rejected_not_found_and_unavailable_apart() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, CONFIG);
    stdout_of(&config.run(&["topology", "declare"]));
    let job = |extra: &[&str]| {
        let mut args = vec!["enqueue", "--id", "e-1", "--to", "+254712345678"];
        args.extend_from_slice(extra);
        config.run(&args)
    };

    let ok = job(&["--provider", "kaleyra", "--text", "hi"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr_of(&ok));

    let template = job(&["--provider", "pingup", "--template", "order_update"]);
    assert_eq!(template.status.code(), Some(2), "input rejected");
    assert!(
        stderr_of(&template).contains("line 1: message.type: pingup cannot send template"),
        "{}",
        stderr_of(&template)
    );
    let expired = job(&[
        "--provider",
        "kaleyra",
        "--text",
        "hi",
        "--expires-at",
        "2020-01-01T00:00:00Z",
    ]);
    assert_eq!(expired.status.code(), Some(2), "input rejected");
    assert!(
        stderr_of(&expired).contains("line 1: expires_at:"),
        "{}",
        stderr_of(&expired)
    );

    let unknown = config.run(&["dlq", "show", "no-such-job"]);
    assert_eq!(unknown.status.code(), Some(3), "not found");

    let mut down = config.command(&["enqueue", "--id", "e-2", "--provider", "kaleyra"]);
    down.args(["--to", "+254712345678", "--text", "hi"])
        .env("HERALD_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f");
    let down = down.output().unwrap();
    assert_eq!(down.status.code(), Some(4), "infrastructure unavailable");
    let text = stderr_of(&down);
    assert!(text.contains("cannot connect to the broker"), "{text}");
    assert_eq!(
        text.matches("Connection refused").count(),
        1,
        "said once: {text}"
    );
}

#[tokio::test]
async fn config_check_names_every_problem_at_once_and_starts_nothing() {
    let env = TestEnv::new().await;
    let broken = TestConfig::new(
        &env,
        "[amqp]\nprefetch = 0\n\
         [providers.kaleyra.default]\nbase_url = \"http://127.0.0.1:1\"\nsid = \"HX1\"\n\
         from = \"+12025550123\"\napi_key_env = \"HERALD_TEST_UNSET_KALEYRA_KEY\"\n\
         [providers.pingup.default]\nbase_url = \"http://127.0.0.1:1\"\nbusiness = \"acme\"\n\
         api_key_env = \"HERALD_TEST_UNSET_PINGUP_KEY\"\n",
    );
    let mut check = broken.command(&["config", "check"]);
    check.env("HERALD_AMQP_PREFTCH", "64");
    let output = check.output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr_of(&output);
    assert!(text.contains("configuration problems"), "{text}");
    for named in [
        "amqp.prefetch",
        "HERALD_AMQP_PREFTCH",
        "HERALD_AMQP_PREFETCH",
    ] {
        assert!(text.contains(named), "{named} in {text}");
    }

    // The file is right; the environment lacks both vendors' secrets.
    let secrets = TestConfig::new(
        &env,
        "[providers.kaleyra.default]\nbase_url = \"http://127.0.0.1:1\"\nsid = \"HX1\"\n\
         from = \"+12025550123\"\napi_key_env = \"HERALD_TEST_UNSET_KALEYRA_KEY\"\n\
         [providers.pingup.default]\nbase_url = \"http://127.0.0.1:1\"\nbusiness = \"acme\"\n\
         api_key_env = \"HERALD_TEST_UNSET_PINGUP_KEY\"\n",
    );
    let output = secrets.run(&["config", "check", "--json"]);
    assert_eq!(output.status.code(), Some(2));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "providers.kaleyra.default.api_key_env",
            "providers.pingup.default.api_key_env"
        ]
    );

    let fine = TestConfig::new(&env, "");
    assert!(stdout_of(&fine.run(&["config", "check"])).contains("configuration OK"));
}

#[tokio::test]
async fn logs_to_a_pipe_carry_no_colour_codes() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, "");
    let mut mock = config.command(&["mock-vendor", "--listen", "127.0.0.1:0"]);
    mock.stderr(Stdio::piped()).stdout(Stdio::null());
    let mut mock = Running::spawn(&mut mock);
    let mut line = String::new();
    BufReader::new(mock.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("INFO"), "a log line: {line:?}");
    assert!(!line.contains('\u{1b}'), "no ANSI escape codes: {line:?}");
}

#[tokio::test]
async fn topology_delete_removes_every_queue_declare_made() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, CONFIG);
    stdout_of(&config.run(&["topology", "declare"]));
    let refused = config.run(&["topology", "delete"]);
    assert_eq!(refused.status.code(), Some(2), "--yes is required");
    stdout_of(&config.run(&["topology", "delete", "--yes"]));
    assert_every_queue_missing(&config.run(&["topology", "status", "--json"]));
}

#[tokio::test]
async fn local_sh_down_removes_its_topology_and_its_redis_keys() {
    let env = TestEnv::new().await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local.sh");
    let local_toml = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local.toml");
    // The script's own configuration, in this test's vhost and key prefix.
    let in_test_env = |command: &mut std::process::Command| {
        command
            .env_remove("HERALD_CONFIG")
            .env("HERALD_AMQP_URL", &env.amqp_url)
            .env("HERALD_REDIS_URL", &env.redis_url)
            .env("HERALD_REDIS_PREFIX", &env.prefix);
    };
    let local = |args: &[&str]| {
        let mut command = std::process::Command::new(crate::support::herald_bin());
        command.args(["--config", local_toml]).args(args);
        in_test_env(&mut command);
        command
    };
    stdout_of(&local(&["topology", "declare"]).output().unwrap());
    let mut redis = env.redis().await;
    let key = format!("{}inbound:kaleyra:default:254712345678", env.prefix);
    let _: () = redis::AsyncCommands::set(&mut redis, &key, 1)
        .await
        .unwrap();

    let mut down = std::process::Command::new(script);
    down.arg("--down")
        .env("LOCAL_HERALD_BIN", crate::support::herald_bin());
    in_test_env(&mut down);
    stdout_of(&down.output().unwrap());

    let exists: bool = redis::AsyncCommands::exists(&mut redis, &key)
        .await
        .unwrap();
    assert!(!exists, "{key} removed");
    assert_every_queue_missing(&local(&["topology", "status", "--json"]).output().unwrap());
}

#[test]
fn the_readme_links_only_inside_the_repository() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(!readme.contains("../"), "a path out of the repository");
    for target in readme
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
    {
        assert!(
            !target.contains("://"),
            "a link outside the repository: {target}"
        );
        let path = target.split('#').next().unwrap();
        assert!(root.join(path).exists(), "{target} does not exist");
    }
    assert!(
        readme.contains("](docs/contract.md)"),
        "the contract is linked"
    );
}
