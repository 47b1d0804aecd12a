//! herald-store against a real Redis: each test under its own key prefix
//! (herald-testkit), removed when the test ends.

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
