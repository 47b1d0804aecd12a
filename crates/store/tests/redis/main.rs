//! herald-store against a real Redis: each test under its own key prefix
//! (herald-testkit), removed when the test ends.

mod lifecycle;
mod limits;
mod state;

use herald_store::Store;
use herald_testkit::TestEnv;

/// A store on the test's prefix, with a connection of its own (like a replica).
async fn store(env: &TestEnv) -> Store {
    Store::connect(&env.redis_url, &env.prefix)
        .await
        .expect("connect to the test Redis")
}

/// A Redis URL with nothing listening behind it.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}
