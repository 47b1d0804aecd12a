//! The export format: one JSON object per line, holding a message losslessly
//! so `import` republishes exactly what `export` read.
//!
//! ```json
//! {"routing_key":"kaleyra","properties":{"delivery_mode":2,"message_id":"job-1",
//!  "headers":{"x-herald-attempt":{"i32":2},"x-herald-dead-reason":{"long_string":"expired"}}},
//!  "body":"{\"id\":\"job-1\",…}"}
//! ```
//!
//! - `body` holds a UTF-8 body as text; any other body is in `body_base64`
//!   instead (exactly one of the two is present).
//! - Header values keep their AMQP type as the key of a one-entry object
//!   (`i32`, `u8`, `long_string`, `table`, `array`, `timestamp`, …), because
//!   a consumer may care whether `x-herald-attempt` was an `i32` or an `i64`.
//!   Floats are written as text (`{"f64":"0.1"}`, `"NaN"`), the one way JSON
//!   keeps every value exactly; byte arrays and non-UTF-8 strings as base64.
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

use crate::letter::Envelope;

/// One exported message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    pub routing_key: String,
    #[serde(default, skip_serializing_if = "Properties::is_empty")]
    pub properties: Properties,
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

/// An AMQP field value with its type.
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
        ExportLine {
            routing_key: envelope.routing_key.clone(),
            properties: properties_of(&envelope.properties),
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
        Ok(Envelope {
            routing_key: self.routing_key,
            properties: basic_properties(self.properties)?,
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
        headers: p.headers().as_ref().map(table_of),
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

fn table_of(table: &FieldTable) -> BTreeMap<String, Value> {
    table
        .inner()
        .iter()
        .filter(|(name, _)| name.as_str() != crate::letter::DELIVERY_COUNT)
        .map(|(name, value)| (name.to_string(), value_of(value)))
        .collect()
}

fn value_of(value: &AMQPValue) -> Value {
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
        AMQPValue::FieldArray(items) => {
            Value::Array(items.as_slice().iter().map(value_of).collect())
        }
        AMQPValue::Timestamp(t) => Value::Timestamp(*t),
        AMQPValue::FieldTable(t) => Value::Table(
            t.inner()
                .iter()
                .map(|(k, v)| (k.to_string(), value_of(v)))
                .collect(),
        ),
        AMQPValue::ByteArray(b) => Value::Bytes(BASE64.encode(b.as_slice())),
        AMQPValue::Void => Value::Void,
    }
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

    #[test]
    fn every_type_and_property_survives_a_round_trip() {
        assert_eq!(round_trip(&everything()), everything());
    }

    #[test]
    fn floats_that_json_has_no_number_for_survive_too() {
        for value in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0] {
            let mut e = everything();
            e.properties = e.properties.with_headers(FieldTable::from(
                std::iter::once((ShortString::from("f"), AMQPValue::Double(value)))
                    .collect::<BTreeMap<_, _>>(),
            ));
            match round_trip(&e).headers().unwrap().inner().get("f") {
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

    #[test]
    fn the_line_is_readable_json_with_typed_headers() {
        let line: serde_json::Value =
            serde_json::from_str(&ExportLine::from_envelope(&everything()).to_line()).unwrap();
        assert_eq!(line["routing_key"], "kaleyra");
        assert_eq!(line["properties"]["delivery_mode"], 2);
        assert_eq!(line["properties"]["type"], "send");
        let headers = &line["properties"]["headers"];
        assert_eq!(headers["x-herald-attempt"], serde_json::json!({"i32": 2}));
        assert_eq!(
            headers["long"],
            serde_json::json!({"long_string": "window_closed"})
        );
        assert_eq!(
            headers["binary"],
            serde_json::json!({"long_string_base64": "/wD+"})
        );
        assert_eq!(headers["void"], "void");
        assert_eq!(
            headers["x-death"]["array"][0]["table"]["count"],
            serde_json::json!({"i64": 5})
        );
    }

    #[test]
    fn the_delivery_count_is_not_exported() {
        let mut e = everything();
        let mut h = e.headers().unwrap().clone();
        h.insert(
            crate::letter::DELIVERY_COUNT.into(),
            AMQPValue::LongLongInt(4),
        );
        e.properties = e.properties.with_headers(h);
        assert_eq!(round_trip(&e), everything());
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
