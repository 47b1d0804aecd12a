//! The send job of CONTRACT §1, and its strict validation.
//!
//! Validation reads the body as a JSON value first and checks every field on
//! its own, so a producer learns about *every* problem in one answer instead
//! of fixing them one rejection at a time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest accepted idempotency key.
pub const MAX_ID_LEN: usize = 128;
/// Longest text body, in characters (WhatsApp's own limit).
pub const MAX_TEXT_CHARS: usize = 4096;
/// Longest media caption, in characters.
pub const MAX_CAPTION_CHARS: usize = 1024;
/// Largest `metadata` object, serialized.
pub const MAX_METADATA_BYTES: usize = 4096;
/// The account used when a job names none.
pub const DEFAULT_ACCOUNT: &str = "default";

/// One message to one recipient through one provider account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Herald send job")]
pub struct Job {
    /// The producer's idempotency key: 1–128 characters of `[A-Za-z0-9._:-]`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9._:-]{1,128}$")
    )]
    pub id: String,
    /// Provider name, e.g. `kaleyra`; also the routing key on `herald.send`.
    #[schemars(regex(pattern = r"^[a-z0-9][a-z0-9_-]{0,63}$"))]
    pub provider: String,
    /// Which configured credentials of the provider to use.
    #[serde(default = "default_account")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub account: String,
    /// Recipient in E.164: `+` then 8–15 digits.
    #[schemars(regex(pattern = r"^\+[0-9]{8,15}$"))]
    pub to: String,
    pub message: Message,
    /// A template sent instead when the 24-hour window is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_template: Option<Message>,
    /// Do not send before this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
    /// Never send after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Provider-specific per-message fields (CONTRACT §6).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Opaque object ≤ 4 KiB, echoed in events and dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

fn default_account() -> String {
    DEFAULT_ACCOUNT.to_owned()
}

/// What is sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Message {
    /// A free-form session message; needs an open 24-hour window.
    Text {
        #[schemars(length(min = 1, max = 4096))]
        body: String,
    },
    /// An image, document or video by link; a session message.
    Media {
        media: MediaKind,
        #[schemars(regex(pattern = r"^https://"))]
        url: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
    },
    /// A pre-approved template; allowed at any time.
    Template {
        #[schemars(regex(pattern = r"^[a-z0-9_]{1,512}$"))]
        name: String,
        #[schemars(regex(pattern = r"^[a-z]{2,3}(_[A-Z]{2})?$"))]
        language: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        header: Option<TemplateHeader>,
        /// Body parameters, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        body: Vec<String>,
    },
}

/// The kind of a media message or template header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Document,
    Video,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Document => "document",
            MediaKind::Video => "video",
        }
    }
}

/// A template's optional header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TemplateHeader {
    Text { text: String },
    Image { url: String },
    Document { url: String },
    Video { url: String },
}

impl Message {
    /// Session messages need an open 24-hour window; templates do not.
    pub fn is_session(&self) -> bool {
        !matches!(self, Message::Template { .. })
    }

    /// The message kind's name as it appears in the job's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Text { .. } => "text",
            Message::Media { .. } => "media",
            Message::Template { .. } => "template",
        }
    }
}

impl Job {
    /// Parses and validates a job body, naming every problem by field.
    pub fn parse(body: &[u8]) -> Result<Job, JobErrors> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| JobErrors::one("$", format!("not valid JSON: {e}")))?;
        Job::from_value(value)
    }

    /// Validates an already-decoded JSON value as a job.
    pub fn from_value(value: Value) -> Result<Job, JobErrors> {
        let Value::Object(mut fields) = value else {
            return Err(JobErrors::one("$", "must be a JSON object"));
        };
        let mut errors = JobErrors::default();
        for key in fields.keys() {
            if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
                errors.push(key, "unknown field (a typo must not silently drop intent)");
            }
        }
        let id = required::<String>(&mut fields, "id", &mut errors);
        let provider = required::<String>(&mut fields, "provider", &mut errors);
        let account =
            optional::<String>(&mut fields, "account", &mut errors).unwrap_or_else(default_account);
        let to = required::<String>(&mut fields, "to", &mut errors);
        let message = required::<Message>(&mut fields, "message", &mut errors);
        let fallback_template = optional::<Message>(&mut fields, "fallback_template", &mut errors);
        let not_before = optional_time(&mut fields, "not_before", &mut errors);
        let expires_at = optional_time(&mut fields, "expires_at", &mut errors);
        let options = optional::<BTreeMap<String, String>>(&mut fields, "options", &mut errors)
            .unwrap_or_default();
        let metadata = optional::<Map<String, Value>>(&mut fields, "metadata", &mut errors);

        if let Some(id) = &id {
            check_id(id, &mut errors);
        }
        if let Some(provider) = &provider {
            check_name("provider", provider, 64, &mut errors);
        }
        check_name("account", &account, 64, &mut errors);
        if let Some(to) = &to {
            check_e164("to", to, &mut errors);
        }
        if let Some(message) = &message {
            check_message("message", message, &mut errors);
        }
        if let Some(fallback) = &fallback_template {
            if fallback.is_session() {
                errors.push("fallback_template.type", "must be \"template\"");
            } else {
                check_message("fallback_template", fallback, &mut errors);
            }
        }
        if let (Some(start), Some(end)) = (not_before, expires_at)
            && end <= start
        {
            errors.push("expires_at", "must be later than not_before");
        }
        if let Some(metadata) = &metadata {
            let size = serde_json::to_vec(metadata)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if size > MAX_METADATA_BYTES {
                errors.push(
                    "metadata",
                    format!("is {size} bytes serialized; at most {MAX_METADATA_BYTES} allowed"),
                );
            }
        }
        errors.into_result()?;
        Ok(Job {
            // Every required field is present once no error was recorded.
            id: id.expect("checked"),
            provider: provider.expect("checked"),
            account,
            to: to.expect("checked"),
            message: message.expect("checked"),
            fallback_template,
            not_before,
            expires_at,
            options,
            metadata,
        })
    }

    /// What a producer refuses at publish time in a valid job, because the
    /// worker could only dead-letter it: a message kind (or a fallback
    /// template) the provider cannot send, and an `expires_at` already past.
    /// Every producer (the Rust client, `herald enqueue`, the HTTP API) calls
    /// this; the worker keeps its own checks for jobs from other producers.
    pub fn check_sendable(&self, now: DateTime<Utc>) -> Result<(), JobErrors> {
        let mut errors = JobErrors::default();
        if let Some(kinds) = crate::protocol::message_kinds(&self.provider) {
            let sends = kinds.join(", ");
            if !kinds.contains(&self.message.kind()) {
                errors.push(
                    "message.type",
                    format!(
                        "{} cannot send {} messages (it sends: {sends})",
                        self.provider,
                        self.message.kind()
                    ),
                );
            }
            if self.fallback_template.is_some() && !kinds.contains(&"template") {
                errors.push(
                    "fallback_template",
                    format!(
                        "{} cannot send template messages (it sends: {sends}), so the fallback could never be sent",
                        self.provider
                    ),
                );
            }
        }
        if let Some(expires_at) = self.expires_at
            && expires_at <= now
        {
            errors.push(
                "expires_at",
                format!(
                    "{} has already passed: the job could only be dead-lettered as expired",
                    crate::protocol::rfc3339(expires_at)
                ),
            );
        }
        errors.into_result()
    }

    /// Validates a job built in code, the same way a published body is.
    pub fn validate(&self) -> Result<(), JobErrors> {
        let value = serde_json::to_value(self).expect("a Job always serializes");
        Job::from_value(value).map(|_| ())
    }

    /// The canonical JSON body of this job.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Job always serializes")
    }

    /// The recipient's digits without the leading `+`.
    pub fn to_digits(&self) -> &str {
        self.to.trim_start_matches('+')
    }
}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "id",
    "provider",
    "account",
    "to",
    "message",
    "fallback_template",
    "not_before",
    "expires_at",
    "options",
    "metadata",
];

fn take<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
    errors: &mut JobErrors,
) -> Option<Option<T>> {
    let value = fields.remove(name)?;
    if value.is_null() {
        return Some(None);
    }
    match serde_json::from_value(value) {
        Ok(v) => Some(Some(v)),
        Err(e) => {
            errors.push(name, e.to_string());
            Some(None)
        }
    }
}

fn required<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
    errors: &mut JobErrors,
) -> Option<T> {
    match take(fields, name, errors) {
        None | Some(None) if !errors.names(name) => {
            errors.push(name, "is required");
            None
        }
        None => None,
        Some(v) => v,
    }
}

fn optional<T: DeserializeOwned>(
    fields: &mut Map<String, Value>,
    name: &str,
    errors: &mut JobErrors,
) -> Option<T> {
    take(fields, name, errors).flatten()
}

fn optional_time(
    fields: &mut Map<String, Value>,
    name: &str,
    errors: &mut JobErrors,
) -> Option<DateTime<Utc>> {
    let text = optional::<String>(fields, name, errors)?;
    match DateTime::parse_from_rfc3339(&text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(e) => {
            errors.push(name, format!("{text:?} is not an RFC 3339 time ({e})"));
            None
        }
    }
}

fn check_id(id: &str, errors: &mut JobErrors) {
    let valid_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'));
    if id.is_empty() || id.len() > MAX_ID_LEN || !valid_chars {
        errors.push(
            "id",
            format!("must be 1–{MAX_ID_LEN} characters of [A-Za-z0-9._:-]"),
        );
    }
}

fn check_name(field: &str, value: &str, max: usize, errors: &mut JobErrors) {
    let valid = !value.is_empty()
        && value.len() <= max
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
    if !valid {
        errors.push(
            field,
            format!("must be 1–{max} characters of [A-Za-z0-9_-]"),
        );
    }
}

/// A contact's number as given where a `+` is awkward (a URL path, a shell
/// flag): with its `+`, or the digits alone, which then get one.
pub fn with_plus(number: &str) -> String {
    if number.starts_with('+') {
        number.to_owned()
    } else {
        format!("+{number}")
    }
}

/// Checks `+` followed by 8–15 digits.
pub fn is_e164(value: &str) -> bool {
    value
        .strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn check_e164(field: &str, value: &str, errors: &mut JobErrors) {
    if !is_e164(value) {
        errors.push(
            field,
            format!("{value:?} is not E.164 (`+` then 8–15 digits)"),
        );
    }
}

fn check_https(field: &str, url: &str, errors: &mut JobErrors) {
    let host = url.strip_prefix("https://").unwrap_or("");
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        errors.push(field, "must be an https:// URL");
    }
}

fn check_message(field: &str, message: &Message, errors: &mut JobErrors) {
    match message {
        Message::Text { body } => {
            let chars = body.chars().count();
            if body.trim().is_empty() || chars > MAX_TEXT_CHARS {
                errors.push(
                    &format!("{field}.body"),
                    format!("must be 1–{MAX_TEXT_CHARS} characters and not blank (got {chars})"),
                );
            }
        }
        Message::Media {
            url,
            caption,
            filename,
            ..
        } => {
            check_https(&format!("{field}.url"), url, errors);
            if caption
                .as_ref()
                .is_some_and(|c| c.chars().count() > MAX_CAPTION_CHARS)
            {
                errors.push(
                    &format!("{field}.caption"),
                    format!("must be at most {MAX_CAPTION_CHARS} characters"),
                );
            }
            if filename
                .as_ref()
                .is_some_and(|f| f.is_empty() || f.contains('/'))
            {
                errors.push(
                    &format!("{field}.filename"),
                    "must be a non-empty name without `/`",
                );
            }
        }
        Message::Template {
            name,
            language,
            header,
            body,
        } => {
            let valid_name = !name.is_empty()
                && name.len() <= 512
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                errors.push(
                    &format!("{field}.name"),
                    "must be 1–512 characters of [a-z0-9_]",
                );
            }
            if !is_language_code(language) {
                errors.push(
                    &format!("{field}.language"),
                    format!("{language:?} is not a language code like `en` or `en_US`"),
                );
            }
            match header {
                Some(TemplateHeader::Text { text }) if text.trim().is_empty() => {
                    errors.push(&format!("{field}.header.text"), "must not be blank");
                }
                Some(
                    TemplateHeader::Image { url }
                    | TemplateHeader::Document { url }
                    | TemplateHeader::Video { url },
                ) => check_https(&format!("{field}.header.url"), url, errors),
                _ => {}
            }
            for (i, param) in body.iter().enumerate() {
                if param.trim().is_empty() {
                    errors.push(&format!("{field}.body[{i}]"), "must not be blank");
                }
            }
        }
    }
}

fn is_language_code(code: &str) -> bool {
    let (lang, region) = code.split_once('_').unwrap_or((code, ""));
    (2..=3).contains(&lang.len())
        && lang.bytes().all(|b| b.is_ascii_lowercase())
        && (region.is_empty()
            || (region.len() == 2 && region.bytes().all(|b| b.is_ascii_uppercase())))
        && !code.ends_with('_')
}

/// One validation problem, named by its field path (`message.body`, `to`, `$`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

/// Every problem found in one job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobErrors {
    pub problems: Vec<Problem>,
}

impl JobErrors {
    fn one(field: &str, problem: impl Into<String>) -> Self {
        let mut errors = JobErrors::default();
        errors.push(field, problem);
        errors
    }

    fn push(&mut self, field: &str, problem: impl Into<String>) {
        self.problems.push(Problem {
            field: field.to_owned(),
            problem: problem.into(),
        });
    }

    fn names(&self, field: &str) -> bool {
        self.problems.iter().any(|p| p.field == field)
    }

    fn into_result(self) -> Result<(), JobErrors> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// Whether any problem concerns this field or one inside it.
    pub fn mentions(&self, field: &str) -> bool {
        self.problems
            .iter()
            .any(|p| p.field == field || p.field.starts_with(&format!("{field}.")))
    }
}

impl std::fmt::Display for JobErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.problem)?;
        }
        Ok(())
    }
}

impl std::error::Error for JobErrors {}

/// The JSON Schema of a job, for producers in other languages.
pub fn json_schema() -> Value {
    serde_json::to_value(schemars::schema_for!(Job)).expect("schema serializes")
}
