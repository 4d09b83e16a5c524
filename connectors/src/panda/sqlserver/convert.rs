//! Cell conversion: a tiberius `ColumnData` to the engine's typed `Value`,
//! aimed at the column's target type — the reference schema's type for a
//! reference column, else the type the server declares. Installs that keep
//! dates or numbers in text columns are coerced here; a value that does not
//! fit is an error string (the row becomes `SourceItem::Unreadable`), never a
//! silent NULL. Errors describe the problem, never the value (it may be PHI).

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use cutover_engine::Value;
use rust_decimal::Decimal;
use tiberius::ColumnData;

use crate::panda::reference::SqlType;

fn year_one() -> NaiveDate {
    NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date")
}

/// Converts one cell. `source_is_fixed_char` trims SQL Server's CHAR/NCHAR padding.
pub fn convert(
    cell: ColumnData<'static>,
    target: Option<SqlType>,
    source_is_fixed_char: bool,
) -> Result<Value, String> {
    let natural = natural_value(cell)?;
    let natural = match natural {
        Value::Text(s) if source_is_fixed_char => Value::Text(s.trim_end_matches(' ').to_string()),
        v => v,
    };
    match target {
        None => Ok(natural),
        Some(target) => coerce(natural, target),
    }
}

/// The value as the server typed it.
fn natural_value(cell: ColumnData<'static>) -> Result<Value, String> {
    Ok(match cell {
        ColumnData::U8(v) => v.map(|v| Value::Int(v.into())).unwrap_or(Value::Null),
        ColumnData::I16(v) => v.map(|v| Value::Int(v.into())).unwrap_or(Value::Null),
        ColumnData::I32(v) => v.map(|v| Value::Int(v.into())).unwrap_or(Value::Null),
        ColumnData::I64(v) => v.map(Value::Int).unwrap_or(Value::Null),
        ColumnData::F32(v) => v.map(|v| Value::Float(v.into())).unwrap_or(Value::Null),
        ColumnData::F64(v) => v.map(Value::Float).unwrap_or(Value::Null),
        ColumnData::Bit(v) => v.map(Value::Bool).unwrap_or(Value::Null),
        ColumnData::String(v) => v
            .map(|s| Value::Text(s.into_owned()))
            .unwrap_or(Value::Null),
        ColumnData::Guid(v) => v.map(|g| Value::Text(g.to_string())).unwrap_or(Value::Null),
        ColumnData::Binary(v) => v
            .map(|b| Value::Bytes(b.into_owned()))
            .unwrap_or(Value::Null),
        ColumnData::Numeric(v) => match v {
            None => Value::Null,
            Some(n) => Value::Decimal(
                Decimal::try_from_i128_with_scale(n.value(), n.scale().into())
                    .map_err(|_| "numeric value out of range".to_string())?,
            ),
        },
        ColumnData::Xml(v) => v.map(|x| Value::Text(x.to_string())).unwrap_or(Value::Null),
        ColumnData::DateTime(v) => match v {
            None => Value::Null,
            Some(dt) => {
                let date = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date")
                    + Duration::days(dt.days().into());
                // 1/300 s ticks
                let nanos = i64::from(dt.seconds_fragments()) * 1_000_000_000 / 300;
                Value::DateTime(utc(
                    date.and_time(NaiveTime::MIN) + Duration::nanoseconds(nanos)
                ))
            }
        },
        ColumnData::SmallDateTime(v) => match v {
            None => Value::Null,
            Some(dt) => {
                let date = NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date")
                    + Duration::days(dt.days().into());
                Value::DateTime(utc(date.and_time(NaiveTime::MIN)
                    + Duration::minutes(dt.seconds_fragments().into())))
            }
        },
        ColumnData::Time(v) => match v {
            None => Value::Null,
            Some(t) => {
                let nanos = t.increments() as i64 * 10i64.pow(9 - u32::from(t.scale()));
                Value::Text(
                    (NaiveTime::MIN + Duration::nanoseconds(nanos))
                        .format("%H:%M:%S%.f")
                        .to_string(),
                )
            }
        },
        ColumnData::Date(v) => v
            .map(|d| Value::Date(year_one() + Duration::days(d.days().into())))
            .unwrap_or(Value::Null),
        ColumnData::DateTime2(v) => match v {
            None => Value::Null,
            Some(dt) => Value::DateTime(utc(datetime2(dt))),
        },
        ColumnData::DateTimeOffset(v) => match v {
            None => Value::Null,
            // The stored datetime2 part of a DATETIMEOFFSET is already UTC.
            Some(dto) => Value::DateTime(utc(datetime2(dto.datetime2()))),
        },
    })
}

fn datetime2(dt: tiberius::time::DateTime2) -> NaiveDateTime {
    let date = year_one() + Duration::days(dt.date().days().into());
    let time = dt.time();
    let nanos = time.increments() as i64 * 10i64.pow(9 - u32::from(time.scale()));
    date.and_time(NaiveTime::MIN) + Duration::nanoseconds(nanos)
}

fn utc(naive: NaiveDateTime) -> DateTime<Utc> {
    DateTime::from_naive_utc_and_offset(naive, Utc)
}

/// Brings a value to the target type, parsing text where an install stores numbers or dates as strings.
pub fn coerce(value: Value, target: SqlType) -> Result<Value, String> {
    use SqlType::*;
    let range = |n: i64| -> Result<Value, String> {
        let (low, high) = match target {
            TinyInt => (0, 255),
            SmallInt => (i16::MIN as i64, i16::MAX as i64),
            Int => (i32::MIN as i64, i32::MAX as i64),
            _ => (i64::MIN, i64::MAX),
        };
        if n < low || n > high {
            return Err(format!("integer out of range for {target}"));
        }
        Ok(Value::Int(n))
    };
    Ok(match (value, target) {
        (Value::Null, _) => Value::Null,
        (Value::Bool(b), Bit) => Value::Bool(b),
        (Value::Int(i), Bit) if i == 0 || i == 1 => Value::Bool(i == 1),
        (Value::Text(s), Bit) => match s.trim() {
            "0" => Value::Bool(false),
            "1" => Value::Bool(true),
            t if t.eq_ignore_ascii_case("true") => Value::Bool(true),
            t if t.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(format!("text is not a {target} (0/1/true/false)")),
        },
        (Value::Int(i), TinyInt | SmallInt | Int | BigInt) => range(i)?,
        (Value::Bool(b), TinyInt | SmallInt | Int | BigInt) => Value::Int(b as i64),
        (Value::Decimal(d), TinyInt | SmallInt | Int | BigInt) if d.fract().is_zero() => {
            range(i64::try_from(d).map_err(|_| format!("number out of range for {target}"))?)?
        }
        (Value::Text(s), TinyInt | SmallInt | Int | BigInt) => range(
            s.trim()
                .parse::<i64>()
                .map_err(|_| format!("text is not an integer ({target})"))?,
        )?,
        (Value::Decimal(d), Decimal { precision, scale }) => check_decimal(d, precision, scale)?,
        (Value::Int(i), Decimal { precision, scale }) => check_decimal(i.into(), precision, scale)?,
        (Value::Float(f), Decimal { precision, scale }) => {
            let d = rust_decimal::Decimal::try_from(f)
                .map_err(|_| format!("float out of range for {target}"))?;
            check_decimal(d.round_dp(scale.into()), precision, scale)?
        }
        (Value::Text(s), Decimal { precision, scale }) => {
            let d = rust_decimal::Decimal::from_str(s.trim())
                .map_err(|_| format!("text is not a decimal number ({target})"))?;
            check_decimal(d, precision, scale)?
        }
        (Value::Text(s), Char(_) | VarChar(_) | NChar(_) | NVarChar(_)) => {
            if let Some(max) = target.max_length() {
                if s.chars().count() > max as usize {
                    return Err(format!("text longer than {target}"));
                }
            }
            Value::Text(s)
        }
        (
            v @ (Value::Int(_) | Value::Decimal(_) | Value::Bool(_) | Value::Float(_)),
            Char(_) | VarChar(_) | NChar(_) | NVarChar(_),
        ) => Value::Text(v.to_string()),
        (Value::Date(d), Date) => Value::Date(d),
        (Value::DateTime(t), Date) if t.time() == NaiveTime::MIN => Value::Date(t.date_naive()),
        (Value::Text(s), Date) => {
            Value::Date(parse_date(&s).ok_or_else(|| format!("text is not a date ({target})"))?)
        }
        (Value::DateTime(t), DateTime2(_)) => Value::DateTime(t),
        (Value::Date(d), DateTime2(_)) => Value::DateTime(utc(d.and_time(NaiveTime::MIN))),
        (Value::Text(s), DateTime2(_)) => Value::DateTime(
            parse_datetime(&s).ok_or_else(|| format!("text is not a timestamp ({target})"))?,
        ),
        (Value::Bytes(b), VarBinary(max)) => {
            if max.is_some_and(|m| b.len() > m as usize) {
                return Err(format!("binary value longer than {target}"));
            }
            Value::Bytes(b)
        }
        // Binary kept as base64 text (as CSV-backed servers and export folders carry it).
        (Value::Text(s), VarBinary(max)) => {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(s.trim())
                .map_err(|_| format!("text is not base64 binary ({target})"))?;
            if max.is_some_and(|m| b.len() > m as usize) {
                return Err(format!("binary value longer than {target}"));
            }
            Value::Bytes(b)
        }
        (other, target) => {
            return Err(format!(
                "a {} value does not convert to {target}",
                kind(&other)
            ))
        }
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "NULL",
        Value::Bool(_) => "bit",
        Value::Int(_) => "integer",
        Value::Decimal(_) => "decimal",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
        Value::Date(_) => "date",
        Value::DateTime(_) => "timestamp",
        Value::Bytes(_) => "binary",
    }
}

fn check_decimal(d: Decimal, precision: u8, scale: u8) -> Result<Value, String> {
    if d.normalize().scale() > u32::from(scale) {
        return Err(format!(
            "more than {scale} decimal places for DECIMAL({precision},{scale})"
        ));
    }
    let integer_digits = d
        .trunc()
        .abs()
        .normalize()
        .to_string()
        .trim_start_matches('0')
        .len() as u32;
    if integer_digits > u32::from(precision - scale) {
        return Err(format!(
            "too many integer digits for DECIMAL({precision},{scale})"
        ));
    }
    Ok(Value::Decimal(d))
}

/// Dates as installs store them in text: ISO, or US `MM/DD/YYYY`.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    ["%Y-%m-%d", "%m/%d/%Y", "%Y%m%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
        .or_else(|| {
            parse_datetime(s)
                .filter(|t| t.time() == NaiveTime::MIN)
                .map(|t| t.date_naive())
        })
}

/// Timestamps as installs store them in text: ISO 8601 with `T` or a space, optional fraction, `Z` or offset; no zone = UTC.
pub fn parse_datetime(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let naive = s.strip_suffix('Z').unwrap_or(s);
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(naive, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_time(NaiveTime::MIN))
    })
    .map(utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn text(s: &str) -> ColumnData<'static> {
        ColumnData::String(Some(Cow::Owned(s.to_string())))
    }

    #[test]
    fn dates_and_numbers_stored_as_text_are_coerced_to_the_reference_type() {
        assert_eq!(
            convert(text("1960-02-29"), Some(SqlType::Date), false).unwrap(),
            Value::Date(NaiveDate::from_ymd_opt(1960, 2, 29).unwrap())
        );
        assert_eq!(
            convert(text("02/29/1960"), Some(SqlType::Date), false).unwrap(),
            Value::Date(NaiveDate::from_ymd_opt(1960, 2, 29).unwrap())
        );
        let at = convert(
            text("2024-05-06 07:08:09.123"),
            Some(SqlType::DateTime2(3)),
            false,
        )
        .unwrap();
        assert_eq!(at.to_string(), "2024-05-06T07:08:09.123Z");
        assert_eq!(
            convert(text(" 42 "), Some(SqlType::Int), false).unwrap(),
            Value::Int(42)
        );
        assert_eq!(
            convert(
                text("12.5"),
                Some(SqlType::Decimal {
                    precision: 5,
                    scale: 2
                }),
                false
            )
            .unwrap(),
            Value::Decimal(Decimal::new(125, 1))
        );
    }

    #[test]
    fn values_that_do_not_fit_are_errors_that_do_not_repeat_the_value() {
        let err = convert(text("not-a-date-Smith"), Some(SqlType::Date), false).unwrap_err();
        assert!(!err.contains("Smith"), "{err}");
        assert!(convert(ColumnData::I32(Some(300)), Some(SqlType::TinyInt), false).is_err());
        assert!(convert(
            text("123.456"),
            Some(SqlType::Decimal {
                precision: 5,
                scale: 2
            }),
            false
        )
        .is_err());
        assert!(convert(
            ColumnData::Binary(Some(Cow::Owned(vec![1]))),
            Some(SqlType::Int),
            false
        )
        .is_err());
    }

    #[test]
    fn char_padding_is_trimmed_and_nulls_stay_null() {
        assert_eq!(
            convert(text("F  "), Some(SqlType::Char(3)), true).unwrap(),
            Value::Text("F".into())
        );
        assert_eq!(
            convert(ColumnData::Date(None), Some(SqlType::Date), false).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn native_temporal_types_become_utc() {
        let dt2 = tiberius::time::DateTime2::new(
            tiberius::time::Date::new(1),
            tiberius::time::Time::new(1500, 3),
        );
        assert_eq!(
            convert(
                ColumnData::DateTime2(Some(dt2)),
                Some(SqlType::DateTime2(3)),
                false
            )
            .unwrap()
            .to_string(),
            "0001-01-02T00:00:01.500Z"
        );
    }
}
