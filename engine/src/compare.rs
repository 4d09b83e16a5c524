//! Comparing what we sent with what a destination holds, field by field.
//!
//! Shared by `reconcile`, the sample report and the rollback drift check. The
//! destination's side comes from [`crate::ReadDestination::read_as_sent`], so
//! both sides are in the vocabulary of the sent body (dotted field paths).

use serde_json::{Map, Value};

use crate::ports::flatten_paths;

/// One field that differs.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDifference {
    /// Dotted path in the sent body (`customFields.Chart_Number`).
    pub path: String,
    pub sent: Value,
    /// `Value::Null` when the destination does not hold the field.
    pub held: Value,
}

/// Whether a held value is the one sent: equal JSON, numbers equal as numbers
/// (`1` and `1.0`), and text that differs only in surrounding whitespace.
pub fn values_match(sent: &Value, held: &Value) -> bool {
    match (sent, held) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(a), Value::String(b)) | (Value::String(b), Value::Number(a)) => {
            b.trim().parse::<f64>().ok() == a.as_f64()
        }
        (Value::String(a), Value::String(b)) => a.trim() == b.trim(),
        (a, b) => a == b,
    }
}

/// The fields of `sent` whose held value differs (paths of `sent`, flattened).
pub fn field_differences(
    sent: &Map<String, Value>,
    held: &Map<String, Value>,
) -> Vec<FieldDifference> {
    let mut out = Vec::new();
    flatten_paths("", &Value::Object(sent.clone()), &mut |path, value| {
        let held_value = held.get(path).cloned().unwrap_or(Value::Null);
        if !values_match(value, &held_value) {
            out.push(FieldDifference {
                path: path.to_string(),
                sent: value.clone(),
                held: held_value,
            });
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_and_padding_are_not_differences_but_values_are() {
        assert!(values_match(&json!(1), &json!(1.0)));
        assert!(values_match(&json!("40"), &json!(40)));
        assert!(values_match(&json!("Ann "), &json!("Ann")));
        assert!(!values_match(&json!("Ann"), &json!("Anne")));
        assert!(!values_match(&json!("x"), &Value::Null));
        let sent = json!({"a": "1", "b": {"c": 2}})
            .as_object()
            .unwrap()
            .clone();
        let held = json!({"a": "1", "b.c": 3}).as_object().unwrap().clone();
        let diffs = field_differences(&sent, &held);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].path, "b.c");
        assert_eq!(diffs[0].held, json!(3));
    }
}
