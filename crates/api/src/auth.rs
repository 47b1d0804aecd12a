//! Who may call: a bearer token for `/v1/*`, a per-account secret for
//! vendor webhooks, and for Meta its own scheme (an HMAC-SHA256 signature of
//! the body with the app secret, and a verify token for the subscription
//! handshake). Secrets are compared in constant time and never echoed.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use herald_core::config::{ApiConfig, read_secret};
use herald_core::{Config, ConfigError, ConfigErrors, Secret};

use crate::Api;
use crate::error::ApiError;

/// The header a webhook may carry its secret in (else `?secret=`).
pub const WEBHOOK_SECRET_HEADER: &str = "x-herald-webhook-secret";

/// The API's bearer token, from `api.token_env` or `api.token_file`.
pub fn api_token(api: &ApiConfig) -> Result<Secret, ConfigError> {
    // The same rules as every other secret, so the same error messages.
    let mut names = toml::Table::new();
    if let Some(var) = &api.token_env {
        names.insert("token_env".into(), var.clone().into());
    }
    if let Some(path) = &api.token_file {
        names.insert("token_file".into(), path.display().to_string().into());
    }
    read_secret(&names, "token", "api")
}

/// The header Meta signs its callbacks in.
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// The secret a webhook is checked with: the shared secret most vendors'
/// callbacks carry, or Meta's app secret and verify token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WebhookKey {
    Shared,
    AppSecret,
    VerifyToken,
}

impl WebhookKey {
    const ALL: [WebhookKey; 3] = [
        WebhookKey::Shared,
        WebhookKey::AppSecret,
        WebhookKey::VerifyToken,
    ];

    /// The secret's name in an account table (`<name>_env` / `<name>_file`).
    fn name(self) -> &'static str {
        match self {
            WebhookKey::Shared => "webhook_secret",
            WebhookKey::AppSecret => "app_secret",
            WebhookKey::VerifyToken => "verify_token",
        }
    }
}

/// Each account's webhook secrets. An account without the one a webhook
/// needs refuses it; an account that names one that cannot be read stops
/// the start.
#[derive(Debug, Default)]
pub struct WebhookSecrets(BTreeMap<(String, String, WebhookKey), Secret>);

/// Why a webhook is not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookRefusal {
    UnknownAccount,
    NoSecretConfigured {
        key: String,
    },
    /// Missing or not the account's secret (for the app secret: no valid signature).
    Wrong(WebhookKey),
}

/// The API's bearer token and every account's webhook secret, with every
/// problem named at once.
pub fn secrets(config: &Config) -> Result<(Secret, WebhookSecrets), ConfigErrors> {
    let token = api_token(&config.api);
    let webhooks = WebhookSecrets::from_config(config);
    match (token, webhooks) {
        (Ok(token), Ok(webhooks)) => Ok((token, webhooks)),
        (token, webhooks) => {
            let mut problems: Vec<ConfigError> = token.err().into_iter().collect();
            problems.extend(webhooks.err().into_iter().flat_map(|e| e.problems));
            Err(ConfigErrors { problems })
        }
    }
}

impl WebhookSecrets {
    pub fn from_config(config: &Config) -> Result<WebhookSecrets, ConfigErrors> {
        let mut secrets = BTreeMap::new();
        let mut problems = Vec::new();
        for (provider, accounts) in &config.providers {
            for (account, settings) in accounts {
                let settings = &settings.settings;
                for key in WebhookKey::ALL {
                    let name = key.name();
                    if !settings.contains_key(&format!("{name}_env"))
                        && !settings.contains_key(&format!("{name}_file"))
                    {
                        continue;
                    }
                    match read_secret(settings, name, &format!("providers.{provider}.{account}")) {
                        Ok(secret) => {
                            secrets.insert((provider.clone(), account.clone(), key), secret);
                        }
                        Err(problem) => problems.push(problem),
                    }
                }
            }
        }
        ConfigErrors::check(problems, WebhookSecrets(secrets))
    }

    /// Lets a webhook in when it presents the account's `key`: the shared
    /// secret of a callback, or the verify token of Meta's handshake.
    pub fn check(
        &self,
        config: &Config,
        provider: &str,
        account: &str,
        key: WebhookKey,
        presented: Option<&str>,
    ) -> Result<(), WebhookRefusal> {
        let secret = self.secret(config, provider, account, key)?;
        match presented {
            Some(presented) if constant_time_eq(presented.as_bytes(), secret.as_bytes()) => Ok(()),
            _ => Err(WebhookRefusal::Wrong(key)),
        }
    }

    /// Lets a Meta callback in when `signature` (its `X-Hub-Signature-256`)
    /// signs exactly `body` with the account's app secret.
    pub fn check_signature(
        &self,
        config: &Config,
        provider: &str,
        account: &str,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), WebhookRefusal> {
        let secret = self.secret(config, provider, account, WebhookKey::AppSecret)?;
        match signature {
            Some(signature) if signs(secret.as_bytes(), body, signature) => Ok(()),
            _ => Err(WebhookRefusal::Wrong(WebhookKey::AppSecret)),
        }
    }

    /// The account's `key`, or why there is none.
    fn secret(
        &self,
        config: &Config,
        provider: &str,
        account: &str,
        key: WebhookKey,
    ) -> Result<&str, WebhookRefusal> {
        if config.account(provider, account).is_none() {
            return Err(WebhookRefusal::UnknownAccount);
        }
        self.0
            .get(&(provider.to_owned(), account.to_owned(), key))
            .map(Secret::expose)
            .ok_or_else(|| WebhookRefusal::NoSecretConfigured {
                key: format!("providers.{provider}.{account}.{}_env", key.name()),
            })
    }
}

/// Whether `signature` is `sha256=<hex>` of the HMAC-SHA256 of `body` with
/// `secret`. The digest is compared in constant time (`verify_slice`).
pub fn signs(secret: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(digest) = signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

impl WebhookRefusal {
    pub fn into_error(self, provider: &str, account: &str) -> ApiError {
        match self {
            WebhookRefusal::UnknownAccount => ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no account `{account}` of provider `{provider}` is configured (expected [providers.{provider}.{account}])"
                ),
            ),
            WebhookRefusal::NoSecretConfigured { key } => ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "webhooks for {provider}/{account} are refused: no webhook secret is configured (set {key} or its _file twin)"
                ),
            ),
            WebhookRefusal::Wrong(WebhookKey::Shared) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong webhook secret (send it as header X-Herald-Webhook-Secret or query ?secret=)",
            ),
            WebhookRefusal::Wrong(WebhookKey::AppSecret) => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong X-Hub-Signature-256 (sha256= then the HMAC-SHA256 of the raw body with the app secret)",
            ),
            // Meta's handshake expects a 403 when the token does not match.
            WebhookRefusal::Wrong(WebhookKey::VerifyToken) => ApiError::new(
                StatusCode::FORBIDDEN,
                "hub.verify_token is missing or does not match the account's verify token",
            ),
        }
    }
}

/// Equality whose time depends only on the lengths, so a caller cannot
/// learn a secret byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware for `/v1/*`: `401` unless the bearer token matches.
pub async fn require_bearer(State(api): State<Api>, request: Request, next: Next) -> Response {
    let authorized = bearer(request.headers())
        .is_some_and(|token| constant_time_eq(token.as_bytes(), api.token().expose().as_bytes()));
    if authorized {
        next.run(request).await
    } else {
        let mut response = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (send Authorization: Bearer <token>, the token named by api.token_env or api.token_file)",
        )
        .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret", b"s3creT"));
        assert!(!constant_time_eq(b"s3cret", b"s3cre"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn a_signature_is_the_hmac_sha256_of_the_exact_body() {
        // A published test vector: HMAC-SHA256("test") with key "secret".
        let valid = "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914";
        assert!(signs(b"secret", b"test", valid));
        assert!(signs(
            b"secret",
            b"test",
            &valid.to_uppercase().replace("SHA256=", "sha256=")
        ));
        assert!(!signs(b"secret", b"test ", valid), "body altered");
        assert!(!signs(b"other", b"test", valid), "another secret");
        assert!(
            !signs(b"secret", b"test", &valid["sha256=".len()..]),
            "no prefix"
        );
        assert!(!signs(b"secret", b"test", "sha256=zz"), "not hex");
        assert!(!signs(b"secret", b"test", "sha256="), "empty");
    }

    #[test]
    fn bearer_reads_the_token_of_the_bearer_scheme_only() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn a_missing_token_configuration_names_the_key() {
        let error = api_token(&ApiConfig::default()).unwrap_err();
        assert_eq!(error.key, "api.token_env");
        let config = ApiConfig {
            token_env: Some("HERALD_API_TEST_TOKEN_THAT_IS_NOT_SET".into()),
            ..ApiConfig::default()
        };
        let error = api_token(&config).unwrap_err();
        assert!(
            error
                .problem
                .contains("HERALD_API_TEST_TOKEN_THAT_IS_NOT_SET"),
            "{error}"
        );
    }

    fn config(account_extra: &str) -> Config {
        let toml = format!(
            "[providers.kaleyra.default]\nbase_url = \"https://api.kaleyra.io\"\n{account_extra}\n"
        );
        Config::from_toml_with_env(&toml, &[]).expect("valid configuration")
    }

    #[test]
    fn webhooks_need_a_configured_account_its_secret_and_the_right_one() {
        let dir = std::env::temp_dir().join(format!("herald-api-secret-{}", std::process::id()));
        std::fs::write(&dir, "hook-secret\n").unwrap();
        let config = config(&format!(
            "webhook_secret_file = {:?}",
            dir.display().to_string()
        ));
        let secrets = WebhookSecrets::from_config(&config).unwrap();
        std::fs::remove_file(&dir).unwrap();

        assert_eq!(
            secrets.check(
                &config,
                "kaleyra",
                "default",
                WebhookKey::Shared,
                Some("hook-secret")
            ),
            Ok(())
        );
        assert_eq!(
            secrets.check(
                &config,
                "kaleyra",
                "default",
                WebhookKey::Shared,
                Some("guess")
            ),
            Err(WebhookRefusal::Wrong(WebhookKey::Shared))
        );
        assert_eq!(
            secrets.check(&config, "kaleyra", "default", WebhookKey::Shared, None),
            Err(WebhookRefusal::Wrong(WebhookKey::Shared))
        );
        assert_eq!(
            secrets.check(
                &config,
                "kaleyra",
                "other",
                WebhookKey::Shared,
                Some("hook-secret")
            ),
            Err(WebhookRefusal::UnknownAccount)
        );
    }

    #[test]
    fn an_account_without_a_secret_refuses_webhooks_naming_the_key() {
        let config = config("");
        let secrets = WebhookSecrets::from_config(&config).unwrap();
        let refusal = secrets
            .check(
                &config,
                "kaleyra",
                "default",
                WebhookKey::Shared,
                Some("anything"),
            )
            .unwrap_err();
        let error = refusal.into_error("kaleyra", "default");
        assert_eq!(error.status, StatusCode::FORBIDDEN);
        assert!(
            error
                .error
                .contains("providers.kaleyra.default.webhook_secret_env"),
            "{}",
            error.error
        );
    }

    #[test]
    fn a_named_but_unreadable_webhook_secret_stops_the_start() {
        let config = config("webhook_secret_env = \"HERALD_API_TEST_HOOK_SECRET_NOT_SET\"");
        let error = WebhookSecrets::from_config(&config).unwrap_err();
        assert_eq!(
            error.problems[0].key,
            "providers.kaleyra.default.webhook_secret_env"
        );
    }

    #[test]
    fn a_missing_token_and_webhook_secret_are_named_together() {
        let config = config("webhook_secret_env = \"HERALD_API_TEST_HOOK_SECRET_NOT_SET\"");
        let errors = secrets(&config).unwrap_err();
        assert!(errors.names("api.token_env"), "{errors}");
        assert!(
            errors.names("providers.kaleyra.default.webhook_secret_env"),
            "{errors}"
        );
    }
}
