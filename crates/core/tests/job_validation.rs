//! Every validation rule of CONTRACT §1, each with a failing example that
//! names its field, and the contract's own example accepted.

use herald_core::{Job, JobErrors, Message};
use serde_json::{Value, json};

fn contract_example() -> Value {
    json!({
        "id": "order-1234-shipped",
        "provider": "kaleyra",
        "account": "default",
        "to": "+254712345678",
        "message": { "type": "text", "body": "Your order has shipped" },
        "fallback_template": { "type": "template", "name": "order_update", "language": "en", "body": ["1234"] },
        "not_before": "2026-11-21T10:00:00Z",
        "expires_at": "2026-11-22T10:00:00Z",
        "options": { "ref": "cust-88" },
        "metadata": { "order": 1234 }
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut job = contract_example();
    let mut target = &mut job;
    for key in &path[..path.len() - 1] {
        target = &mut target[*key];
    }
    target[path[path.len() - 1]] = value;
    job
}

fn without(field: &str) -> Value {
    let mut job = contract_example();
    job.as_object_mut().unwrap().remove(field);
    job
}

fn errors(value: Value) -> JobErrors {
    Job::from_value(value).expect_err("should be rejected")
}

#[track_caller]
fn rejects(value: Value, field: &str) {
    let errors = errors(value);
    assert!(
        errors.problems.iter().any(|p| p.field == field),
        "expected a problem on `{field}`, got: {errors}"
    );
}

#[test]
fn the_contract_example_is_valid() {
    let job = Job::from_value(contract_example()).unwrap();
    assert_eq!(job.id, "order-1234-shipped");
    assert_eq!(job.to_digits(), "254712345678");
    assert!(job.message.is_session());
    assert!(!job.fallback_template.unwrap().is_session());
}

#[test]
fn account_defaults_to_default() {
    assert_eq!(
        Job::from_value(without("account")).unwrap().account,
        "default"
    );
}

#[test]
fn not_json_is_named_at_the_root() {
    let e = Job::parse(b"{not json").unwrap_err();
    assert_eq!(e.problems[0].field, "$");
    assert!(e.problems[0].problem.contains("not valid JSON"));
    rejects(json!([1, 2]), "$");
}

#[test]
fn unknown_top_level_fields_are_rejected() {
    rejects(
        with(&["mesage"], json!({"type": "text", "body": "typo"})),
        "mesage",
    );
}

#[test]
fn required_fields_are_named_when_missing() {
    for field in ["id", "provider", "to", "message"] {
        rejects(without(field), field);
    }
}

#[test]
fn id_charset_and_length() {
    rejects(with(&["id"], json!("")), "id");
    rejects(with(&["id"], json!("has space")), "id");
    rejects(with(&["id"], json!("é")), "id");
    rejects(with(&["id"], json!("x".repeat(129))), "id");
    assert!(
        Job::from_value(with(&["id"], json!("A-z.0_9:x".repeat(14)))).is_ok(),
        "126 chars"
    );
    rejects(with(&["id"], json!(42)), "id");
}

#[test]
fn provider_and_account_are_names() {
    rejects(with(&["provider"], json!("Kal eyra")), "provider");
    rejects(with(&["account"], json!("")), "account");
}

#[test]
fn to_must_be_e164() {
    for bad in [
        "254712345678",
        "+2547",
        "+2547123456789012",
        "+25471234567a",
        "0712345678",
        "+ 254712345678",
    ] {
        rejects(with(&["to"], json!(bad)), "to");
    }
    assert!(Job::from_value(with(&["to"], json!("+12025550123"))).is_ok());
}

#[test]
fn text_body_is_1_to_4096_characters() {
    rejects(with(&["message", "body"], json!("")), "message.body");
    rejects(with(&["message", "body"], json!("   ")), "message.body");
    rejects(
        with(&["message", "body"], json!("a".repeat(4097))),
        "message.body",
    );
    // Characters, not bytes: 4096 two-byte characters are fine.
    assert!(Job::from_value(with(&["message", "body"], json!("é".repeat(4096)))).is_ok());
}

#[test]
fn message_kinds_and_their_fields() {
    rejects(with(&["message"], json!({"type": "sticker"})), "message");
    rejects(
        with(
            &["message"],
            json!({"type": "text", "body": "x", "extra": 1}),
        ),
        "message",
    );
    let media = json!({"type": "media", "media": "image", "url": "http://insecure.example/a.png"});
    rejects(with(&["message"], media), "message.url");
    let media = json!({"type": "media", "media": "gif", "url": "https://cdn.example/a.gif"});
    rejects(with(&["message"], media), "message");
    let media = json!({"type": "media", "media": "document", "url": "https://cdn.example/a.pdf", "filename": "a/b.pdf"});
    rejects(with(&["message"], media), "message.filename");
    let media = json!({"type": "media", "media": "image", "url": "https://cdn.example/a.png", "caption": "c".repeat(1025)});
    rejects(with(&["message"], media), "message.caption");
    let ok = json!({"type": "media", "media": "video", "url": "https://cdn.example/v.mp4", "caption": "hi"});
    assert!(matches!(
        Job::from_value(with(&["message"], ok)).unwrap().message,
        Message::Media { .. }
    ));
}

#[test]
fn template_name_language_header_and_params() {
    let t = |v: Value| with(&["message"], v);
    rejects(
        t(json!({"type": "template", "name": "Order Update", "language": "en"})),
        "message.name",
    );
    rejects(
        t(json!({"type": "template", "name": "order_update", "language": "english"})),
        "message.language",
    );
    rejects(
        t(
            json!({"type": "template", "name": "order_update", "language": "en", "body": ["ok", " "]}),
        ),
        "message.body[1]",
    );
    rejects(
        t(
            json!({"type": "template", "name": "order_update", "language": "en", "header": {"type": "image", "url": "ftp://x"}}),
        ),
        "message.header.url",
    );
    rejects(
        t(
            json!({"type": "template", "name": "order_update", "language": "en", "header": {"type": "text", "text": ""}}),
        ),
        "message.header.text",
    );
    let ok = t(
        json!({"type": "template", "name": "order_update", "language": "pt_BR", "header": {"type": "text", "text": "Hi"}, "body": ["1"]}),
    );
    assert!(!Job::from_value(ok).unwrap().message.is_session());
}

#[test]
fn fallback_must_be_a_valid_template() {
    rejects(
        with(
            &["fallback_template"],
            json!({"type": "text", "body": "not a template"}),
        ),
        "fallback_template.type",
    );
    rejects(
        with(&["fallback_template", "language"], json!("")),
        "fallback_template.language",
    );
}

#[test]
fn times_are_rfc3339_and_ordered() {
    rejects(with(&["not_before"], json!("tomorrow")), "not_before");
    rejects(
        with(&["expires_at"], json!("2026-11-22 10:00")),
        "expires_at",
    );
    rejects(
        with(&["expires_at"], json!("2026-11-21T09:00:00Z")),
        "expires_at",
    );
    let offset = with(&["not_before"], json!("2026-11-21T12:00:00+02:00"));
    assert_eq!(
        Job::from_value(offset)
            .unwrap()
            .not_before
            .unwrap()
            .to_rfc3339(),
        "2026-11-21T10:00:00+00:00"
    );
}

#[test]
fn options_are_strings_and_metadata_an_object_of_at_most_4_kib() {
    rejects(with(&["options"], json!({"ref": 5})), "options");
    rejects(with(&["metadata"], json!("not an object")), "metadata");
    rejects(
        with(&["metadata"], json!({"blob": "x".repeat(4100)})),
        "metadata",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(
        json!({"id": "bad id", "provider": "kaleyra", "to": "123", "message": {"type": "text", "body": ""}, "color": "red"}),
    );
    let fields: Vec<_> = e.problems.iter().map(|p| p.field.as_str()).collect();
    for field in ["color", "id", "to", "message.body"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    let text = e.to_string();
    assert!(text.contains("id: ") && text.contains("; "), "{text}");
}

#[test]
fn a_job_round_trips_through_its_body() {
    let job = Job::from_value(contract_example()).unwrap();
    assert_eq!(Job::parse(&job.to_body()).unwrap(), job);
}

#[test]
fn the_json_schema_describes_the_job() {
    let schema = herald_core::job::json_schema();
    let required = schema["required"].as_array().unwrap();
    for field in ["id", "provider", "to", "message"] {
        assert!(
            required.contains(&json!(field)),
            "{field} required in schema"
        );
    }
    assert_eq!(schema["additionalProperties"], json!(false));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schema/job.schema.json");
    if std::env::var_os("HERALD_BLESS").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(&schema).unwrap() + "\n").unwrap();
    }
    let published: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        published, schema,
        "schema/job.schema.json is stale: run `herald schema > schema/job.schema.json`"
    );
}

fn sendable_at(value: Value, now: &str) -> Result<(), JobErrors> {
    let now = chrono::DateTime::parse_from_rfc3339(now).unwrap().to_utc();
    Job::from_value(value).unwrap().check_sendable(now)
}

#[test]
fn a_producer_refuses_what_the_provider_cannot_send_naming_the_field() {
    let template = json!({"type": "template", "name": "order_update", "language": "en"});
    let errors =
        sendable_at(with(&["provider"], json!("pingup")), "2026-11-21T00:00:00Z").unwrap_err();
    assert_eq!(errors.problems.len(), 1, "{errors}");
    assert_eq!(errors.problems[0].field, "fallback_template");
    assert!(
        errors.problems[0]
            .problem
            .contains("pingup cannot send template")
    );

    let mut job = with(&["provider"], json!("pingup"));
    job["message"] = template;
    job.as_object_mut().unwrap().remove("fallback_template");
    let errors = sendable_at(job, "2026-11-21T00:00:00Z").unwrap_err();
    assert_eq!(errors.problems[0].field, "message.type", "{errors}");
    assert!(
        errors.problems[0].problem.contains("it sends: text"),
        "{errors}"
    );

    let media = json!({"type": "media", "media": "image", "url": "https://cdn.example.com/p.jpg"});
    let errors =
        sendable_at(with(&["message"], media.clone()), "2026-11-21T00:00:00Z").unwrap_err();
    assert!(
        errors.problems[0]
            .problem
            .contains("kaleyra cannot send media"),
        "{errors}"
    );
    let mut replyhero = with(&["message"], media);
    replyhero["provider"] = json!("replyhero");
    replyhero.as_object_mut().unwrap().remove("options");
    assert_eq!(sendable_at(replyhero, "2026-11-21T00:00:00Z"), Ok(()));
}

#[test]
fn a_producer_refuses_a_job_that_has_already_expired() {
    assert_eq!(
        sendable_at(contract_example(), "2026-11-22T09:59:59Z"),
        Ok(())
    );
    let errors = sendable_at(contract_example(), "2026-11-22T10:00:00Z").unwrap_err();
    assert_eq!(errors.problems[0].field, "expires_at");
    assert!(
        errors.problems[0].problem.contains("already passed"),
        "{errors}"
    );
}

#[test]
fn a_provider_without_an_adapter_is_left_to_the_configuration() {
    let job = with(&["provider"], json!("meta"));
    assert_eq!(sendable_at(job, "2026-11-21T00:00:00Z"), Ok(()));
}
