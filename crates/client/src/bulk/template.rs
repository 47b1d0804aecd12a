//! `{column}` placeholders: the job fields given once for a whole CSV file,
//! with each row's values filled in.
//!
//! A template is compiled against the file's header once, so a misspelt
//! column is a usage error before anything is read, not one rejected row per
//! line. Rendering is a single pass: a value that itself contains `{…}` is
//! inserted as it is, never expanded again.

use serde_json::{Map, Value};

/// A placeholder that cannot be filled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "{value:?} names column {column:?}, which the CSV header does not have (columns: {known})"
    )]
    UnknownColumn {
        value: String,
        column: String,
        known: String,
    },
    #[error("{value:?}: {problem} (write {{{{ and }}}} for literal braces)")]
    Malformed {
        value: String,
        problem: &'static str,
    },
}

/// JSON with every string compiled into literal text and column references.
#[derive(Debug, Clone, PartialEq)]
pub struct Template(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// Anything without a placeholder, kept as it was.
    Fixed(Value),
    Text(Vec<Segment>),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Column(usize),
}

impl Template {
    /// Compiles every string inside `value` against the CSV `columns`.
    pub fn compile(value: &Value, columns: &[String]) -> Result<Template, TemplateError> {
        compile_node(value, columns).map(Template)
    }

    /// The value with this row's fields in place of the placeholders. A row
    /// shorter than the header reads its missing columns as empty.
    pub fn render(&self, row: &[&str]) -> Value {
        render_node(&self.0, row)
    }
}

fn compile_node(value: &Value, columns: &[String]) -> Result<Node, TemplateError> {
    Ok(match value {
        Value::String(text) => {
            let segments = parse(text, columns)?;
            match segments.as_slice() {
                [] => Node::Fixed(Value::String(String::new())),
                [Segment::Literal(only)] => Node::Fixed(Value::String(only.clone())),
                _ => Node::Text(segments),
            }
        }
        Value::Array(items) => Node::Array(
            items
                .iter()
                .map(|item| compile_node(item, columns))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(fields) => Node::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), compile_node(v, columns)?)))
                .collect::<Result<_, _>>()?,
        ),
        other => Node::Fixed(other.clone()),
    })
}

fn render_node(node: &Node, row: &[&str]) -> Value {
    match node {
        Node::Fixed(value) => value.clone(),
        Node::Text(segments) => {
            let mut text = String::new();
            for segment in segments {
                match segment {
                    Segment::Literal(s) => text.push_str(s),
                    Segment::Column(i) => text.push_str(row.get(*i).copied().unwrap_or("")),
                }
            }
            Value::String(text)
        }
        Node::Array(items) => Value::Array(items.iter().map(|n| render_node(n, row)).collect()),
        Node::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, n)| (k.clone(), render_node(n, row)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// Splits `text` into literals and column references, `format!`-style:
/// `{name}` is a column, `{{` and `}}` are literal braces.
fn parse(text: &str, columns: &[String]) -> Result<Vec<Segment>, TemplateError> {
    let malformed = |problem| TemplateError::Malformed {
        value: text.to_owned(),
        problem,
    };
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => return Err(malformed("a `}` closes no `{`")),
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => return Err(malformed("a `{` is not closed")),
                        Some(c) => name.push(c),
                    }
                }
                let index = columns.iter().position(|c| *c == name).ok_or_else(|| {
                    TemplateError::UnknownColumn {
                        value: text.to_owned(),
                        column: name.clone(),
                        known: columns.join(", "),
                    }
                })?;
                if !literal.is_empty() {
                    segments.push(Segment::Literal(std::mem::take(&mut literal)));
                }
                segments.push(Segment::Column(index));
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        segments.push(Segment::Literal(literal));
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn columns() -> Vec<String> {
        ["to", "name", "order"].map(String::from).to_vec()
    }

    #[test]
    fn fills_columns_anywhere_in_the_value() {
        let spec = json!({
            "message": {"type": "template", "name": "order_update", "body": ["{name}", "#{order}"]},
            "metadata": {"order": "{order}", "count": 3},
            "options": {"ref": "x-{name}-{order}"}
        });
        let template = Template::compile(&spec, &columns()).unwrap();
        let rendered = template.render(&["+254712345678", "Amina", "1234"]);
        assert_eq!(
            rendered,
            json!({
                "message": {"type": "template", "name": "order_update", "body": ["Amina", "#1234"]},
                "metadata": {"order": "1234", "count": 3},
                "options": {"ref": "x-Amina-1234"}
            })
        );
    }

    #[test]
    fn inserts_values_verbatim_and_reads_missing_columns_as_empty() {
        let template = Template::compile(&json!("Hi {name}, {{literal}}"), &columns()).unwrap();
        assert_eq!(
            template.render(&["+1", "{order}"]),
            json!("Hi {order}, {literal}")
        );
        assert_eq!(template.render(&["+1"]), json!("Hi , {literal}"));
    }

    #[test]
    fn rejects_unknown_columns_and_stray_braces() {
        let unknown = Template::compile(&json!(["{nme}"]), &columns()).unwrap_err();
        assert!(
            matches!(&unknown, TemplateError::UnknownColumn { column, .. } if column == "nme"),
            "{unknown}"
        );
        assert!(unknown.to_string().contains("to, name, order"), "{unknown}");
        for bad in ["{name", "name}", "{na{me}"] {
            let error = Template::compile(&json!(bad), &columns()).unwrap_err();
            assert!(
                matches!(error, TemplateError::Malformed { .. }),
                "{bad}: {error}"
            );
        }
    }
}
