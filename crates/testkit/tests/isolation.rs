//! The harness itself: a fresh vhost and prefix per environment, gone after drop.

use herald_testkit::TestEnv;

#[tokio::test]
async fn each_environment_is_isolated_and_cleaned_up() {
    let (a, b) = (TestEnv::new().await, TestEnv::new().await);
    assert_ne!(a.vhost, b.vhost);
    assert_ne!(a.prefix, b.prefix);

    let conn = a.amqp().await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare("probe".into(), Default::default(), Default::default())
        .await
        .unwrap();
    let mut redis = a.redis().await;
    let key = format!("{}probe", a.prefix);
    let _: () = redis::AsyncCommands::set(&mut redis, &key, 1)
        .await
        .unwrap();
    assert!(a.queue_info("probe").await.is_ok());
    conn.close(0, "done".into()).await.unwrap();

    let vhost_url = a.amqp_url.clone();
    drop(a);
    let exists: bool = redis::AsyncCommands::exists(&mut redis, &key)
        .await
        .unwrap();
    assert!(!exists, "keys under the prefix are deleted on drop");
    let reconnect = lapin::Connection::connect(&vhost_url, Default::default()).await;
    assert!(reconnect.is_err(), "the vhost is deleted on drop");
}
