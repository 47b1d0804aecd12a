//! `herald bench pipeline`, the real binary on a few jobs: every worker
//! process is measured, and nothing is left behind.

use herald_testkit::TestEnv;
use serde_json::Value;

use crate::support::{TestConfig, stdout_of};

const JOBS: u64 = 150;

fn per_job(drain: &Value, command: &str) -> f64 {
    drain["redis_by_command"][command].as_f64().unwrap_or(0.0)
}

#[tokio::test]
async fn compare_measures_both_worker_processes_and_leaves_no_vhost_or_keys() {
    let env = TestEnv::new().await;
    let config = TestConfig::new(&env, "");
    let api = env.services.rabbitmq_api.to_string();
    let output = config.run(&[
        "bench",
        "pipeline",
        "--jobs",
        &JOBS.to_string(),
        "--prefetch",
        "16",
        "--json",
        "--rabbitmq-api",
        &api,
    ]);
    let report: Value = serde_json::from_str(&stdout_of(&output)).unwrap();

    assert_eq!(report["mode"], "compare");
    assert!(report["ceiling_jobs_per_sec"].as_f64().unwrap() > 0.0);
    for worker in ["handwritten", "herald"] {
        let drain = &report[worker];
        assert_eq!(drain["jobs"], JOBS, "{worker}: {drain}");
        assert!(drain["jobs_per_sec"].as_f64().unwrap() > 0.0, "{drain}");
        assert!(drain["cpu_us_per_job"].as_f64().unwrap() > 0.0, "{drain}");
        let peak = drain["peak_rss_bytes"].as_u64().unwrap();
        assert!(
            peak > 1 << 20,
            "{worker}: a worker uses more than 1 MiB: {peak}"
        );
        // Each job reads its sent mark and its window and records the send.
        assert!(per_job(drain, "get") >= 2.0, "{worker}: {drain}");
        assert!(per_job(drain, "set") >= 1.0, "{worker}: {drain}");
    }
    // Herald admits and records each job with a script. (Redis counts
    // every client's commands, so what other tests run only adds.)
    assert!(per_job(&report["herald"], "evalsha") >= 2.0, "{report}");
    assert!(
        report["herald"]["redis_script_calls_per_job"]
            .as_f64()
            .unwrap()
            >= 2.0,
        "{report}"
    );

    let vhost = report["scratch_vhost"].as_str().unwrap();
    let api = &env.services.rabbitmq_api;
    let mut vhost_url = api.join(&format!("/api/vhosts/{vhost}")).unwrap();
    vhost_url.set_username("").unwrap();
    vhost_url.set_password(None).unwrap();
    let response = reqwest::Client::new()
        .get(vhost_url)
        .basic_auth(api.username(), api.password())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "the scratch vhost {vhost} is gone");
    let prefix = report["redis_prefix"].as_str().unwrap();
    assert!(
        prefix.starts_with(&env.prefix),
        "{prefix} is under the test's prefix"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut env.redis().await)
        .await
        .unwrap();
    assert!(keys.is_empty(), "keys left behind: {keys:?}");
}
