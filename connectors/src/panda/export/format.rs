//! The export format's field encoding (`panda/export-format.md`), both ways:
//! how a typed [`Value`] is written into a CSV field and how a field is read
//! back as the value of its declared column type.
//!
//! NULL is an empty field and an empty string is a quoted `""`; the writer
//! here decides quoting itself for that reason, and the reader learns which
//! fields were quoted-empty from [`super::quoting::QuotedEmptyMarker`].

use std::borrow::Cow;
use std::str::FromStr;

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use cutover_engine::Value;
use rust_decimal::Decimal;

use crate::panda::reference::SqlType;

/// DATETIME2 as the generator writes it (ISO 8601, milliseconds, no zone = UTC).
pub const DATETIME_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f";

/// The text of a value in a CSV field, before quoting. `None` is NULL (an empty field).
pub fn field_text(value: &Value) -> Option<Cow<'_, str>> {
    Some(match value {
        Value::Null => return None,
        Value::Bool(b) => Cow::Borrowed(if *b { "1" } else { "0" }),
        Value::Int(i) => Cow::Owned(i.to_string()),
        Value::Decimal(d) => Cow::Owned(d.to_string()),
        Value::Float(f) => Cow::Owned(f.to_string()),
        Value::Text(s) => Cow::Borrowed(s.as_str()),
        Value::Date(d) => Cow::Owned(d.format("%Y-%m-%d").to_string()),
        Value::DateTime(t) => Cow::Owned(t.format(DATETIME_FORMAT).to_string()),
        Value::Bytes(b) => Cow::Owned(base64::engine::general_purpose::STANDARD.encode(b)),
    })
}

/// Appends one CSV record (RFC 4180, CRLF) for `values` to `out`.
/// Empty strings are written `""` so they stay distinct from NULL.
pub fn write_record<'a>(out: &mut Vec<u8>, values: impl IntoIterator<Item = Option<Cow<'a, str>>>) {
    for (i, field) in values.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let Some(text) = field else { continue };
        let needs_quotes = text.is_empty()
            || text
                .bytes()
                .any(|b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if needs_quotes {
            out.push(b'"');
            for b in text.bytes() {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Reads a non-NULL field as a value of `sql_type` (`None` = a column outside
/// the reference, carried as text). The error says why the value does not fit;
/// it never repeats the value (it may be patient data).
pub fn parse_field(sql_type: Option<SqlType>, text: &str) -> Result<Value, String> {
    let Some(sql_type) = sql_type else {
        return Ok(Value::Text(text.to_string()));
    };
    match sql_type {
        SqlType::Bit => match text.trim() {
            "0" => Ok(Value::Bool(false)),
            "1" => Ok(Value::Bool(true)),
            t if t.eq_ignore_ascii_case("false") => Ok(Value::Bool(false)),
            t if t.eq_ignore_ascii_case("true") => Ok(Value::Bool(true)),
            _ => Err("BIT must be 0, 1, true or false".into()),
        },
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            let (low, high) = match sql_type {
                SqlType::TinyInt => (0, 255),
                SqlType::SmallInt => (i16::MIN as i64, i16::MAX as i64),
                SqlType::Int => (i32::MIN as i64, i32::MAX as i64),
                _ => (i64::MIN, i64::MAX),
            };
            let n: i64 = text
                .trim()
                .parse()
                .map_err(|_| format!("not an integer ({sql_type})"))?;
            if n < low || n > high {
                return Err(format!(
                    "integer out of range for {sql_type} ({low}..={high})"
                ));
            }
            Ok(Value::Int(n))
        }
        SqlType::Decimal { precision, scale } => {
            let t = text.trim();
            if !t
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+')
            {
                return Err(format!(
                    "not a plain decimal number ({sql_type}; '.' as the point, no separators)"
                ));
            }
            let d =
                Decimal::from_str(t).map_err(|_| format!("not a decimal number ({sql_type})"))?;
            if d.normalize().scale() > scale as u32 {
                return Err(format!("more than {scale} decimal places for {sql_type}"));
            }
            let integer_digits = d
                .trunc()
                .abs()
                .normalize()
                .to_string()
                .trim_start_matches('0')
                .len() as u32;
            if integer_digits > (precision - scale) as u32 {
                return Err(format!("too many integer digits for {sql_type}"));
            }
            Ok(Value::Decimal(d))
        }
        SqlType::Char(_) | SqlType::VarChar(_) | SqlType::NChar(_) | SqlType::NVarChar(_) => {
            if let Some(max) = sql_type.max_length() {
                let length = text.chars().count();
                if length > max as usize {
                    return Err(format!("{length} characters do not fit {sql_type}"));
                }
            }
            Ok(Value::Text(text.to_string()))
        }
        SqlType::Date => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(Value::Date)
            .map_err(|_| "not a date (YYYY-MM-DD)".to_string()),
        SqlType::DateTime2(_) => parse_datetime(text.trim())
            .map(Value::DateTime)
            .ok_or_else(|| "not an ISO 8601 timestamp (YYYY-MM-DDTHH:MM:SS[.fff][Z])".to_string()),
        SqlType::VarBinary(max) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|_| "not standard padded base64".to_string())?;
            if let Some(max) = max {
                if bytes.len() > max as usize {
                    return Err(format!("{} bytes do not fit {sql_type}", bytes.len()));
                }
            }
            Ok(Value::Bytes(bytes))
        }
    }
}

/// ISO 8601 with `T` or a space, optional fraction, optional `Z` or offset; no zone = UTC.
fn parse_datetime(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(with_zone) = DateTime::parse_from_rfc3339(text) {
        return Some(with_zone.with_timezone(&Utc));
    }
    let naive = text.strip_suffix('Z').unwrap_or(text);
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
    .map(|n| Utc.from_utc_datetime(&n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(values: &[Value]) -> String {
        let mut out = Vec::new();
        write_record(&mut out, values.iter().map(field_text));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn null_and_empty_string_are_written_differently() {
        let line = record(&[
            Value::Null,
            Value::Text(String::new()),
            Value::Text("a,\"b\"".into()),
            Value::Int(3),
        ]);
        assert_eq!(line, ",\"\",\"a,\"\"b\"\"\",3\r\n");
    }

    #[test]
    fn fields_parse_per_reference_type() {
        let d = |s: &str| Value::Decimal(Decimal::from_str(s).unwrap());
        assert_eq!(
            parse_field(Some(SqlType::Bit), "true").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            parse_field(
                Some(SqlType::Decimal {
                    precision: 5,
                    scale: 2
                }),
                "12.50"
            )
            .unwrap(),
            d("12.5")
        );
        assert!(parse_field(
            Some(SqlType::Decimal {
                precision: 5,
                scale: 2
            }),
            "1234.5"
        )
        .is_err());
        assert!(parse_field(
            Some(SqlType::Decimal {
                precision: 5,
                scale: 2
            }),
            "1.234"
        )
        .is_err());
        assert!(parse_field(
            Some(SqlType::Decimal {
                precision: 12,
                scale: 2
            }),
            "1,200.00"
        )
        .is_err());
        assert!(parse_field(Some(SqlType::TinyInt), "256")
            .unwrap_err()
            .contains("out of range"));
        assert_eq!(
            parse_field(Some(SqlType::SmallInt), "-1").unwrap(),
            Value::Int(-1)
        );
        let at = Utc.with_ymd_and_hms(2024, 3, 15, 10, 0, 0).unwrap();
        for text in [
            "2024-03-15T10:00:00.000",
            "2024-03-15T10:00:00Z",
            "2024-03-15 10:00:00",
            "2024-03-15T11:00:00+01:00",
        ] {
            assert_eq!(
                parse_field(Some(SqlType::DateTime2(3)), text).unwrap(),
                Value::DateTime(at),
                "{text}"
            );
        }
        assert!(parse_field(Some(SqlType::Date), "03/15/2024").is_err());
        assert!(parse_field(Some(SqlType::NVarChar(Some(3))), "abcd").is_err());
        assert_eq!(
            parse_field(Some(SqlType::NVarChar(Some(3))), "äöü").unwrap(),
            Value::Text("äöü".into())
        );
        assert_eq!(
            parse_field(Some(SqlType::VarBinary(None)), "AP8=").unwrap(),
            Value::Bytes(vec![0, 255])
        );
        assert!(parse_field(Some(SqlType::VarBinary(None)), "AP8").is_err());
        assert_eq!(parse_field(None, "x").unwrap(), Value::Text("x".into()));
    }
}
