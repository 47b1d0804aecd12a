//! Every example in every `--help` is run, as written, against the real
//! broker and Redis, with `herald mock-vendor` for the vendors. The only
//! rewriting is of fixed ports (8080, 9090, 9091, 9900) to free ones, so the
//! test can run next to others. Servers (`worker`, `api`, `mock-vendor`) are
//! started, the examples after them in the same help run against them, then
//! they are stopped with SIGTERM and must exit 0. Every other example must
//! exit 0, and a `curl` must not be answered with an error.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use herald_client::{Outgoing, Topology};
use herald_core::protocol::{DEAD_EXCHANGE, header};
use herald_testkit::TestEnv;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::support::{Running, broker, herald_bin};

const SERVERS: &[&str] = &["worker", "api", "mock-vendor"];

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The commands of a help text: `Commands:` lines, `help` aside.
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // Deeper lines continue a wrapped description.
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The runnable examples of a help text: the indented lines of its
/// `Example:`/`Examples:` section, comments left out, one command per line
/// starting with `herald`, `curl` or `VAR=…`; other lines continue the
/// command before (a `\` continuation, a multi-line quoted JSON body).
fn examples(help: &str) -> Vec<String> {
    let mut commands: Vec<String> = Vec::new();
    let mut inside = false;
    for line in help.lines() {
        if matches!(line.trim(), "Example:" | "Examples:") {
            inside = true;
            continue;
        }
        if !inside || line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            inside = false;
            continue;
        }
        let text = line.trim();
        let starts = text.starts_with("herald ")
            || text.starts_with("curl ")
            || text.split_whitespace().next().is_some_and(|w| {
                w.contains('=') && w.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            });
        match commands.last_mut() {
            Some(last) if !starts || last.ends_with('\\') => {
                last.push('\n');
                last.push_str(line);
            }
            _ => commands.push(text.to_owned()),
        }
    }
    commands
}

struct Sandbox {
    env: TestEnv,
    dir: tempfile::TempDir,
    ports: HashMap<&'static str, u16>,
    worker_port: u16,
    broker: crate::support::Broker,
}

impl Sandbox {
    fn rewrite(&self, example: &str) -> String {
        let mut text = example.to_owned();
        for (fixed, port) in &self.ports {
            text = text.replace(&format!(":{fixed}"), &format!(":{port}"));
        }
        text
    }

    fn shell(&self, command: &str) -> Command {
        let bin_dir = herald_bin().parent().unwrap().to_owned();
        let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(command)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("HERALD_CONFIG", self.dir.path().join("herald.toml"))
            .env("HERALD_AMQP_URL", &self.env.amqp_url)
            .env("HERALD_REDIS_URL", &self.env.redis_url)
            .env("HERALD_REDIS_PREFIX", &self.env.prefix)
            .env("HERALD_API_TOKEN", "s3cret")
            .env("HOOK_SECRET", "hook-s3cret")
            .env("KALEYRA_API_KEY", "mock")
            .env("PINGUP_API_KEY", "mock")
            .env("DIGITAL99_API_KEY", "mock")
            .env("REPLYHERO_API_KEY", "mock")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        shell
    }

    fn run(&self, command: &str) -> Output {
        let mut child = self
            .shell(command)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(240);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{command} did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// Starts a server example and waits until it listens.
    fn serve(&self, command: &str) -> Running {
        let mut child = Running::spawn(
            self.shell(&format!("exec env {command}"))
                .stdout(Stdio::null())
                .stderr(Stdio::inherit()),
        );
        let port = command
            .split(|c: char| c.is_whitespace() || c == '\'')
            .filter_map(|w| w.strip_prefix("127.0.0.1:"))
            .find_map(|p| p.parse::<u16>().ok())
            .unwrap_or(self.worker_port);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{command} exited before listening"
            );
            assert!(
                Instant::now() < deadline,
                "{command} never listened on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        child
    }
}

fn stop(mut server: Running, command: &str) {
    kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            assert!(status.success(), "{command} ended {status} on SIGTERM");
            return;
        }
        assert!(Instant::now() < deadline, "{command} did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

/// What the examples name: a configuration, input files, and dead letters.
async fn sandbox() -> Sandbox {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().unwrap();
    let ports = HashMap::from([
        ("8080", free_port()),
        ("9090", free_port()),
        ("9091", free_port()),
        ("9900", free_port()),
    ]);
    let mock = format!("http://127.0.0.1:{}", ports["9900"]);
    let worker_port = ports["9090"];
    write(
        dir.path(),
        "herald.toml",
        &format!(
            r#"[http]
listen = "127.0.0.1:{worker_port}"
[api]
token_env = "HERALD_API_TOKEN"
[providers.kaleyra.default]
base_url = "{mock}"
sid = "HXMOCK"
from = "+12025550123"
api_key_env = "KALEYRA_API_KEY"
webhook_secret_env = "HOOK_SECRET"
[providers.pingup.default]
base_url = "{mock}"
business = "acme"
api_key_env = "PINGUP_API_KEY"
[providers.99digital.default]
base_url = "{mock}"
from = "972771234567"
api_key_env = "DIGITAL99_API_KEY"
webhook_secret_env = "HOOK_SECRET"
[providers.replyhero.default]
base_url = "{mock}"
session_id = "S"
user_id = "U"
org_id = "O"
api_key_env = "REPLYHERO_API_KEY"
"#
        ),
    );
    write(
        dir.path(),
        "jobs.jsonl",
        &format!("{}\n{}\n", job_body("j-1"), job_body("j-2")),
    );
    write(
        dir.path(),
        "customers.csv",
        "to,name,order\n+254712345678,Amina,1234\n+254712345679,Baraka,1235\n",
    );

    let topology = Topology::from_config(
        &herald_core::Config::from_toml_with_env(
            &std::fs::read_to_string(dir.path().join("herald.toml")).unwrap(),
            &[],
        )
        .unwrap(),
    );
    let broker = broker(&env, &topology).await;
    let sandbox = Sandbox {
        env,
        dir,
        ports,
        worker_port,
        broker,
    };
    sandbox.seed_dead_letters().await;
    sandbox
}

impl Sandbox {
    /// The dead letters the `dlq` examples name.
    async fn seed_dead_letters(&self) {
        let now = herald_core::protocol::rfc3339(chrono::Utc::now());
        for (id, reason) in [
            ("order-1234-shipped", "rejected_by_vendor"),
            ("w-1", "window_closed"),
            ("bad-1", "invalid_job"),
        ] {
            let mut headers = FieldTable::default();
            let text = |v: &str| AMQPValue::LongString(LongString::from(v));
            headers.insert(header::DEAD_REASON.into(), text(reason));
            headers.insert(header::DEAD_AT.into(), text(&now));
            headers.insert(header::PROVIDER.into(), text("kaleyra"));
            let body = job_body(id);
            self.broker
                .publisher
                .publish(Outgoing {
                    exchange: DEAD_EXCHANGE,
                    routing_key: "kaleyra",
                    body: body.as_bytes(),
                    properties: BasicProperties::default()
                        .with_message_id(id.into())
                        .with_headers(headers),
                    mandatory: true,
                })
                .await
                .unwrap();
        }
    }
}

fn job_body(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","provider":"kaleyra","to":"+254712345678","message":{{"type":"text","body":"hi"}}}}"#
    )
}

fn help_of(path: &[String]) -> String {
    let output = Command::new(herald_bin())
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success(), "{path:?} --help");
    String::from_utf8(output.stdout).unwrap()
}

/// Every command's path, parents first, in the order `--help` lists them.
fn every_command(path: Vec<String>, out: &mut Vec<Vec<String>>) {
    let help = help_of(&path);
    out.push(path.clone());
    for sub in subcommands(&help) {
        let mut child = path.clone();
        child.push(sub);
        every_command(child, out);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_help_example_runs_as_written() {
    let sandbox = sandbox().await;
    let mut commands = Vec::new();
    every_command(Vec::new(), &mut commands);
    let mut ran = 0;
    for path in commands {
        let mut servers = Vec::new();
        for example in examples(&help_of(&path)) {
            let command = sandbox.rewrite(&example);
            let is_server =
                command.starts_with("herald") || command.split_whitespace().any(|w| w == "herald");
            let subcommand = command
                .split_whitespace()
                .skip_while(|w| *w != "herald")
                .skip(1)
                .find(|w| !w.starts_with('-') && !w.ends_with(".toml"))
                .unwrap_or_default()
                .to_owned();
            if is_server && SERVERS.contains(&subcommand.as_str()) {
                servers.push((sandbox.serve(&command), command));
                ran += 1;
                continue;
            }
            let sandbox_ref = &sandbox;
            let output = tokio::task::block_in_place(|| sandbox_ref.run(&command));
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(
                output.status.success(),
                "example of `herald {}` failed ({}):\n{command}\n{}{stdout}",
                path.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            if command.starts_with("curl") {
                assert!(!stdout.contains("\"error\""), "{command}\n{stdout}");
            }
            if command.contains("topology delete") {
                // Put back what the examples after it need.
                let restore = sandbox.run("herald topology declare");
                assert!(
                    restore.status.success(),
                    "re-declaring after the delete example"
                );
                sandbox.seed_dead_letters().await;
            }
            ran += 1;
        }
        for (server, command) in servers {
            stop(server, &command);
        }
    }
    assert!(ran >= 40, "only {ran} examples found");
}

#[test]
fn examples_are_split_into_commands_with_their_continuations() {
    let help = "About.\n\nExamples:\n  # One job\n  herald enqueue --id a \\\n      --text hi\n\n  curl localhost:8080/v1 -d '{\n    \"id\": 1}'\n  HERALD_X=1 herald worker\n\nNot an example.\n  herald nope\n";
    assert_eq!(
        examples(help),
        [
            "herald enqueue --id a \\\n      --text hi",
            "curl localhost:8080/v1 -d '{\n    \"id\": 1}'",
            "HERALD_X=1 herald worker"
        ]
    );
}
