//! Twenty's REST `filter` language, as much of it as the emulator answers:
//! `field[op]:value`, dotted sub-fields, comma = AND, `and(…)`, `or(…)`, `not(…)`;
//! operators `eq neq in is gt gte lt lte like ilike startsWith endsWith containsAny`.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Cond {
        path: String,
        op: String,
        value: String,
    },
}

const OPERATORS: &[&str] = &[
    "eq",
    "neq",
    "in",
    "is",
    "gt",
    "gte",
    "lt",
    "lte",
    "like",
    "ilike",
    "startsWith",
    "endsWith",
    "containsAny",
];

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn error(&self, what: &str) -> String {
        format!("Invalid filter at character {}: {what}", self.at)
    }

    fn list(&mut self) -> Result<Vec<Filter>, String> {
        let mut items = vec![self.expr()?];
        while self.peek() == Some(b',') {
            self.at += 1;
            items.push(self.expr()?);
        }
        Ok(items)
    }

    fn expr(&mut self) -> Result<Filter, String> {
        for (word, kind) in [("and(", 0), ("or(", 1), ("not(", 2)] {
            if self.text[self.at..].starts_with(word.as_bytes()) {
                self.at += word.len();
                let items = self.list()?;
                if self.peek() != Some(b')') {
                    return Err(self.error("expected ')'"));
                }
                self.at += 1;
                return Ok(match kind {
                    0 => Filter::And(items),
                    1 => Filter::Or(items),
                    _ if items.len() == 1 => {
                        Filter::Not(Box::new(items.into_iter().next().expect("one")))
                    }
                    _ => return Err(self.error("not() takes one condition")),
                });
            }
        }
        self.cond()
    }

    fn cond(&mut self) -> Result<Filter, String> {
        let start = self.at;
        while self.peek().is_some_and(|c| c != b'[') {
            self.at += 1;
        }
        let path = String::from_utf8_lossy(&self.text[start..self.at]).to_string();
        if path.is_empty() || self.peek() != Some(b'[') {
            return Err(self.error("expected field[op]:value"));
        }
        self.at += 1;
        let op_start = self.at;
        while self.peek().is_some_and(|c| c != b']') {
            self.at += 1;
        }
        let op = String::from_utf8_lossy(&self.text[op_start..self.at]).to_string();
        if !OPERATORS.contains(&op.as_str()) {
            return Err(format!("Invalid filter: unknown operator \"{op}\""));
        }
        self.at += 1;
        if self.peek() != Some(b':') {
            return Err(self.error("expected ':' after the operator"));
        }
        self.at += 1;
        let value_start = self.at;
        let (mut depth, mut quoted) = (0i32, false);
        while let Some(c) = self.peek() {
            match c {
                b'"' => quoted = !quoted,
                b'[' if !quoted => depth += 1,
                b']' if !quoted => depth -= 1,
                b',' | b')' if !quoted && depth == 0 => break,
                _ => {}
            }
            self.at += 1;
        }
        let value = String::from_utf8_lossy(&self.text[value_start..self.at]).to_string();
        Ok(Filter::Cond { path, op, value })
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut parser = Parser {
            text: text.as_bytes(),
            at: 0,
        };
        let items = parser.list()?;
        if parser.at != text.len() {
            return Err(parser.error("unexpected trailing text"));
        }
        Ok(if items.len() == 1 {
            items.into_iter().next().expect("one")
        } else {
            Filter::And(items)
        })
    }

    /// True when some condition reads `deletedAt` (then soft-deleted rows are visible).
    pub fn mentions_deleted_at(&self) -> bool {
        match self {
            Filter::And(items) | Filter::Or(items) => items.iter().any(Filter::mentions_deleted_at),
            Filter::Not(inner) => inner.mentions_deleted_at(),
            Filter::Cond { path, .. } => path == "deletedAt",
        }
    }

    /// The ids a filter is limited to, when every row it can match must have one of
    /// them (`id[eq]`, `id[in]`, or an `and` holding one): the store then reads
    /// those rows through its id index instead of matching every row.
    pub fn only_ids(&self) -> Option<Vec<String>> {
        match self {
            Filter::Cond { path, op, value } if path == "id" => match op.as_str() {
                "eq" => Some(vec![unquote(value)]),
                "in" => Some(
                    value
                        .trim()
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                        .split(',')
                        .map(unquote)
                        .filter(|s| !s.is_empty())
                        .collect(),
                ),
                _ => None,
            },
            Filter::And(items) => items.iter().find_map(Filter::only_ids),
            _ => None,
        }
    }

    pub fn matches(&self, row: &Map<String, Value>) -> bool {
        match self {
            Filter::And(items) => items.iter().all(|f| f.matches(row)),
            Filter::Or(items) => items.iter().any(|f| f.matches(row)),
            Filter::Not(inner) => !inner.matches(row),
            Filter::Cond { path, op, value } => {
                let mut current = row.get(path.split('.').next().unwrap_or(""));
                for part in path.split('.').skip(1) {
                    current = current.and_then(|v| v.get(part));
                }
                condition(current.unwrap_or(&Value::Null), op, value)
            }
        }
    }
}

fn unquote(raw: &str) -> String {
    let raw = raw.trim();
    raw.strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw)
        .to_string()
}

fn as_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn compare(field: &Value, raw: &str) -> Option<std::cmp::Ordering> {
    let target = unquote(raw);
    if let (Some(a), Ok(b)) = (field.as_f64(), target.parse::<f64>()) {
        return a.partial_cmp(&b);
    }
    as_text(field).map(|a| a.as_str().cmp(target.as_str()))
}

fn like(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            if !rest.starts_with(part) {
                return false;
            }
            rest = &rest[part.len()..];
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else if let Some(found) = rest.find(part) {
            rest = &rest[found + part.len()..];
        } else {
            return false;
        }
    }
    true
}

fn condition(field: &Value, op: &str, raw: &str) -> bool {
    use std::cmp::Ordering::*;
    match op {
        "eq" => compare(field, raw) == Some(Equal),
        "neq" => compare(field, raw) != Some(Equal),
        "gt" => compare(field, raw) == Some(Greater),
        "gte" => matches!(compare(field, raw), Some(Greater | Equal)),
        "lt" => compare(field, raw) == Some(Less),
        "lte" => matches!(compare(field, raw), Some(Less | Equal)),
        "is" => match unquote(raw).as_str() {
            "NULL" => field.is_null(),
            "NOT_NULL" => !field.is_null(),
            _ => false,
        },
        "in" | "containsAny" => {
            let inner = raw.trim().trim_start_matches('[').trim_end_matches(']');
            let wanted: Vec<String> = inner
                .split(',')
                .map(unquote)
                .filter(|s| !s.is_empty())
                .collect();
            match field {
                Value::Array(items) => items
                    .iter()
                    .filter_map(as_text)
                    .any(|t| wanted.contains(&t)),
                other => as_text(other).is_some_and(|t| wanted.contains(&t)),
            }
        }
        "like" => as_text(field).is_some_and(|t| like(&t, &unquote(raw))),
        "ilike" => {
            as_text(field).is_some_and(|t| like(&t.to_lowercase(), &unquote(raw).to_lowercase()))
        }
        "startsWith" => as_text(field).is_some_and(|t| t.starts_with(&unquote(raw))),
        "endsWith" => as_text(field).is_some_and(|t| t.ends_with(&unquote(raw))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Map<String, Value> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn parses_and_evaluates_the_filters_the_client_sends() {
        let r = row(
            json!({"id": "a1", "deletedAt": null, "emails": {"primaryEmail": "x@y.z"}, "n": 5}),
        );
        assert!(Filter::parse("id[eq]:a1").unwrap().matches(&r));
        assert!(Filter::parse("id[in]:[\"b\",\"a1\"]").unwrap().matches(&r));
        assert!(!Filter::parse("id[in]:[\"b\",\"c\"]").unwrap().matches(&r));
        let f = Filter::parse("and(id[eq]:a1,deletedAt[is]:NOT_NULL)").unwrap();
        assert!(f.mentions_deleted_at() && !f.matches(&r));
        assert!(Filter::parse("emails.primaryEmail[eq]:x@y.z,n[gte]:5")
            .unwrap()
            .matches(&r));
        assert!(Filter::parse("or(n[gt]:9,not(id[is]:NULL))")
            .unwrap()
            .matches(&r));
        assert!(Filter::parse("emails.primaryEmail[ilike]:\"%Y.Z\"")
            .unwrap()
            .matches(&r));
        assert!(Filter::parse("id[bogus]:1").is_err());
        assert!(Filter::parse("and(id[eq]:1").is_err());
    }
}
