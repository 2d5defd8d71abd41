//! ARM's lenient reading of a request body, as a pass over JSON before serde sees it.
//!
//! ARM (and ACI behind it) reads bodies the way .NET's JSON reader does, and files from Microsoft's own
//! docs rely on it. Driven by a [`Shape`] ([`schema::CONTAINER_GROUP`]) and the request's api-version:
//! - property names match without regard to ASCII case (`memoryInGb` is `memoryInGB`) and are
//!   rewritten to ACI's spelling; two keys naming one property is an error;
//! - a string holding a number where a number goes is that number (`port: '80'`), a number or boolean
//!   where a string goes is its JSON text (`value: 5000` is `"5000"`), `"true"`/`"false"` where a
//!   boolean goes is that boolean;
//! - a key that is no property of that api-version's schema is dropped and listed in
//!   [`Reading::ignored`] (the apiserver answers them in a `Warning` header);
//! - read-only properties (`instanceView`, `provisioningState`, …) are dropped silently.
//!
//! Anything else is left as sent, so a real type error (an object where a number goes) reaches serde,
//! which names its path; properties Berth cannot honour reach validation, which refuses them.

pub mod schema;
mod strict;

use serde_json::{Map, Number, Value};

pub use schema::{Access, Field, Shape};
pub use strict::StrictValue;

use crate::arm::versions;

/// A body read leniently.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The body with ACI's property names and value types.
    pub value: Value,
    /// JSON paths of the keys dropped because the api-version's schema has no such property.
    pub ignored: Vec<String>,
}

/// Why a body cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LenientError {
    /// Two keys of one object name the same property (they differ only in case).
    #[error("the property '{path}' is given more than once")]
    Duplicate {
        /// The property's JSON path.
        path: String,
    },
}

impl LenientError {
    /// The JSON path at fault.
    pub fn path(&self) -> &str {
        match self {
            LenientError::Duplicate { path } => path,
        }
    }
}

/// Reads `value` as `shape` for api-version `version` (one of [`versions::API_VERSIONS`]).
pub fn read(value: Value, shape: &Shape, version: &str) -> Result<Reading, LenientError> {
    let mut ignored = Vec::new();
    let value = walk(value, shape, version, "", &mut ignored)?;
    Ok(Reading { value, ignored })
}

/// Removes from an answer the properties `version`'s schema does not have, so a client sees its own
/// api-version's shape.
pub fn prune(value: &mut Value, shape: &Shape, version: &str) {
    match (shape, value) {
        (Shape::Object(fields), Value::Object(map)) => {
            map.retain(|key, inner| match fields.iter().find(|f| f.name == key) {
                Some(field) if available(field, version) => {
                    prune(inner, &field.shape, version);
                    true
                }
                Some(_) => false,
                None => true,
            });
        }
        (Shape::List(item), Value::Array(items)) => {
            for inner in items {
                prune(inner, item, version);
            }
        }
        _ => {}
    }
}

fn available(field: &Field, version: &str) -> bool {
    match field.access {
        Access::Always | Access::ReadOnly => true,
        Access::Since(feature) => versions::has(version, feature),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn walk(
    value: Value,
    shape: &Shape,
    version: &str,
    path: &str,
    ignored: &mut Vec<String>,
) -> Result<Value, LenientError> {
    Ok(match (shape, value) {
        (_, Value::Null) => Value::Null,
        (Shape::Object(fields), Value::Object(map)) => {
            let mut out = Map::new();
            for (key, inner) in map {
                let Some(field) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(&key)) else {
                    ignored.push(join(path, &key));
                    continue;
                };
                let here = join(path, field.name);
                if out.contains_key(field.name) {
                    return Err(LenientError::Duplicate { path: here });
                }
                match field.access {
                    Access::ReadOnly => {
                        // Kept as a marker so a second spelling is still a duplicate; removed below.
                        out.insert(field.name.to_owned(), Value::Null);
                    }
                    Access::Since(feature) if !versions::has(version, feature) => {
                        ignored.push(here);
                        out.insert(field.name.to_owned(), Value::Null);
                    }
                    _ => {
                        let inner = walk(inner, &field.shape, version, &here, ignored)?;
                        out.insert(field.name.to_owned(), inner);
                    }
                }
            }
            out.retain(|key, _| {
                fields
                    .iter()
                    .find(|f| f.name == key)
                    .is_some_and(|f| f.access != Access::ReadOnly && available(f, version))
            });
            Value::Object(out)
        }
        (Shape::List(item), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, inner)| walk(inner, item, version, &format!("{path}[{i}]"), ignored))
                .collect::<Result<_, _>>()?,
        ),
        (Shape::TextMap, Value::Object(map)) => Value::Object(
            map.into_iter()
                .map(|(key, inner)| (key, text(inner)))
                .collect(),
        ),
        (Shape::Text, value) => text(value),
        (Shape::Number, Value::String(s)) => number(&s).unwrap_or(Value::String(s)),
        (Shape::Integer, Value::String(s)) => integer(&s).unwrap_or(Value::String(s)),
        (Shape::Integer, Value::Number(n)) => whole(&n).unwrap_or(Value::Number(n)),
        (Shape::Boolean, Value::String(s)) => boolean(&s).unwrap_or(Value::String(s)),
        (_, value) => value,
    })
}

/// A scalar where a string goes becomes its JSON text; anything else is left for serde to refuse.
fn text(value: Value) -> Value {
    match value {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        other => other,
    }
}

fn number(s: &str) -> Option<Value> {
    let parsed: f64 = s.trim().parse().ok()?;
    // Rust also parses "inf" and "NaN"; JSON has no such numbers.
    let n = Number::from_f64(parsed).filter(|_| parsed.is_finite())?;
    Some(Value::Number(n))
}

fn integer(s: &str) -> Option<Value> {
    let parsed: i64 = s.trim().parse().ok()?;
    Some(Value::Number(parsed.into()))
}

/// `80.0` where an integer goes is 80; `80.5` stays and is refused.
fn whole(n: &Number) -> Option<Value> {
    if n.is_i64() || n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    let in_range = f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64;
    in_range.then(|| Value::Number((f as i64).into()))
}

fn boolean(s: &str) -> Option<Value> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
