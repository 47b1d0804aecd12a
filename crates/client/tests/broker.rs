//! The client against the real broker: topology declarations and confirmed
//! publishing, each test in a fresh vhost.

use std::time::Duration;

use futures::StreamExt;
use herald_client::{JobBuilder, PublishError, Publisher, Topology, connect};
use herald_core::Job;
use herald_testkit::TestEnv;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions};
use lapin::types::FieldTable;

fn topology() -> Topology {
    Topology {
        providers: vec!["kaleyra".into(), "payhero".into()],
        delay_tiers: vec![Duration::from_secs(1), Duration::from_secs(30)],
        delivery_limit: 5,
    }
}

#[tokio::test]
async fn declaring_twice_gives_the_contract_topology() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    topology()
        .declare(&channel)
        .await
        .expect("declaring again is a no-op");

    let send = env.queue_info("herald.send.kaleyra").await.unwrap();
    let args = &send["arguments"];
    assert_eq!(args["x-queue-type"], "quorum");
    assert_eq!(args["x-delivery-limit"], 5);
    assert_eq!(args["x-dead-letter-exchange"], "herald.dead");
    assert_eq!(args["x-dead-letter-strategy"], "at-least-once");
    assert_eq!(args["x-overflow"], "reject-publish");

    let delay = env.queue_info("herald.delay.30s").await.unwrap();
    let args = &delay["arguments"];
    assert_eq!(args["x-queue-type"], "quorum");
    assert_eq!(args["x-message-ttl"], 30_000);
    assert_eq!(args["x-dead-letter-exchange"], "herald.send");
    assert_eq!(args["x-dead-letter-strategy"], "at-least-once");
    assert_eq!(args["x-overflow"], "reject-publish");

    let dead = env.queue_info("herald.dead").await.unwrap();
    assert_eq!(dead["arguments"]["x-queue-type"], "quorum");
    assert!(
        dead["arguments"].get("x-message-ttl").is_none(),
        "dead letters never expire"
    );
    assert!(dead["arguments"].get("x-dead-letter-exchange").is_none());

    let statuses = topology().status(&conn).await.unwrap();
    let names: Vec<_> = statuses.iter().map(|s| s.queue.as_str()).collect();
    assert_eq!(names, topology().queues());
}

#[tokio::test]
async fn status_marks_a_missing_queue_and_still_reports_the_others() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    channel
        .queue_delete("herald.delay.1s".into(), Default::default())
        .await
        .unwrap();

    let statuses = topology().status(&conn).await.unwrap();
    let missing: Vec<_> = statuses.iter().filter(|s| !s.exists).collect();
    assert_eq!(missing.len(), 1, "{statuses:?}");
    assert_eq!(missing[0].queue, "herald.delay.1s");
    assert_eq!(missing[0].messages, None);
    let dead = statuses.iter().find(|s| s.queue == "herald.dead").unwrap();
    assert_eq!(
        (dead.exists, dead.messages),
        (true, Some(0)),
        "read after the missing one"
    );
}

#[tokio::test]
async fn the_client_refuses_a_job_its_provider_cannot_send_or_already_expired() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();

    let template = JobBuilder::template(
        "t-1",
        "pingup",
        "+254712345678",
        "order_update",
        "en",
        vec![],
    )
    .build()
    .unwrap();
    let expired = JobBuilder::text("x-1", "kaleyra", "+254712345678", "hi")
        .expires_at(chrono::Utc::now() - chrono::TimeDelta::seconds(1))
        .build()
        .unwrap();
    for (job, field) in [(template, "message.type"), (expired, "expires_at")] {
        match publisher.publish_job(&job).await {
            Err(PublishError::Refused(errors)) => assert!(errors.mentions(field), "{errors}"),
            other => panic!("{} should be refused naming {field}: {other:?}", job.id),
        }
    }
}

#[tokio::test]
async fn published_jobs_are_confirmed_and_read_back_from_the_provider_queue() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();

    let jobs: Vec<Job> = (0..50)
        .map(|i| {
            JobBuilder::text(
                format!("job-{i}"),
                "kaleyra",
                "+254712345678",
                format!("hello {i}"),
            )
            .build()
            .unwrap()
        })
        .collect();
    let mut pending = Vec::new();
    for job in &jobs {
        pending.push(publisher.start_job(job).await.unwrap());
    }
    for confirm in pending {
        confirm.wait().await.unwrap();
    }

    let mut consumer = channel
        .basic_consume(
            "herald.send.kaleyra".into(),
            "t".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    for job in &jobs {
        let delivery = tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            Job::parse(&delivery.data).unwrap(),
            *job,
            "order and content are kept"
        );
        assert_eq!(
            delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.as_str()),
            Some(job.id.as_str())
        );
        assert_eq!(*delivery.properties.delivery_mode(), Some(2));
        let published_at = delivery
            .properties
            .timestamp()
            .expect("the producer's timestamp");
        let now = chrono::Utc::now().timestamp() as u64;
        assert!(
            published_at <= now && now - published_at < 60,
            "timestamp {published_at} is when it was published (now {now})"
        );
        delivery.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn a_job_for_an_unbound_provider_lands_in_the_dead_letter_queue() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();

    let job = JobBuilder::text("lost-1", "nosuchvendor", "+254712345678", "hi")
        .build()
        .unwrap();
    publisher
        .publish_job(&job)
        .await
        .expect("routed to the alternate exchange, so confirmed");
    let got = channel
        .basic_get("herald.dead".into(), BasicGetOptions::default())
        .await
        .unwrap();
    let got = got.expect("the job is in herald.dead");
    assert_eq!(got.delivery.data, job.to_body());
}

#[tokio::test]
async fn an_unroutable_publish_is_an_error_not_a_silent_loss() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        "herald-delay".into(),
        lapin::types::AMQPValue::LongString("7s".into()),
    );
    let message =
        herald_client::Outgoing::json("herald.delay", "kaleyra", b"{}").with_headers(headers);
    let err = publisher.publish(message).await.unwrap_err();
    assert!(
        matches!(err, herald_client::PublishError::Unroutable { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_broadcast_nobody_listens_to_may_go_unrouted() {
    let env = TestEnv::new().await;
    let conn = connect(&env.amqp_url, "test").await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    topology().declare(&channel).await.unwrap();
    let publisher = Publisher::new(&conn).await.unwrap();
    let event = herald_client::Outgoing::json("herald.events", "sent.kaleyra", b"{}").unrouted_ok();
    publisher
        .publish(event)
        .await
        .expect("no queue bound, and that is fine for events");
}
