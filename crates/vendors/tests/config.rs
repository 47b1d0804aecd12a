//! `Vendors::from_config`: every account built, every vendor key checked.

mod common;

use common::{Secrets, vendors};
use herald_vendors::Lookup;

#[test]
fn builds_every_provider_of_the_contract_example() {
    let secrets = Secrets::new();
    let key = |name| secrets.file(name, "s3cret");
    let toml = format!(
        r#"
[providers.kaleyra.default]
base_url = "https://api.kaleyra.io"
sid = "HXAP1XXXXXX17XX"
from = "+12025550123"
api_key_file = "{}"
timeout = "10s"
webhook_secret_env = "KALEYRA_WEBHOOK_SECRET"

[providers.payhero.default]
base_url = "https://backend.payhero.co.ke"
session = "18gdPWKzoXXXX"
basic_token_file = "{}"

[providers.pingup.default]
base_url = "https://api.pingup.ai"
business = "acme"
api_key_file = "{}"

[providers.99digital.default]
base_url = "https://api.99digital.co.il"
from = "972771234567"
api_key_file = "{}"

[providers.replyhero.default]
base_url = "https://whatsapp.replyherotech.com"
session_id = "SESSION_ID"
user_id = "USER_ID"
org_id = "ORG_ID"
api_key_file = "{}"

[providers.meta.default]
base_url = "https://graph.facebook.com"
phone_number_id = "106540352242922"
access_token_file = "{}"
api_version = "v21.0"
app_secret_file = "{}"
verify_token_file = "{}"
"#,
        key("k"),
        key("p"),
        key("g"),
        key("d"),
        key("r"),
        key("m"),
        key("ma"),
        key("mv")
    );
    let vendors = vendors(&toml).unwrap();
    assert_eq!(
        vendors.providers(),
        [
            "99digital",
            "kaleyra",
            "meta",
            "payhero",
            "pingup",
            "replyhero"
        ]
    );
    assert_eq!(
        vendors.account("kaleyra", "default").unwrap().provider(),
        "kaleyra"
    );
    assert_eq!(
        vendors.account("kaleyra", "eu").unwrap_err(),
        Lookup::UnknownAccount
    );
    assert_eq!(
        vendors.account("twilio", "default").unwrap_err(),
        Lookup::UnknownProvider
    );
}

/// A provider with an adapter but no configured account cannot be sent
/// with here: it is as unknown to this deployment as one without an adapter.
#[test]
fn a_known_but_unconfigured_provider_is_an_unknown_provider() {
    let vendors = vendors("").unwrap();
    assert!(vendors.providers().is_empty());
    assert_eq!(
        vendors.account("pingup", "default").unwrap_err(),
        Lookup::UnknownProvider
    );
}

#[test]
fn each_problem_names_its_key() {
    let secrets = Secrets::new();
    let key = secrets.file("k", "s3cret");
    let cases = [
        (
            format!("sid = \"HX1\"\nfrom = \"+12025550123\"\napi_key_file = \"{key}\"\nsdi = \"typo\""),
            "providers.kaleyra.default.sdi",
        ),
        (format!("from = \"+12025550123\"\napi_key_file = \"{key}\""), "providers.kaleyra.default.sid"),
        ("sid = \"HX1\"\nfrom = \"+12025550123\"".to_owned(), "providers.kaleyra.default.api_key_env"),
        (
            format!("sid = \"HX1\"\nfrom = \"12025550123\"\napi_key_file = \"{key}\""),
            "providers.kaleyra.default.from",
        ),
        (
            format!("sid = \"HX/1\"\nfrom = \"+12025550123\"\napi_key_file = \"{key}\""),
            "providers.kaleyra.default.sid",
        ),
        (
            "sid = \"HX1\"\nfrom = \"+12025550123\"\napi_key_env = \"HERALD_TEST_SURELY_UNSET_VARIABLE\"".to_owned(),
            "providers.kaleyra.default.api_key_env",
        ),
    ];
    for (keys, expected) in cases {
        let toml =
            format!("[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n{keys}");
        let errors = vendors(&toml).unwrap_err();
        assert_eq!(errors.problems.len(), 1, "{keys}: {errors}");
        assert_eq!(errors.problems[0].key, expected, "{keys}: {errors}");
    }
}

#[test]
fn every_account_missing_its_secret_is_named_at_once() {
    let toml = "[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n\
                sid = \"HX1\"\nfrom = \"+12025550123\"\napi_key_env = \"HERALD_TEST_UNSET_KALEYRA\"\n\
                [providers.pingup.default]\nbase_url = \"https://api.pingup.ai\"\nbusiness = \"acme\"\n\
                api_key_env = \"HERALD_TEST_UNSET_PINGUP\"\n\
                [providers.payhero.default]\nbase_url = \"https://backend.payhero.co.ke\"\nsession = \"s\"\n";
    let errors = vendors(toml).unwrap_err();
    for key in [
        "providers.kaleyra.default.api_key_env",
        "providers.pingup.default.api_key_env",
        "providers.payhero.default.basic_token_env",
    ] {
        assert!(errors.names(key), "{key} in {errors}");
    }
    assert!(
        errors.to_string().contains("HERALD_TEST_UNSET_PINGUP"),
        "{errors}"
    );
}

#[test]
fn meta_keys_are_checked_by_name() {
    let secrets = Secrets::new();
    let token = secrets.file("t", "EAAJB-token");
    let cases = [
        (String::new(), "providers.meta.default.phone_number_id"),
        (
            "phone_number_id = \"1065-4035\"".to_owned(),
            "providers.meta.default.phone_number_id",
        ),
        (
            "phone_number_id = \"106540352242922\"".to_owned(),
            "providers.meta.default.access_token_env",
        ),
        (
            format!(
                "phone_number_id = \"106540352242922\"\naccess_token_file = \"{token}\"\napi_version = \"21\""
            ),
            "providers.meta.default.api_version",
        ),
        // The worker does not use the webhook secrets, but a named one must exist.
        (
            format!(
                "phone_number_id = \"106540352242922\"\naccess_token_file = \"{token}\"\napp_secret_env = \"HERALD_TEST_SURELY_UNSET_VARIABLE\""
            ),
            "providers.meta.default.app_secret_env",
        ),
        (
            format!(
                "phone_number_id = \"106540352242922\"\naccess_token_file = \"{token}\"\nverify_tokn_env = \"X\""
            ),
            "providers.meta.default.verify_tokn_env",
        ),
    ];
    for (keys, expected) in cases {
        let toml =
            format!("[providers.meta.default]\nbase_url = \"https://graph.facebook.com\"\n{keys}");
        let errors = vendors(&toml).unwrap_err();
        assert_eq!(errors.problems.len(), 1, "{keys}: {errors}");
        assert_eq!(errors.problems[0].key, expected, "{keys}: {errors}");
    }
    // Webhook secrets are optional for sending; the API version defaults.
    let minimal = format!(
        "[providers.meta.default]\nbase_url = \"https://graph.facebook.com\"\n\
         phone_number_id = \"106540352242922\"\naccess_token_file = \"{token}\""
    );
    let vendors = vendors(&minimal).unwrap();
    let account = vendors.account("meta", "default").unwrap();
    let request = account
        .render(
            "+16505551234",
            &herald_core::Message::Text { body: "hi".into() },
            &Default::default(),
        )
        .unwrap();
    assert_eq!(request.path, "/v21.0/106540352242922/messages");
}

#[test]
fn a_provider_without_an_adapter_is_refused() {
    let errors =
        vendors("[providers.twilio.default]\nbase_url = \"https://api.twilio.com\"").unwrap_err();
    let err = &errors.problems[0];
    assert_eq!(err.key, "providers.twilio");
    assert!(err.problem.contains("kaleyra"), "{}", err.problem);
}

#[test]
fn debug_output_never_shows_a_secret() {
    let secrets = Secrets::new();
    let toml = format!(
        "[providers.replyhero.default]\nbase_url = \"https://x\"\nsession_id = \"S\"\nuser_id = \"U\"\norg_id = \"O\"\napi_key_file = \"{}\"",
        secrets.file("r", "rh-secret-value")
    );
    let vendors = vendors(&toml).unwrap();
    let shown = format!("{vendors:?}");
    assert!(
        shown.contains("ReplyHero") && !shown.contains("rh-secret-value"),
        "{shown}"
    );
}
