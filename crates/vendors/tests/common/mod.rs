//! Builds [`Vendors`] from configuration text the way the worker does, with
//! secrets in files of a temporary directory (the environment is shared by
//! every test thread, files are not), and accounts on a fake vendor.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use herald_core::{Config, ConfigErrors, Message};
use herald_vendors::{VendorAnswer, Vendors};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

pub struct Secrets {
    dir: tempfile::TempDir,
}

impl Secrets {
    pub fn new() -> Secrets {
        Secrets {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Writes `value` to a file and returns its path, for `*_file` keys.
    pub fn file(&self, name: &str, value: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).expect("write secret");
        path.display().to_string()
    }
}

/// The configuration's providers, checked by [`Vendors::from_config`].
pub fn vendors(toml: &str) -> Result<Vendors, ConfigErrors> {
    let config = Config::from_toml_with_env(toml, &[]).expect("valid common configuration");
    Vendors::from_config(&config)
}

pub const KEY: &str = "sk-live-7f3a9c1e5b";

/// One configured account of a provider, with the vendor docs' example keys
/// and [`KEY`] as its secret.
pub struct Account {
    provider: &'static str,
    vendors: Vendors,
}

impl Account {
    pub fn new(provider: &'static str, base_url: &str) -> Account {
        let keys = match provider {
            "payhero" => "session = \"18gdPWKzoXXXX\"\nbasic_token_file = \"{secret}\"",
            "pingup" => "business = \"acme\"\napi_key_file = \"{secret}\"",
            "kaleyra" => {
                "sid = \"HXAP1XXXXXX17XX\"\nfrom = \"+12025550123\"\napi_key_file = \"{secret}\"\n\
                 callback_url = \"https://webhook.site/XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX\""
            }
            "99digital" => "from = \"972771234567\"\napi_key_file = \"{secret}\"",
            "replyhero" => {
                "session_id = \"SESSION_ID\"\nuser_id = \"USER_ID\"\norg_id = \"ORG_ID\"\n\
                 api_key_file = \"{secret}\""
            }
            "meta" => "phone_number_id = \"106540352242922\"\naccess_token_file = \"{secret}\"",
            other => panic!("no test account for {other}"),
        };
        // Secrets are read while the account is built: the file may go after.
        let secrets = Secrets::new();
        let keys = keys.replace("{secret}", &secrets.file("key", KEY));
        let vendors = vendors(&format!(
            "[providers.{provider}.default]\nbase_url = \"{base_url}\"\ntimeout = \"500ms\"\n{keys}"
        ))
        .unwrap();
        Account { provider, vendors }
    }

    /// Renders and sends one job's message the way the worker does.
    pub async fn send(
        &self,
        to: &str,
        message: &Message,
        options: &[(&str, &str)],
    ) -> VendorAnswer {
        let options: BTreeMap<String, String> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let account = self.vendors.account(self.provider, "default").unwrap();
        let request = account.render(to, message, &options).unwrap();
        account.send(&request).await
    }
}

/// A fake vendor answering every request with `response`, and an account of
/// `provider` on it. The server stops when dropped: keep it.
pub async fn answering(
    provider: &'static str,
    response: ResponseTemplate,
) -> (MockServer, Account) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(response)
        .mount(&server)
        .await;
    let account = Account::new(provider, &server.uri());
    (server, account)
}

pub fn text(body: &str) -> Message {
    Message::Text { body: body.into() }
}
