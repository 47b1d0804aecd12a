//! The export format: one plain JSON object per line, holding what `import`
//! needs to republish the message.
//!
//! ```json
//! {"routing_key":"kaleyra","properties":{"delivery_mode":2,"message_id":"job-1"},
//!  "headers":{"x-herald-attempt":2,"x-herald-dead-reason":"rejected_by_vendor",
//!             "x-herald-vendor-response":{"error":"E13009"}},
//!  "body":"{\"id\":\"job-1\",…}"}
//! ```
//!
//! - `body` holds a UTF-8 body as text, byte for byte; any other body is in
//!   `body_base64` instead (exactly one of the two is present).
//! - `headers` are plain JSON values: strings, numbers, booleans, tables as
//!   objects, arrays; the broker's `x-death` times as RFC 3339 text; the
//!   vendor's answer (`x-herald-vendor-response`) as the JSON it was when it
//!   was JSON. Import maps them back: integers to 64-bit, text to long
//!   strings, `x-death` times to timestamps, a JSON vendor answer to its text.
//! - A header plain JSON cannot carry exactly (a byte array, text that is
//!   not UTF-8, a float JSON has no number for, a decimal, a timestamp
//!   outside `x-death`; Herald writes none of these) keeps its AMQP type as
//!   the key of a one-entry object under `properties.headers`
//!   (`{"bytes":"AAH/"}`), the form every header had in exports written
//!   before the plain one; import reads both.
//! - The quorum queue's `x-delivery-count` is never exported (see
//!   [`crate::letter::DELIVERY_COUNT`]).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use lapin::BasicProperties;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use serde::{Deserialize, Serialize};

use herald_core::protocol::header;

use crate::letter::Envelope;

/// One exported message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    pub routing_key: String,
    #[serde(default, skip_serializing_if = "Properties::is_empty")]
    pub properties: Properties,
    /// The headers as plain JSON (the current form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

/// The AMQP basic properties, each present only when set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Properties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    /// Typed headers: those plain JSON cannot carry, and every header of
    /// exports written before the plain form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
}

impl Properties {
    fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}

/// An AMQP field value with its type (the earlier export form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Value {
    Bool(bool),
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    F32(String),
    F64(String),
    Decimal { scale: u8, value: u32 },
    ShortString(String),
    LongString(String),
    LongStringBase64(String),
    Array(Vec<Value>),
    Timestamp(u64),
    Table(BTreeMap<String, Value>),
    Bytes(String),
    Void,
}

/// A line that cannot become a message again, naming what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct LineError {
    pub field: String,
    pub problem: String,
}

impl LineError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> LineError {
        LineError {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

impl ExportLine {
    pub fn from_envelope(envelope: &Envelope) -> ExportLine {
        let (body, body_base64) = match std::str::from_utf8(&envelope.body) {
            Ok(text) => (Some(text.to_owned()), None),
            Err(_) => (None, Some(BASE64.encode(&envelope.body))),
        };
        let (plain, typed) = envelope.headers().map(split_headers).unzip();
        ExportLine {
            routing_key: envelope.routing_key.clone(),
            properties: Properties {
                headers: typed.filter(|t| !t.is_empty()),
                ..properties_of(&envelope.properties)
            },
            headers: plain.filter(|p| !p.is_empty()),
            body,
            body_base64,
        }
    }

    pub fn into_envelope(self) -> Result<Envelope, LineError> {
        let body = match (self.body, self.body_base64) {
            (Some(text), None) => text.into_bytes(),
            (None, Some(encoded)) => decode_base64("body_base64", &encoded)?,
            _ => {
                return Err(LineError::new(
                    "body",
                    "exactly one of body and body_base64 must be present",
                ));
            }
        };
        let plain = self.headers.map(field_table_of_plain).transpose()?;
        let mut properties = basic_properties(self.properties)?;
        if let Some(plain) = plain {
            let mut headers = properties.headers().clone().unwrap_or_default();
            for (name, value) in plain.inner() {
                headers.insert(name.clone(), value.clone());
            }
            properties = properties.with_headers(headers);
        }
        Ok(Envelope {
            routing_key: self.routing_key,
            properties,
            body,
        })
    }

    /// Parses one line of an export file.
    pub fn parse(line: &str) -> Result<Envelope, LineError> {
        let parsed: ExportLine =
            serde_json::from_str(line).map_err(|e| LineError::new("line", e.to_string()))?;
        parsed.into_envelope()
    }

    /// The line as written to a file (no trailing newline).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an export line always serializes")
    }
}

fn properties_of(p: &BasicProperties) -> Properties {
    let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.to_string());
    Properties {
        content_type: text(p.content_type()),
        content_encoding: text(p.content_encoding()),
        headers: None,
        delivery_mode: *p.delivery_mode(),
        priority: *p.priority(),
        correlation_id: text(p.correlation_id()),
        reply_to: text(p.reply_to()),
        expiration: text(p.expiration()),
        message_id: text(p.message_id()),
        timestamp: *p.timestamp(),
        kind: text(p.kind()),
        user_id: text(p.user_id()),
        app_id: text(p.app_id()),
        cluster_id: text(p.cluster_id()),
    }
}

fn basic_properties(p: Properties) -> Result<BasicProperties, LineError> {
    type Setter = fn(BasicProperties, ShortString) -> BasicProperties;
    let texts: [(&str, Option<String>, Setter); 10] = [
        (
            "content_type",
            p.content_type,
            BasicProperties::with_content_type,
        ),
        (
            "content_encoding",
            p.content_encoding,
            BasicProperties::with_content_encoding,
        ),
        (
            "correlation_id",
            p.correlation_id,
            BasicProperties::with_correlation_id,
        ),
        ("reply_to", p.reply_to, BasicProperties::with_reply_to),
        ("expiration", p.expiration, BasicProperties::with_expiration),
        ("message_id", p.message_id, BasicProperties::with_message_id),
        ("type", p.kind, BasicProperties::with_type),
        ("user_id", p.user_id, BasicProperties::with_user_id),
        ("app_id", p.app_id, BasicProperties::with_app_id),
        ("cluster_id", p.cluster_id, BasicProperties::with_cluster_id),
    ];
    let mut properties = BasicProperties::default();
    for (name, value, set) in texts {
        if let Some(value) = value {
            properties = set(
                properties,
                short_string(&format!("properties.{name}"), value)?,
            );
        }
    }
    if let Some(mode) = p.delivery_mode {
        properties = properties.with_delivery_mode(mode);
    }
    if let Some(priority) = p.priority {
        properties = properties.with_priority(priority);
    }
    if let Some(timestamp) = p.timestamp {
        properties = properties.with_timestamp(timestamp);
    }
    if let Some(headers) = p.headers {
        properties = properties.with_headers(field_table("properties.headers", headers)?);
    }
    Ok(properties)
}

/// The headers plain JSON carries exactly, as plain JSON (without the
/// broker's delivery count; the vendor's answer as JSON when it is JSON),
/// and the others typed: byte arrays, text that is not UTF-8, floats JSON
/// has no number for, decimals, timestamps outside `x-death`.
fn split_headers(
    headers: &FieldTable,
) -> (
    serde_json::Map<String, serde_json::Value>,
    BTreeMap<String, Value>,
) {
    let (exact, typed): (BTreeMap<_, _>, BTreeMap<_, _>) = headers
        .inner()
        .iter()
        .filter(|(name, _)| name.as_str() != crate::letter::DELIVERY_COUNT)
        .map(|(name, value)| (name.clone(), value.clone()))
        .partition(|(name, value)| is_plain(value, name.as_str() == header::X_DEATH));
    (plain_headers_of(&exact.into()), typed_table(&typed.into()))
}

/// Whether plain JSON carries `value` exactly, but for integer width.
fn is_plain(value: &AMQPValue, in_x_death: bool) -> bool {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).is_ok(),
        AMQPValue::Double(v) => v.is_finite(),
        AMQPValue::Float(v) => v.is_finite(),
        AMQPValue::Timestamp(_) => in_x_death,
        AMQPValue::DecimalValue(_) | AMQPValue::ByteArray(_) => false,
        AMQPValue::FieldArray(items) => items.as_slice().iter().all(|v| is_plain(v, in_x_death)),
        AMQPValue::FieldTable(t) => t.inner().values().all(|v| is_plain(v, in_x_death)),
        _ => true,
    }
}

fn plain_headers_of(headers: &FieldTable) -> serde_json::Map<String, serde_json::Value> {
    let mut plain = crate::letter::plain_headers(Some(headers));
    if let Some(serde_json::Value::String(text)) = plain.get(header::VENDOR_RESPONSE)
        && let Ok(answer @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))) =
            serde_json::from_str(text)
    {
        plain.insert(header::VENDOR_RESPONSE.to_owned(), answer);
    }
    plain
}

fn typed_table(table: &FieldTable) -> BTreeMap<String, Value> {
    table
        .inner()
        .iter()
        .map(|(name, value)| (name.to_string(), typed(value)))
        .collect()
}

fn typed(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(v) => Value::Bool(*v),
        AMQPValue::ShortShortInt(v) => Value::I8(*v),
        AMQPValue::ShortShortUInt(v) => Value::U8(*v),
        AMQPValue::ShortInt(v) => Value::I16(*v),
        AMQPValue::ShortUInt(v) => Value::U16(*v),
        AMQPValue::LongInt(v) => Value::I32(*v),
        AMQPValue::LongUInt(v) => Value::U32(*v),
        AMQPValue::LongLongInt(v) => Value::I64(*v),
        AMQPValue::Float(v) => Value::F32(v.to_string()),
        AMQPValue::Double(v) => Value::F64(v.to_string()),
        AMQPValue::DecimalValue(d) => Value::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::ShortString(s) => Value::ShortString(s.to_string()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => Value::LongString(text.to_owned()),
            Err(_) => Value::LongStringBase64(BASE64.encode(s.as_bytes())),
        },
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(typed).collect()),
        AMQPValue::Timestamp(t) => Value::Timestamp(*t),
        AMQPValue::FieldTable(t) => Value::Table(typed_table(t)),
        AMQPValue::ByteArray(b) => Value::Bytes(BASE64.encode(b.as_slice())),
        AMQPValue::Void => Value::Void,
    }
}

fn field_table_of_plain(
    headers: serde_json::Map<String, serde_json::Value>,
) -> Result<FieldTable, LineError> {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        let path = format!("headers.{name}");
        let value = match (name.as_str(), value) {
            // Stored as text: the vendor's answer exported as the JSON it was.
            (
                header::VENDOR_RESPONSE,
                value @ (serde_json::Value::Object(_) | serde_json::Value::Array(_)),
            ) => AMQPValue::LongString(LongString::from(value.to_string())),
            (header::X_DEATH, value) => x_death_of_plain(&path, value)?,
            (_, value) => amqp_of_plain(&path, value)?,
        };
        table.insert(short_string(&path, name)?, value);
    }
    Ok(table)
}

/// `x-death` as the broker writes it: its `time` fields are timestamps.
fn x_death_of_plain(path: &str, value: serde_json::Value) -> Result<AMQPValue, LineError> {
    let serde_json::Value::Array(deaths) = value else {
        return amqp_of_plain(path, value);
    };
    let mut out = Vec::with_capacity(deaths.len());
    for (i, death) in deaths.into_iter().enumerate() {
        let path = format!("{path}[{i}]");
        let mut death = amqp_of_plain(&path, death)?;
        if let AMQPValue::FieldTable(table) = &mut death
            && let Some(AMQPValue::LongString(time)) = table.inner().get("time")
        {
            let text = String::from_utf8_lossy(time.as_bytes()).into_owned();
            let at = chrono::DateTime::parse_from_rfc3339(&text)
                .map_err(|e| LineError::new(format!("{path}.time"), format!("{text:?}: {e}")))?;
            let secs = u64::try_from(at.timestamp()).unwrap_or_default();
            table.insert("time".into(), AMQPValue::Timestamp(secs));
        }
        out.push(death);
    }
    Ok(AMQPValue::FieldArray(FieldArray::from(out)))
}

fn amqp_of_plain(path: &str, value: serde_json::Value) -> Result<AMQPValue, LineError> {
    use serde_json::Value as Json;
    Ok(match value {
        Json::Null => AMQPValue::Void,
        Json::Bool(v) => AMQPValue::Boolean(v),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => AMQPValue::LongLongInt(i),
            (None, Some(f)) => AMQPValue::Double(f),
            (None, None) => return Err(LineError::new(path, format!("{n} is out of range"))),
        },
        Json::String(s) => AMQPValue::LongString(LongString::from(s)),
        Json::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| amqp_of_plain(&format!("{path}[{i}]"), v))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Json::Object(fields) => {
            let mut table = FieldTable::default();
            for (name, v) in fields {
                let path = format!("{path}.{name}");
                let v = amqp_of_plain(&path, v)?;
                table.insert(short_string(&path, name)?, v);
            }
            AMQPValue::FieldTable(table)
        }
    })
}

fn field_table(path: &str, table: BTreeMap<String, Value>) -> Result<FieldTable, LineError> {
    let mut out = FieldTable::default();
    for (name, value) in table {
        let path = format!("{path}.{name}");
        let value = amqp_value(&path, value)?;
        out.insert(short_string(&path, name)?, value);
    }
    Ok(out)
}

fn amqp_value(path: &str, value: Value) -> Result<AMQPValue, LineError> {
    let float = |text: &str| {
        text.parse::<f64>()
            .map_err(|_| LineError::new(path, format!("{text:?} is not a number")))
    };
    Ok(match value {
        Value::Bool(v) => AMQPValue::Boolean(v),
        Value::I8(v) => AMQPValue::ShortShortInt(v),
        Value::U8(v) => AMQPValue::ShortShortUInt(v),
        Value::I16(v) => AMQPValue::ShortInt(v),
        Value::U16(v) => AMQPValue::ShortUInt(v),
        Value::I32(v) => AMQPValue::LongInt(v),
        Value::U32(v) => AMQPValue::LongUInt(v),
        Value::I64(v) => AMQPValue::LongLongInt(v),
        Value::F32(text) => AMQPValue::Float(
            text.parse::<f32>()
                .map_err(|_| LineError::new(path, format!("{text:?} is not a number")))?,
        ),
        Value::F64(text) => AMQPValue::Double(float(&text)?),
        Value::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue { scale, value }),
        Value::ShortString(s) => AMQPValue::ShortString(short_string(path, s)?),
        Value::LongString(s) => AMQPValue::LongString(LongString::from(s)),
        Value::LongStringBase64(s) => {
            AMQPValue::LongString(LongString::from(decode_base64(path, &s)?))
        }
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| amqp_value(&format!("{path}[{i}]"), v))
                .collect::<Result<Vec<_>, _>>()?,
        )),
        Value::Timestamp(t) => AMQPValue::Timestamp(t),
        Value::Table(t) => AMQPValue::FieldTable(field_table(path, t)?),
        Value::Bytes(s) => AMQPValue::ByteArray(ByteArray::from(decode_base64(path, &s)?)),
        Value::Void => AMQPValue::Void,
    })
}

fn short_string(path: &str, value: String) -> Result<ShortString, LineError> {
    ShortString::try_new(value).map_err(|e| LineError::new(path, e.to_string()))
}

fn decode_base64(path: &str, encoded: &str) -> Result<Vec<u8>, LineError> {
    BASE64
        .decode(encoded)
        .map_err(|e| LineError::new(path, format!("invalid base64: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message using every AMQP type and every property.
    fn everything() -> Envelope {
        let mut nested = FieldTable::default();
        nested.insert(
            "queue".into(),
            AMQPValue::LongString("herald.send.kaleyra".into()),
        );
        nested.insert("count".into(), AMQPValue::LongLongInt(5));
        nested.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
        let mut headers = FieldTable::default();
        let values = [
            ("bool", AMQPValue::Boolean(true)),
            ("i8", AMQPValue::ShortShortInt(-8)),
            ("u8", AMQPValue::ShortShortUInt(8)),
            ("i16", AMQPValue::ShortInt(-16)),
            ("u16", AMQPValue::ShortUInt(16)),
            ("x-herald-attempt", AMQPValue::LongInt(2)),
            ("u32", AMQPValue::LongUInt(32)),
            ("i64", AMQPValue::LongLongInt(-64)),
            ("f32", AMQPValue::Float(0.1)),
            ("f64", AMQPValue::Double(-1.5e-300)),
            (
                "decimal",
                AMQPValue::DecimalValue(DecimalValue {
                    scale: 2,
                    value: 1234,
                }),
            ),
            ("short", AMQPValue::ShortString("short".into())),
            ("long", AMQPValue::LongString("window_closed".into())),
            (
                "binary",
                AMQPValue::LongString(LongString::from(vec![0xff, 0x00, 0xfe])),
            ),
            (
                "x-death",
                AMQPValue::FieldArray(vec![AMQPValue::FieldTable(nested)].into()),
            ),
            ("bytes", AMQPValue::ByteArray(vec![1u8, 2, 3].into())),
            ("void", AMQPValue::Void),
        ];
        for (k, v) in values {
            headers.insert(k.into(), v);
        }
        Envelope {
            routing_key: "kaleyra".into(),
            properties: BasicProperties::default()
                .with_content_type("application/json".into())
                .with_content_encoding("utf-8".into())
                .with_headers(headers)
                .with_delivery_mode(2)
                .with_priority(3)
                .with_correlation_id("corr".into())
                .with_reply_to("reply".into())
                .with_expiration("60000".into())
                .with_message_id("job-1".into())
                .with_timestamp(1_700_000_000)
                .with_type("send".into())
                .with_user_id("guest".into())
                .with_app_id("shop".into())
                .with_cluster_id("c1".into()),
            body: br#"{"id":"job-1","to":"+254712345678"}"#.to_vec(),
        }
    }

    fn round_trip(envelope: &Envelope) -> Envelope {
        ExportLine::parse(&ExportLine::from_envelope(envelope).to_line()).unwrap()
    }

    /// The line an export before the plain form wrote: typed headers.
    fn typed_line(envelope: &Envelope) -> String {
        let mut line = ExportLine::from_envelope(envelope);
        line.headers = None;
        line.properties.headers = envelope.headers().map(typed_table);
        line.to_line()
    }

    #[test]
    fn an_earlier_typed_export_still_imports_every_type_and_property_exactly() {
        assert_eq!(
            ExportLine::parse(&typed_line(&everything())).unwrap(),
            everything()
        );
    }

    #[test]
    fn floats_that_json_has_no_number_for_survive_in_the_typed_form() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            let mut e = everything();
            e.properties = e.properties.with_headers(FieldTable::from(
                std::iter::once((ShortString::from("f"), AMQPValue::Double(value)))
                    .collect::<BTreeMap<_, _>>(),
            ));
            let back = ExportLine::parse(&typed_line(&e)).unwrap();
            match back.headers().unwrap().inner().get("f") {
                Some(AMQPValue::Double(back)) => assert_eq!(back.to_bits(), value.to_bits()),
                other => panic!("{value} came back as {other:?}"),
            }
        }
    }

    #[test]
    fn a_utf8_body_is_text_and_any_other_body_is_base64() {
        let mut e = everything();
        let line = ExportLine::from_envelope(&e);
        assert_eq!(
            line.body.as_deref(),
            Some(r#"{"id":"job-1","to":"+254712345678"}"#)
        );
        assert_eq!(line.body_base64, None);

        e.body = vec![0xc3, 0x28, 0x00];
        let line = ExportLine::from_envelope(&e);
        assert_eq!(
            (line.body, line.body_base64.as_deref()),
            (None, Some("wygA"))
        );
        assert_eq!(round_trip(&e).body, e.body);
    }

    /// A dead letter as the worker and the broker leave it.
    fn worker_letter() -> Envelope {
        let mut death = FieldTable::default();
        death.insert(
            "queue".into(),
            AMQPValue::LongString("herald.send.kaleyra".into()),
        );
        death.insert(
            "reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        death.insert("count".into(), AMQPValue::LongLongInt(5));
        death.insert("time".into(), AMQPValue::Timestamp(1_794_999_000));
        let mut headers = FieldTable::default();
        let text = |v: &str| AMQPValue::LongString(v.into());
        headers.insert(header::DEAD_REASON.into(), text("rejected_by_vendor"));
        headers.insert(header::DEAD_AT.into(), text("2026-11-21T10:00:00.000Z"));
        headers.insert(header::ATTEMPT.into(), AMQPValue::LongInt(2));
        headers.insert(header::VENDOR_STATUS.into(), AMQPValue::LongInt(400));
        headers.insert(
            header::VENDOR_RESPONSE.into(),
            text(r#"{"error":{"code":"E13009","message":"invalid number"}}"#),
        );
        headers.insert(
            header::X_DEATH.into(),
            AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
        );
        headers.insert(
            crate::letter::DELIVERY_COUNT.into(),
            AMQPValue::LongLongInt(3),
        );
        Envelope {
            routing_key: "kaleyra".into(),
            properties: BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id("job-1".into())
                .with_headers(headers),
            body: br#"{"id":"job-1"}"#.to_vec(),
        }
    }

    #[test]
    fn the_line_is_plain_json_with_the_vendor_answer_as_an_object() {
        let text = ExportLine::from_envelope(&worker_letter()).to_line();
        for tag in [
            "long_string",
            "\"i32\"",
            "\"i64\"",
            "timestamp",
            "\"table\"",
        ] {
            assert!(!text.contains(tag), "no type tag {tag}: {text}");
        }
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        let headers = &line["headers"];
        assert_eq!(headers[header::ATTEMPT], 2);
        assert_eq!(headers[header::DEAD_REASON], "rejected_by_vendor");
        assert_eq!(headers[header::VENDOR_RESPONSE]["error"]["code"], "E13009");
        assert_eq!(
            headers[header::X_DEATH][0]["time"],
            "2026-11-18T10:50:00.000Z"
        );
        assert!(
            headers.get(crate::letter::DELIVERY_COUNT).is_none(),
            "{text}"
        );
        assert_eq!(line["properties"]["message_id"], "job-1");
    }

    #[test]
    fn a_plain_line_imports_as_the_same_dead_letter() {
        use crate::letter::DeadLetter;
        let before = DeadLetter::read(worker_letter().without_delivery_count());
        let after = DeadLetter::read(round_trip(&worker_letter()));
        assert_eq!(after.reason, before.reason);
        assert_eq!(after.attempt, before.attempt);
        assert_eq!(after.dead_at, before.dead_at);
        assert_eq!(after.vendor_status, before.vendor_status);
        assert_eq!(after.broker_deaths, before.broker_deaths);
        let json = |text: &Option<String>| -> serde_json::Value {
            serde_json::from_str(text.as_deref().unwrap()).unwrap()
        };
        assert_eq!(json(&after.vendor_response), json(&before.vendor_response));
        assert_eq!(after.envelope.body, before.envelope.body);
    }

    #[test]
    fn bad_lines_name_the_problem() {
        let err = |line: &str| ExportLine::parse(line).unwrap_err().to_string();
        assert!(err(r#"{"routing_key":"k"}"#).contains("exactly one of body and body_base64"));
        assert!(
            err(r#"{"routing_key":"k","body":"a","body_base64":"YQ=="}"#).contains("exactly one")
        );
        assert!(err(r#"{"routing_key":"k","body_base64":"!!"}"#).contains("invalid base64"));
        assert!(err(r#"{"routing_key":"k","body":"a","extra":1}"#).contains("extra"));
        let bad_header =
            r#"{"routing_key":"k","body":"a","properties":{"headers":{"n":{"f64":"lots"}}}}"#;
        let e = err(bad_header);
        assert!(
            e.contains("properties.headers.n") && e.contains("lots"),
            "{e}"
        );
        assert!(
            err(r#"{"routing_key":"k","body":"a","properties":{"headers":{"n":{"i128":1}}}}"#)
                .contains("i128")
        );
    }
}
