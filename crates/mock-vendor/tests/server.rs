//! The mock over real HTTP: every vendor path, recording, each fault, and
//! the control endpoints.

use std::time::{Duration, Instant};

use herald_mock_vendor::{FaultSpec, Faults, MockVendor, MockVendorHandle, Provider, Reply};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{Value, json};

async fn start(faults: Faults) -> (MockVendorHandle, Client) {
    let mock = MockVendor::start("127.0.0.1:0".parse().unwrap(), faults)
        .await
        .unwrap();
    (mock, Client::new())
}

async fn start_with(spec: FaultSpec) -> (MockVendorHandle, Client) {
    start(Faults::everywhere(spec)).await
}

/// A valid, authenticated text message to `provider`, as its docs show it.
fn text(client: &Client, mock: &MockVendorHandle, provider: Provider) -> RequestBuilder {
    let base = mock.base_url();
    match provider {
        Provider::PayHero => client
            .post(format!("{base}/api/v2/whatspp/sendText"))
            .header("Authorization", "Basic dG9rZW4=")
            .json(&json!({"message": "hi", "phone_number": "0787877878", "session": "18gd"})),
        Provider::Pingup => client
            .post(format!("{base}/ext/v2/acme/messages"))
            .header("Authorization", "Bearer key")
            .json(&json!({"message_type": "text", "client_phone": "3931212321", "text_message": "hi"})),
        Provider::Kaleyra => client
            .post(format!("{base}/v1/HXAP1/messages"))
            .header("api-key", "key")
            .form(&[
                ("to", "+254712345678"),
                ("type", "text"),
                ("channel", "whatsapp"),
                ("from", "+12025550123"),
                ("body", "hi there"),
            ]),
        Provider::Digital99 => client.post(format!("{base}/whatsapp/v2/sendMessage")).json(
            &json!({"apiKey": "key", "from": "972771234567", "to": "972501234567", "body": "hi"}),
        ),
        Provider::ReplyHero => client
            .post(format!("{base}/whatsapp/messages/send"))
            .header("X-API-KEY", "key")
            .json(&json!({
                "message": {"type": "text", "text": {"body": "hi"}},
                "sessionId": "S", "customerId": "C", "userId": "U", "orgId": "O",
            })),
        Provider::Meta => client
            .post(format!("{base}/v21.0/106540352242922/messages"))
            .header("Authorization", "Bearer EAAJB")
            .json(&json!({
                "messaging_product": "whatsapp", "recipient_type": "individual",
                "to": "+16505551234", "type": "text", "text": {"body": "hi"},
            })),
    }
}

fn replyhero_template(client: &Client, mock: &MockVendorHandle) -> RequestBuilder {
    client
        .post(format!("{}/whatsapp/template/send", mock.base_url()))
        .header("x-api-key", "key")
        .json(&json!({
            "templateName": "order_update", "sessionId": "S", "userId": "U", "orgId": "O",
            "customerId": "C",
            "components": [{"type": "body", "parameters": [{"type": "text", "text": "1234"}]}],
        }))
}

async fn answer(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The status alone, for answers whose body does not matter.
async fn status_of(request: RequestBuilder) -> StatusCode {
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn every_vendor_path_answers_its_documented_success_body() {
    let (mock, client) = start(Faults::default()).await;

    let (status, body) = answer(text(&client, &mock, Provider::PayHero)).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"success": true})));

    let (status, body) = answer(text(&client, &mock, Provider::Pingup)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], true);
    assert!(
        body["data"]["message_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );

    let (status, body) = answer(text(&client, &mock, Provider::Kaleyra)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "text");
    assert_eq!(body["body"], "hi there");
    assert_eq!(body["totalCount"], 1);
    assert_eq!(body["data"][0]["recipient"], "254712345678");
    assert_eq!(
        body["data"][0]["message_id"],
        format!("{}:0", body["id"].as_str().unwrap())
    );
    assert_eq!(body["error"], json!({}));

    let (status, body) = answer(text(&client, &mock, Provider::Digital99)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "OK");
    assert_eq!(body["to"], "972501234567");
    assert!(body["unique"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(body["timestamp"].is_i64());

    let (status, body) = answer(text(&client, &mock, Provider::ReplyHero)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["messageType"], "human");
    assert_eq!(body["customerId"], "C");
    assert!(
        body["response"]["messages"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("wamid.")
    );

    let (status, body) = answer(replyhero_template(&client, &mock)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["messageType"], "template");
    assert_eq!(body[0]["message"], "order_update");
    assert_eq!(body[0]["file"], Value::Null);

    let (status, body) = answer(text(&client, &mock, Provider::Meta)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["contacts"],
        json!([{"input": "+16505551234", "wa_id": "16505551234"}])
    );
    assert!(
        body["messages"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("wamid.")
    );
}

#[tokio::test]
async fn message_ids_are_fresh_per_request() {
    let (mock, client) = start(Faults::default()).await;
    let id = |provider, body: &Value| match provider {
        Provider::Pingup => body["data"]["message_id"].clone(),
        Provider::Kaleyra => body["id"].clone(),
        Provider::Digital99 => body["unique"].clone(),
        Provider::Meta => body["messages"][0]["id"].clone(),
        _ => body["response"]["messages"][0]["id"].clone(),
    };
    for provider in [
        Provider::Pingup,
        Provider::Kaleyra,
        Provider::Digital99,
        Provider::ReplyHero,
        Provider::Meta,
    ] {
        let (_, first) = answer(text(&client, &mock, provider)).await;
        let (_, second) = answer(text(&client, &mock, provider)).await;
        assert_ne!(id(provider, &first), id(provider, &second), "{provider}");
    }
}

#[tokio::test]
async fn a_missing_credential_gets_the_vendors_401() {
    let (mock, client) = start(Faults::default()).await;
    let base = mock.base_url();
    let unauthenticated = [
        (
            Provider::PayHero,
            client
                .post(format!("{base}/api/v2/whatspp/sendText"))
                .header("Authorization", "Bearer wrong-scheme"),
        ),
        (
            Provider::Pingup,
            client.post(format!("{base}/ext/v2/acme/messages")),
        ),
        (
            Provider::Kaleyra,
            client.post(format!("{base}/v1/HXAP1/messages")),
        ),
        (
            Provider::Digital99,
            client.post(format!("{base}/whatsapp/v2/sendMessage")),
        ),
        (
            Provider::ReplyHero,
            client.post(format!("{base}/whatsapp/template/send")),
        ),
        (
            Provider::Meta,
            client.post(format!("{base}/v21.0/106540352242922/messages")),
        ),
    ];
    for (provider, request) in unauthenticated {
        let (status, body) = answer(request.json(&json!({"apiKey": ""}))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{provider}");
        assert!(
            body.to_string().contains("missing or empty"),
            "{provider}: {body}"
        );
    }
    assert_eq!(
        answer(text(&client, &mock, Provider::Digital99)).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_request_missing_what_the_vendor_insists_on_is_refused_by_name() {
    let (mock, client) = start(Faults::default()).await;
    let request = client
        .post(format!("{}/ext/v2/acme/messages", mock.base_url()))
        .header("Authorization", "Bearer key")
        .json(&json!({"message_type": "text", "text_message": "hi"}));
    let (status, body) = answer(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["success"], false);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client|client_phone"),
        "{body}"
    );

    let not_json = client
        .post(format!("{}/whatsapp/v2/sendMessage", mock.base_url()))
        .body("apiKey=key");
    let (status, body) = answer(not_json).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["reason"].as_str().unwrap().contains("not JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn requests_are_recorded_per_provider_and_queryable() {
    let (mock, client) = start(Faults::default()).await;
    for provider in [Provider::Kaleyra, Provider::PayHero, Provider::Kaleyra] {
        text(&client, &mock, provider).send().await.unwrap();
    }

    let kaleyra = mock.requests_for(Provider::Kaleyra);
    assert_eq!(kaleyra.len(), 2);
    assert_eq!(kaleyra[0].path, "/v1/HXAP1/messages");
    assert_eq!(kaleyra[0].headers["api-key"], "key");
    assert_eq!(kaleyra[0].body["to"], "+254712345678");
    assert_eq!(kaleyra[0].body["body"], "hi there");
    assert_eq!(kaleyra[0].status, Some(200));
    assert_eq!(mock.requests().len(), 3);

    let base = mock.base_url();
    let (_, listed) = answer(client.get(format!("{base}/_mock/requests?provider=payhero"))).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["provider"], "payhero");
    assert_eq!(listed[0]["body"]["session"], "18gd");
    assert!(listed[0]["received_at"].is_string());

    let (_, stats) = answer(client.get(format!("{base}/_mock/stats"))).await;
    assert_eq!(stats["kaleyra"]["requests"], 2);
    assert_eq!(stats["kaleyra"]["statuses"]["200"], 2);
    assert_eq!(stats["99digital"]["requests"], 0);

    let unknown = client.get(format!("{base}/_mock/requests?provider=acme"));
    assert_eq!(status_of(unknown).await, StatusCode::BAD_REQUEST);

    let cleared = client.delete(format!("{base}/_mock/requests"));
    assert_eq!(status_of(cleared).await, StatusCode::NO_CONTENT);
    assert!(mock.requests().is_empty());
    assert_eq!(mock.stats()[&Provider::Kaleyra].requests, 0);
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let (mock, client) = start_with(FaultSpec {
        latency_ms: 150,
        ..FaultSpec::default()
    })
    .await;
    let started = Instant::now();
    let (status, _) = answer(text(&client, &mock, Provider::Pingup)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_error_rate_of_one_answers_only_500_and_503() {
    let (mock, client) = start_with(FaultSpec {
        error_rate: 1.0,
        ..FaultSpec::default()
    })
    .await;
    for _ in 0..10 {
        let status = status_of(text(&client, &mock, Provider::ReplyHero)).await;
        assert!(
            [
                StatusCode::INTERNAL_SERVER_ERROR,
                StatusCode::SERVICE_UNAVAILABLE
            ]
            .contains(&status),
            "{status}"
        );
    }
}

#[tokio::test]
async fn every_nth_request_is_rate_limited_with_retry_after() {
    let spec = FaultSpec {
        rate_limit_every: 2,
        retry_after_secs: 2,
        ..FaultSpec::default()
    };
    let (mock, client) = start_with(spec).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = text(&client, &mock, Provider::Kaleyra)
            .send()
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "2");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 429, 200, 429]);
}

#[tokio::test]
async fn permanent_errors_are_each_vendors_own() {
    let (mock, client) = start_with(FaultSpec {
        permanent_rate: 1.0,
        ..FaultSpec::default()
    })
    .await;

    let (status, body) = answer(text(&client, &mock, Provider::PayHero)).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error_code"], "INTERNAL");
    assert!(
        body["error_message"]
            .as_str()
            .unwrap()
            .contains("didn't find a session with name '18gd'")
    );

    let (status, body) = answer(text(&client, &mock, Provider::Pingup)).await;
    assert_eq!((status, &body["success"]), (StatusCode::OK, &json!(false)));

    let (status, body) = answer(text(&client, &mock, Provider::Kaleyra)).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("E13009"))
    );
    assert_ne!(body["error"], json!({}));

    let (status, body) = answer(text(&client, &mock, Provider::Digital99)).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &json!("FAIL")));

    let (status, body) = answer(text(&client, &mock, Provider::ReplyHero)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].is_object());

    let (status, body) = answer(text(&client, &mock, Provider::Meta)).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!(131026))
    );
}

#[tokio::test]
async fn a_closed_window_relays_whatsapps_131047() {
    let (mock, client) = start_with(FaultSpec {
        window_closed_rate: 1.0,
        ..FaultSpec::default()
    })
    .await;
    for provider in Provider::ALL {
        let (status, body) = answer(text(&client, &mock, provider)).await;
        assert!(body.to_string().contains("131047"), "{provider}: {body}");
        assert_eq!(
            status == StatusCode::OK,
            matches!(provider, Provider::Pingup | Provider::Digital99),
            "{provider}"
        );
    }
}

#[tokio::test]
async fn a_hang_outlasts_the_client_and_does_not_block_shutdown() {
    let (mock, _) = start_with(FaultSpec {
        hang_rate: 1.0,
        ..FaultSpec::default()
    })
    .await;
    let client = Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = text(&client, &mock, Provider::PayHero)
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert_eq!(mock.requests()[0].status, None);

    let fresh = Client::new();
    let pending = tokio::spawn(text(&fresh, &mock, Provider::PayHero).send());
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(2), mock.shutdown())
        .await
        .expect("shutdown waited on a hang")
        .unwrap();
    let abandoned = pending.await.unwrap().unwrap();
    assert_eq!(abandoned.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn a_hang_with_a_limit_answers_success_late() {
    let spec = FaultSpec {
        hang_rate: 1.0,
        hang_ms: Some(300),
        ..FaultSpec::default()
    };
    let (mock, client) = start_with(spec).await;
    let started = Instant::now();
    let (status, body) = answer(text(&client, &mock, Provider::Pingup)).await;
    assert_eq!((status, &body["success"]), (StatusCode::OK, &json!(true)));
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_script_comes_before_the_faults_for_its_provider_only() {
    let (mock, client) = start(Faults::default()).await;
    mock.script(
        Provider::Kaleyra,
        [Reply::ServerError(500), Reply::ServerError(500), Reply::Ok],
    );
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(
            status_of(text(&client, &mock, Provider::Kaleyra))
                .await
                .as_u16(),
        );
    }
    assert_eq!(statuses, [500, 500, 200, 200]);
    assert_eq!(
        status_of(text(&client, &mock, Provider::PayHero)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_control_endpoint_sets_scripts_and_resets_faults() {
    let (mock, client) = start(Faults::default()).await;
    let base = mock.base_url();

    let set = client
        .post(format!("{base}/_mock/faults"))
        .body(r#"{"providers": {"kaleyra": {"error_rate": 1.0}}}"#);
    assert_eq!(status_of(set).await, StatusCode::OK);
    assert!(
        status_of(text(&client, &mock, Provider::Kaleyra))
            .await
            .is_server_error()
    );
    assert_eq!(
        status_of(text(&client, &mock, Provider::PayHero)).await,
        StatusCode::OK
    );

    let script = json!({"provider": "payhero", "replies": ["429:5", "permanent", "ok"]});
    let set = client.post(format!("{base}/_mock/script")).json(&script);
    assert!(status_of(set).await.is_success());
    let limited = text(&client, &mock, Provider::PayHero)
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "5");

    let (_, shown) = answer(client.get(format!("{base}/_mock/faults"))).await;
    assert_eq!(shown["scripts"]["payhero"], json!(["permanent", "ok"]));
    assert_eq!(shown["faults"]["providers"]["kaleyra"]["error_rate"], 1.0);

    let reset = client.delete(format!("{base}/_mock/faults"));
    assert_eq!(status_of(reset).await, StatusCode::NO_CONTENT);
    assert_eq!(
        status_of(text(&client, &mock, Provider::Kaleyra)).await,
        StatusCode::OK
    );
    assert_eq!(
        status_of(text(&client, &mock, Provider::PayHero)).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn nonsense_faults_are_refused_naming_the_problem() {
    let (mock, client) = start(Faults::default()).await;
    let base = mock.base_url();
    for (body, named) in [
        (r#"{"global": {"error_rate": 1.5}}"#, "global.error_rate"),
        (r#"{"global": {"eror_rate": 0.1}}"#, "eror_rate"),
        (r#"{"providers": {"acme": {}}}"#, "acme"),
    ] {
        let (status, answer) = answer(client.post(format!("{base}/_mock/faults")).body(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            answer["error"].as_str().unwrap().contains(named),
            "{answer}"
        );
    }
    let (status, answer) = answer(
        client
            .post(format!("{base}/_mock/script"))
            .body(r#"{"provider": "pingup", "replies": ["404"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("\"404\" is not a reply"),
        "{answer}"
    );

    let invalid = Faults::everywhere(FaultSpec {
        hang_rate: -0.1,
        ..FaultSpec::default()
    });
    assert!(mock.set_faults(invalid.clone()).is_err());
    let refused = MockVendor::start("127.0.0.1:0".parse().unwrap(), invalid)
        .await
        .err()
        .unwrap();
    assert!(
        refused.to_string().contains("global.hang_rate"),
        "{refused}"
    );
}
