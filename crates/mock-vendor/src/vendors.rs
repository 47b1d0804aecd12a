//! The vendors as data: which paths they serve, how a request is
//! encoded and authenticated, which fields they insist on, and the shape of
//! their answers. Everything here is pure, so the server stays one generic
//! handler and each vendor's quirks live in one table row.

use std::fmt;

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A vendor the mock impersonates, named as in a job's `provider` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    PayHero,
    Pingup,
    Kaleyra,
    #[serde(rename = "99digital")]
    Digital99,
    ReplyHero,
    /// Meta's WhatsApp Cloud API, direct.
    Meta,
}

impl Provider {
    pub const ALL: [Provider; 6] = [
        Provider::PayHero,
        Provider::Pingup,
        Provider::Kaleyra,
        Provider::Digital99,
        Provider::ReplyHero,
        Provider::Meta,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::PayHero => "payhero",
            Provider::Pingup => "pingup",
            Provider::Kaleyra => "kaleyra",
            Provider::Digital99 => "99digital",
            Provider::ReplyHero => "replyhero",
            Provider::Meta => "meta",
        }
    }

    /// Where the vendor expects its credential.
    pub fn auth(self) -> Auth {
        match self {
            Provider::PayHero => Auth::Header {
                name: "authorization",
                scheme: Some("Basic"),
            },
            Provider::Pingup | Provider::Meta => Auth::Header {
                name: "authorization",
                scheme: Some("Bearer"),
            },
            Provider::Kaleyra => Auth::Header {
                name: "api-key",
                scheme: None,
            },
            Provider::Digital99 => Auth::BodyField("apiKey"),
            Provider::ReplyHero => Auth::Header {
                name: "x-api-key",
                scheme: None,
            },
        }
    }

    /// The HTTP status the vendor uses when it refuses a message for a
    /// business reason. PayHero answers 500 (its documented "no session"
    /// error); Pingup and 99digital answer 200 with the failure in the body.
    pub(crate) fn rejection_status(self) -> StatusCode {
        match self {
            Provider::PayHero => StatusCode::INTERNAL_SERVER_ERROR,
            Provider::Pingup | Provider::Digital99 => StatusCode::OK,
            Provider::Kaleyra | Provider::ReplyHero | Provider::Meta => StatusCode::BAD_REQUEST,
        }
    }

    /// The vendor's own permanent refusal (code, message), from its docs
    /// where they document one.
    fn permanent_error(self, request: &Value) -> (&'static str, String) {
        match self {
            Provider::PayHero => {
                let session = request.get("session").and_then(Value::as_str).unwrap_or("");
                let inner = json!([{
                    "statusCode": 404,
                    "message": format!("We didn't find a session with name '{session}'. Please start it first by using POST /sessions/start request"),
                    "error": "Not Found",
                }]);
                (
                    "INTERNAL",
                    format!("request sending whatsapp text v2 faile with error: {inner}"),
                )
            }
            Provider::Pingup => (
                "INVALID_CLIENT",
                "client_phone is not a WhatsApp number".into(),
            ),
            Provider::Kaleyra => (
                "E13009",
                "Invalid or in-correct input of the TO number.".into(),
            ),
            Provider::Digital99 => ("INVALID_TO", "the number is not a WhatsApp account".into()),
            Provider::ReplyHero | Provider::Meta => {
                ("131026", "(#131026) Message undeliverable".into())
            }
        }
    }

    /// Wraps an error in the vendor's own error shape. Only PayHero documents
    /// a full error body; for the others the docs give the failure flag
    /// (`success: false`, `status: "FAIL"`, a non-empty `error`), which is
    /// kept, with the code and message added where a reader would look.
    fn error_body(self, status: StatusCode, code: &str, message: &str) -> Value {
        match self {
            Provider::PayHero => json!({
                "error_code": code, "error_message": message, "status_code": status.as_u16(),
            }),
            Provider::Pingup => json!({
                "success": false, "error": { "code": code, "message": message },
            }),
            // A non-empty `error` object is how a Kaleyra failure shows.
            Provider::Kaleyra => json!({
                "code": code, "message": message, "data": [],
                "error": { "code": code, "message": message },
            }),
            // `reason` is 99digital's "status explanation in case of FAIL".
            Provider::Digital99 => json!({ "status": "FAIL", "reason": message, "code": code }),
            Provider::ReplyHero => json!({ "error": { "code": code, "message": message } }),
            // Graph API's error body; Meta's codes are numbers. No
            // error_subcode: Meta stopped sending it in v16.0.
            Provider::Meta => json!({ "error": {
                "message": message,
                "type": "OAuthException",
                "code": code.parse::<u64>().ok(),
                "error_data": { "messaging_product": "whatsapp", "details": message },
                "fbtrace_id": "AbCdEfGhIjKlMnOpQrStUvW",
            } }),
        }
    }

    /// The status and body of a refusal, in this vendor's words.
    pub(crate) fn refusal(self, refusal: &Refusal, request: &Value) -> (StatusCode, Value) {
        let (code, message) = match refusal {
            _ if self == Provider::Meta => meta_error(refusal),
            Refusal::Unauthorized => ("UNAUTHORIZED", format!("missing or empty {}", self.auth())),
            Refusal::Invalid(detail) => ("INVALID_REQUEST", detail.clone()),
            Refusal::Permanent => self.permanent_error(request),
            Refusal::WindowClosed => (
                "131047",
                "(#131047) Re-engagement message: Message failed to send because more than \
                 24 hours have passed since the customer last replied to this number."
                    .to_owned(),
            ),
            Refusal::ServerError(_) => ("INTERNAL", "injected server error".into()),
            Refusal::RateLimited { .. } => ("RATE_LIMITED", "too many requests".into()),
        };
        let status = refusal.status(self);
        (status, self.error_body(status, code, &message))
    }
}

/// Meta's own code and title for each refusal
/// (https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes/).
fn meta_error(refusal: &Refusal) -> (&'static str, String) {
    let (code, title) = match refusal {
        Refusal::Unauthorized => {
            let auth = Provider::Meta.auth();
            return (
                "190",
                format!("Invalid OAuth access token: missing or empty {auth}"),
            );
        }
        Refusal::Invalid(detail) => return ("100", format!("(#100) Invalid parameter: {detail}")),
        Refusal::Permanent => ("131026", "(#131026) Message undeliverable"),
        Refusal::WindowClosed => ("131047", "(#131047) Re-engagement message"),
        Refusal::ServerError(_) => ("131000", "(#131000) Something went wrong"),
        Refusal::RateLimited { .. } => ("130429", "(#130429) Rate limit hit"),
    };
    (code, title.to_owned())
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every way the mock says no, before vendor styling.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Refusal {
    Unauthorized,
    Invalid(String),
    Permanent,
    WindowClosed,
    ServerError(StatusCode),
    RateLimited { retry_after_secs: u64 },
}

impl Refusal {
    pub(crate) fn status(&self, provider: Provider) -> StatusCode {
        match self {
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Permanent | Refusal::WindowClosed => provider.rejection_status(),
            Refusal::ServerError(status) => *status,
            Refusal::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// Where a vendor expects its credential. The mock checks presence only:
/// any non-empty key is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Header {
        name: &'static str,
        scheme: Option<&'static str>,
    },
    BodyField(&'static str),
}

impl Auth {
    pub(crate) fn is_present(self, headers: &HeaderMap, body: &Value) -> bool {
        let credential = match self {
            Auth::Header { name, scheme } => {
                let value = headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                match scheme {
                    Some(scheme) => value
                        .split_once(' ')
                        .filter(|(s, _)| s.eq_ignore_ascii_case(scheme))
                        .map_or("", |(_, token)| token),
                    None => value,
                }
            }
            Auth::BodyField(field) => body.get(field).and_then(Value::as_str).unwrap_or(""),
        };
        !credential.trim().is_empty()
    }
}

impl fmt::Display for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Header {
                name,
                scheme: Some(scheme),
            } => write!(f, "header `{name}: {scheme} <token>`"),
            Auth::Header { name, scheme: None } => write!(f, "header `{name}: <key>`"),
            Auth::BodyField(field) => write!(f, "body field `{field}`"),
        }
    }
}

/// How an endpoint's request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Json,
    Form,
}

/// One vendor path the mock serves.
#[derive(Debug)]
pub struct Endpoint {
    provider: Provider,
    path: &'static str,
    format: BodyFormat,
    /// Top-level fields the vendor insists on; `a|b` means either will do,
    /// `a.b` looks inside an object.
    required: &'static [&'static str],
    success: fn(&Sent) -> Value,
}

/// Everything a success body may echo or stamp.
pub(crate) struct Sent<'a> {
    pub request: &'a Value,
    pub now: DateTime<Utc>,
    /// Fresh randomness, formatted by each vendor into its kind of message id.
    pub token: u128,
}

static ENDPOINTS: [Endpoint; 7] = [
    Endpoint {
        provider: Provider::PayHero,
        path: "/api/v2/whatspp/sendText",
        format: BodyFormat::Json,
        required: &["message", "phone_number", "session"],
        success: payhero_sent,
    },
    Endpoint {
        provider: Provider::Pingup,
        path: "/ext/v2/{business}/messages",
        format: BodyFormat::Json,
        required: &["message_type", "client|client_phone", "text_message"],
        success: pingup_sent,
    },
    Endpoint {
        provider: Provider::Kaleyra,
        path: "/v1/{sid}/messages",
        format: BodyFormat::Form,
        required: &["to", "type", "channel", "from", "body|template_name"],
        success: kaleyra_sent,
    },
    Endpoint {
        provider: Provider::Digital99,
        path: "/whatsapp/v2/sendMessage",
        format: BodyFormat::Json,
        required: &["from", "to", "body"],
        success: digital99_sent,
    },
    Endpoint {
        provider: Provider::ReplyHero,
        path: "/whatsapp/messages/send",
        format: BodyFormat::Json,
        required: &["message.type", "sessionId", "customerId", "userId", "orgId"],
        success: replyhero_message_sent,
    },
    Endpoint {
        provider: Provider::ReplyHero,
        path: "/whatsapp/template/send",
        format: BodyFormat::Json,
        required: &["templateName", "sessionId", "userId", "orgId", "components"],
        success: replyhero_template_sent,
    },
    Endpoint {
        provider: Provider::Meta,
        path: "/{api_version}/{phone_number_id}/messages",
        format: BodyFormat::Json,
        required: &[
            "messaging_product",
            "to",
            "type",
            "text|image|document|video|template",
        ],
        success: meta_sent,
    },
];

/// Every vendor path the mock serves (all `POST`).
pub fn endpoints() -> &'static [Endpoint] {
    &ENDPOINTS
}

impl Endpoint {
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The path in route syntax, e.g. `/v1/{sid}/messages`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// Decodes the body as the vendor would: JSON, or a form turned into a
    /// JSON object of strings.
    pub(crate) fn parse(&self, body: &[u8]) -> Result<Value, String> {
        match self.format {
            BodyFormat::Json => {
                serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
            }
            BodyFormat::Form => Ok(Value::Object(
                url::form_urlencoded::parse(body)
                    .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                    .collect::<Map<_, _>>(),
            )),
        }
    }

    /// What is wrong with an authenticated request, if anything, checked the
    /// way the vendor would before sending.
    pub(crate) fn check(&self, headers: &HeaderMap, request: &Value) -> Option<Refusal> {
        if !self.provider.auth().is_present(headers, request) {
            return Some(Refusal::Unauthorized);
        }
        let missing: Vec<&str> = self
            .required
            .iter()
            .copied()
            .filter(|field| !has_any(request, field))
            .collect();
        (!missing.is_empty())
            .then(|| Refusal::Invalid(format!("missing required field(s): {}", missing.join(", "))))
    }

    pub(crate) fn success_body(&self, sent: &Sent) -> Value {
        (self.success)(sent)
    }
}

/// Whether any of the `|`-separated alternatives is present and non-empty.
fn has_any(request: &Value, field: &str) -> bool {
    field.split('|').any(|path| {
        let value = path.split('.').try_fold(request, |v, key| v.get(key));
        !matches!(value, None | Some(Value::Null)) && value != Some(&Value::String(String::new()))
    })
}

fn echo(request: &Value, field: &str) -> Value {
    request.get(field).cloned().unwrap_or(Value::Null)
}

/// A UUID-shaped rendering of the token (Kaleyra, Pingup).
fn uuid(token: u128) -> String {
    let hex = format!("{token:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn payhero_sent(_: &Sent) -> Value {
    json!({ "success": true })
}

fn pingup_sent(sent: &Sent) -> Value {
    json!({ "success": true, "data": { "message_id": uuid(sent.token) } })
}

fn kaleyra_sent(sent: &Sent) -> Value {
    let id = uuid(sent.token);
    // Kaleyra accepts several comma-separated recipients, one message id each.
    let recipients: Vec<Value> = sent.request["to"]
        .as_str()
        .unwrap_or("")
        .split(',')
        .enumerate()
        .map(|(i, to)| json!({ "message_id": format!("{id}:{i}"), "recipient": to.trim().trim_start_matches('+') }))
        .collect();
    json!({
        "id": id,
        "type": echo(sent.request, "type"),
        "body": echo(sent.request, "body"),
        "createdDateTime": sent.now.format("%Y-%m-%d %H:%M:%S%:z").to_string(),
        "totalCount": recipients.len(),
        "data": recipients,
        "error": {},
    })
}

fn digital99_sent(sent: &Sent) -> Value {
    json!({
        "status": "OK",
        "unique": format!("{:022x}", sent.token >> 40),
        "body": echo(sent.request, "body"),
        "timestamp": sent.now.timestamp(),
        "from": echo(sent.request, "from"),
        "to": echo(sent.request, "to"),
        "templateTimeLeft": 1200,
        // Deprecated by the vendor: "this value will show 0 always".
        "conversationTimeLeft": 0,
        "reason": 1,
    })
}

/// The record ReplyHero answers for one sent message; `kind` is its
/// `messageType` (`human` for a session message, `template`).
fn replyhero_record(sent: &Sent, kind: &str) -> Value {
    let customer = echo(sent.request, "customerId");
    json!({
        "customerId": customer,
        "id": format!("{:020x}", sent.token >> 48),
        "messageType": kind,
        "orgId": echo(sent.request, "orgId"),
        "response": {
            "contacts": [{ "input": customer, "wa_id": customer }],
            "messages": [{ "id": format!("wamid.{:032X}", sent.token) }],
            "messaging_product": "whatsapp",
        },
        "sessionId": echo(sent.request, "sessionId"),
        "timestamp": sent.now.to_rfc2822(),
        "userId": echo(sent.request, "userId"),
    })
}

fn replyhero_message_sent(sent: &Sent) -> Value {
    replyhero_record(sent, "human")
}

fn replyhero_template_sent(sent: &Sent) -> Value {
    let mut record = replyhero_record(sent, "template");
    record["file"] = Value::Null;
    record["message"] = echo(sent.request, "templateName");
    json!([record])
}

/// The Cloud API's answer: the recipient as given and as a WhatsApp id,
/// and the new message's `wamid`.
fn meta_sent(sent: &Sent) -> Value {
    let to = echo(sent.request, "to");
    let wa_id = to.as_str().unwrap_or("").trim_start_matches('+').to_owned();
    json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": to, "wa_id": wa_id }],
        "messages": [{ "id": format!("wamid.{:032X}", sent.token), "message_status": "accepted" }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (axum::http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    #[test]
    fn auth_needs_the_scheme_and_a_token() {
        let basic = Provider::PayHero.auth();
        assert!(basic.is_present(&headers(&[("authorization", "Basic abc")]), &json!({})));
        assert!(basic.is_present(&headers(&[("authorization", "basic abc")]), &json!({})));
        assert!(!basic.is_present(&headers(&[("authorization", "Bearer abc")]), &json!({})));
        assert!(!basic.is_present(&headers(&[("authorization", "Basic ")]), &json!({})));
        assert!(!basic.is_present(&HeaderMap::new(), &json!({})));
        let body = Provider::Digital99.auth();
        assert!(body.is_present(&HeaderMap::new(), &json!({"apiKey": "k"})));
        assert!(!body.is_present(&HeaderMap::new(), &json!({"apiKey": ""})));
    }

    #[test]
    fn required_fields_accept_alternatives_and_nested_paths() {
        assert!(has_any(
            &json!({"client_phone": "39"}),
            "client|client_phone"
        ));
        assert!(!has_any(&json!({"client": ""}), "client|client_phone"));
        assert!(has_any(
            &json!({"message": {"type": "text"}}),
            "message.type"
        ));
        assert!(!has_any(&json!({"message": "text"}), "message.type"));
    }

    #[test]
    fn forms_decode_to_a_json_object() {
        let kaleyra = endpoints()
            .iter()
            .find(|e| e.provider == Provider::Kaleyra)
            .unwrap();
        let body = kaleyra.parse(b"to=%2B254712345678&body=hi+there").unwrap();
        assert_eq!(body, json!({"to": "+254712345678", "body": "hi there"}));
    }

    #[test]
    fn kaleyra_answers_one_message_id_per_recipient() {
        let sent = Sent {
            request: &json!({"to": "+1202,+1303", "type": "text"}),
            now: Utc::now(),
            token: 7,
        };
        let body = kaleyra_sent(&sent);
        assert_eq!(body["totalCount"], 2);
        assert_eq!(body["data"][1]["recipient"], "1303");
        assert!(
            body["data"][1]["message_id"]
                .as_str()
                .unwrap()
                .ends_with(":1")
        );
    }

    #[test]
    fn meta_refuses_with_graph_api_errors_and_numeric_codes() {
        let (status, body) = Provider::Meta.refusal(&Refusal::WindowClosed, &json!({}));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], 131047);
        assert_eq!(body["error"]["type"], "OAuthException");
        let (status, body) = Provider::Meta.refusal(
            &Refusal::RateLimited {
                retry_after_secs: 1,
            },
            &json!({}),
        );
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::TOO_MANY_REQUESTS, &json!(130429))
        );
        let (status, body) = Provider::Meta.refusal(&Refusal::Unauthorized, &json!({}));
        assert_eq!(
            (status, &body["error"]["code"]),
            (StatusCode::UNAUTHORIZED, &json!(190))
        );
    }

    #[test]
    fn payhero_permanent_error_names_the_session() {
        let (status, body) =
            Provider::PayHero.refusal(&Refusal::Permanent, &json!({"session": "s1"}));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body["error_message"]
                .as_str()
                .unwrap()
                .contains("didn't find a session with name 's1'")
        );
    }
}
