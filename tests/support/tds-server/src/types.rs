//! Column types: the SQL Server type a SQLite column's declared type names,
//! its TDS TYPE_INFO, and the wire encoding of SQLite values in that type.
//!
//! The database contract declares each column with its SQL Server type text
//! (`NVARCHAR(100)`, `DECIMAL(5,2)`, `DATETIME2(3)`, `VARBINARY(-1)` for MAX),
//! so the server can announce exactly what a SQL Server would.

use std::str::FromStr;

use chrono::{NaiveDate, NaiveDateTime, Timelike};
use rusqlite::types::ValueRef;
use rust_decimal::Decimal;

/// SQL_Latin1_General_CP1_CI_AS, as SQL Server sends it in TYPE_INFO.
pub const COLLATION: [u8; 5] = [0x09, 0x04, 0xD0, 0x00, 0x34];

/// Largest chunk of a PLP (MAX) value; small enough that a 10 kB value spans packets in several chunks.
const PLP_CHUNK: usize = 4000;

/// A SQL Server column type the server can announce. `None` lengths are MAX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Bit,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    Float,
    Decimal { precision: u8, scale: u8 },
    Char(u16),
    VarChar(Option<u16>),
    NChar(u16),
    NVarChar(Option<u16>),
    Date,
    DateTime2(u8),
    VarBinary(Option<u16>),
}

impl ColType {
    /// Parses a declared type (`NVARCHAR(100)`, `DECIMAL(5,2)`, `VARBINARY(-1)`).
    pub fn parse(declared: &str) -> Option<ColType> {
        let compact: String = declared
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_ascii_uppercase();
        let (name, args) = match compact.find('(') {
            Some(open) if compact.ends_with(')') => (
                &compact[..open],
                Some(&compact[open + 1..compact.len() - 1]),
            ),
            Some(_) => return None,
            None => (compact.as_str(), None),
        };
        let length = |args: Option<&str>| -> Option<Option<u16>> {
            match args {
                None => Some(Some(1)),
                Some("MAX") | Some("-1") => Some(None),
                Some(n) => n.parse::<u16>().ok().map(Some),
            }
        };
        Some(match name {
            "BIT" => ColType::Bit,
            "TINYINT" => ColType::TinyInt,
            "SMALLINT" => ColType::SmallInt,
            "INT" | "INTEGER" => ColType::Int,
            "BIGINT" => ColType::BigInt,
            "FLOAT" | "REAL" | "DOUBLE" => ColType::Float,
            "DECIMAL" | "NUMERIC" => {
                let (p, s) = match args {
                    None => (18, 0),
                    Some(a) => {
                        let mut it = a.split(',');
                        let p = it.next()?.parse().ok()?;
                        let s = it.next().unwrap_or("0").parse().ok()?;
                        (p, s)
                    }
                };
                if !(1..=38).contains(&p) || s > p {
                    return None;
                }
                ColType::Decimal {
                    precision: p,
                    scale: s,
                }
            }
            "CHAR" => ColType::Char(length(args)??),
            "VARCHAR" => ColType::VarChar(length(args)?),
            "NCHAR" => ColType::NChar(length(args)??),
            "NVARCHAR" | "TEXT" => {
                ColType::NVarChar(if name == "TEXT" { None } else { length(args)? })
            }
            "DATE" => ColType::Date,
            "DATETIME2" | "DATETIME" => ColType::DateTime2(match args {
                None => 7,
                Some(p) => p.parse().ok().filter(|p| *p <= 7)?,
            }),
            "VARBINARY" | "BLOB" => {
                ColType::VarBinary(if name == "BLOB" { None } else { length(args)? })
            }
            _ => return None,
        })
    }

    /// The type for a result column SQLite cannot name (an expression): from its first value.
    pub fn infer(value: ValueRef<'_>) -> ColType {
        match value {
            ValueRef::Integer(_) => ColType::BigInt,
            ValueRef::Real(_) => ColType::Float,
            ValueRef::Blob(_) => ColType::VarBinary(None),
            // MAX: a later row's text may be longer than the first one's.
            ValueRef::Text(_) | ValueRef::Null => ColType::NVarChar(None),
        }
    }

    /// INFORMATION_SCHEMA.COLUMNS spelling: (DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE, DATETIME_PRECISION).
    pub fn catalog(
        self,
    ) -> (
        &'static str,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ) {
        let len = |n: Option<u16>| Some(n.map(i64::from).unwrap_or(-1));
        match self {
            ColType::Bit => ("bit", None, None, None, None),
            ColType::TinyInt => ("tinyint", None, Some(3), Some(0), None),
            ColType::SmallInt => ("smallint", None, Some(5), Some(0), None),
            ColType::Int => ("int", None, Some(10), Some(0), None),
            ColType::BigInt => ("bigint", None, Some(19), Some(0), None),
            ColType::Float => ("float", None, Some(53), None, None),
            ColType::Decimal { precision, scale } => (
                "decimal",
                None,
                Some(precision.into()),
                Some(scale.into()),
                None,
            ),
            ColType::Char(n) => ("char", len(Some(n)), None, None, None),
            ColType::VarChar(n) => ("varchar", len(n), None, None, None),
            ColType::NChar(n) => ("nchar", len(Some(n)), None, None, None),
            ColType::NVarChar(n) => ("nvarchar", len(n), None, None, None),
            ColType::Date => ("date", None, None, None, Some(0)),
            ColType::DateTime2(p) => ("datetime2", None, None, None, Some(p.into())),
            ColType::VarBinary(n) => ("varbinary", len(n), None, None, None),
        }
    }

    fn decimal_bytes(precision: u8) -> u8 {
        match precision {
            0..=9 => 5,
            10..=19 => 9,
            20..=28 => 13,
            _ => 17,
        }
    }

    fn datetime2_time_bytes(scale: u8) -> usize {
        match scale {
            0..=2 => 3,
            3..=4 => 4,
            _ => 5,
        }
    }

    /// TYPE_INFO as it appears in COLMETADATA (nullable N-forms throughout).
    pub fn write_type_info(self, out: &mut Vec<u8>) {
        let sized = |out: &mut Vec<u8>, ty: u8, bytes: Option<u32>, collation: bool| {
            out.push(ty);
            let max = bytes.map(|b| b.min(8000) as u16).unwrap_or(0xFFFF);
            out.extend_from_slice(&max.to_le_bytes());
            if collation {
                out.extend_from_slice(&COLLATION);
            }
        };
        match self {
            ColType::Bit => out.extend_from_slice(&[0x68, 1]),
            ColType::TinyInt => out.extend_from_slice(&[0x26, 1]),
            ColType::SmallInt => out.extend_from_slice(&[0x26, 2]),
            ColType::Int => out.extend_from_slice(&[0x26, 4]),
            ColType::BigInt => out.extend_from_slice(&[0x26, 8]),
            ColType::Float => out.extend_from_slice(&[0x6D, 8]),
            ColType::Decimal { precision, scale } => {
                out.extend_from_slice(&[0x6A, Self::decimal_bytes(precision), precision, scale])
            }
            ColType::Char(n) => sized(out, 0xAF, Some(n.into()), true),
            ColType::VarChar(n) => sized(out, 0xA7, n.map(u32::from), true),
            ColType::NChar(n) => sized(out, 0xEF, Some(u32::from(n) * 2), true),
            ColType::NVarChar(n) => sized(out, 0xE7, n.map(|n| u32::from(n) * 2), true),
            ColType::Date => out.push(0x28),
            ColType::DateTime2(p) => out.extend_from_slice(&[0x2A, p]),
            ColType::VarBinary(n) => sized(out, 0xA5, n.map(u32::from), false),
        }
    }

    fn is_plp(self) -> bool {
        matches!(
            self,
            ColType::VarChar(None) | ColType::NVarChar(None) | ColType::VarBinary(None)
        )
    }

    /// Appends the NULL form of this type.
    pub fn write_null(self, out: &mut Vec<u8>) {
        if self.is_plp() {
            out.extend_from_slice(&u64::MAX.to_le_bytes());
            return;
        }
        match self {
            ColType::Char(_)
            | ColType::VarChar(_)
            | ColType::NChar(_)
            | ColType::NVarChar(_)
            | ColType::VarBinary(_) => out.extend_from_slice(&0xFFFFu16.to_le_bytes()),
            _ => out.push(0),
        }
    }

    /// Appends `value` encoded as this type; NULL gives the NULL form.
    /// Errors say why the stored value does not fit (the server turns that into a conversion error).
    pub fn write_value(self, value: ValueRef<'_>, out: &mut Vec<u8>) -> Result<(), String> {
        if let ValueRef::Null = value {
            self.write_null(out);
            return Ok(());
        }
        match self {
            ColType::Bit => {
                let v = as_i64(value)?;
                out.extend_from_slice(&[1, (v != 0) as u8]);
            }
            ColType::TinyInt | ColType::SmallInt | ColType::Int | ColType::BigInt => {
                let v = as_i64(value)?;
                let (len, min, max) = match self {
                    ColType::TinyInt => (1usize, 0, 255),
                    ColType::SmallInt => (2, i16::MIN as i64, i16::MAX as i64),
                    ColType::Int => (4, i32::MIN as i64, i32::MAX as i64),
                    _ => (8, i64::MIN, i64::MAX),
                };
                if v < min || v > max {
                    return Err(format!("arithmetic overflow converting {v} to {self:?}"));
                }
                out.push(len as u8);
                out.extend_from_slice(&v.to_le_bytes()[..len]);
            }
            ColType::Float => {
                let v = match value {
                    ValueRef::Real(r) => r,
                    ValueRef::Integer(i) => i as f64,
                    ValueRef::Text(t) => std::str::from_utf8(t)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .ok_or("not a number")?,
                    _ => return Err("a blob is not a number".into()),
                };
                out.push(8);
                out.extend_from_slice(&v.to_le_bytes());
            }
            ColType::Decimal { precision, scale } => {
                let mut d = match value {
                    ValueRef::Integer(i) => Decimal::from(i),
                    ValueRef::Real(r) => Decimal::try_from(r).map_err(|e| e.to_string())?,
                    ValueRef::Text(t) => {
                        let s = std::str::from_utf8(t).map_err(|e| e.to_string())?;
                        Decimal::from_str(s.trim())
                            .map_err(|_| format!("error converting {s:?} to numeric"))?
                    }
                    ValueRef::Blob(_) => return Err("a blob is not a number".into()),
                    ValueRef::Null => unreachable!("handled above"),
                };
                d.rescale(scale.into());
                let mantissa = d.mantissa();
                let magnitude = mantissa.unsigned_abs();
                if magnitude >= 10u128.pow(precision.into()) {
                    return Err(format!(
                        "arithmetic overflow converting {d} to DECIMAL({precision},{scale})"
                    ));
                }
                let len = Self::decimal_bytes(precision);
                out.push(len);
                out.push(if mantissa < 0 { 0 } else { 1 });
                out.extend_from_slice(&magnitude.to_le_bytes()[..(len - 1) as usize]);
            }
            ColType::Char(_) | ColType::VarChar(_) => {
                let text = as_text(value)?;
                let mut bytes: Vec<u8> = text
                    .chars()
                    .map(|c| {
                        if (c as u32) < 0x100 {
                            c as u32 as u8
                        } else {
                            b'?'
                        }
                    })
                    .collect();
                if let ColType::Char(n) = self {
                    bytes.resize((n as usize).max(bytes.len()), b' ');
                }
                self.write_sized(&bytes, out)?;
            }
            ColType::NChar(_) | ColType::NVarChar(_) => {
                let text = as_text(value)?;
                let mut units: Vec<u16> = text.encode_utf16().collect();
                if let ColType::NChar(n) = self {
                    units.resize((n as usize).max(units.len()), b' ' as u16);
                }
                let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
                self.write_sized(&bytes, out)?;
            }
            ColType::VarBinary(_) => match value {
                ValueRef::Blob(b) => self.write_sized(b, out)?,
                _ => return Err("only a blob converts to varbinary".into()),
            },
            ColType::Date => {
                let date = parse_date(as_text(value)?)?;
                out.push(3);
                out.extend_from_slice(&days_since_year_one(date).to_le_bytes()[..3]);
            }
            ColType::DateTime2(scale) => {
                let at = parse_datetime(as_text(value)?)?;
                let time_len = Self::datetime2_time_bytes(scale);
                out.push((time_len + 3) as u8);
                let nanos = u64::from(at.num_seconds_from_midnight()) * 1_000_000_000
                    + u64::from(at.nanosecond() % 1_000_000_000);
                let increments = nanos / 10u64.pow(9 - u32::from(scale));
                out.extend_from_slice(&increments.to_le_bytes()[..time_len]);
                out.extend_from_slice(&days_since_year_one(at.date()).to_le_bytes()[..3]);
            }
        }
        Ok(())
    }

    /// A length-prefixed value, or PLP chunks for MAX types.
    fn write_sized(self, bytes: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if self.is_plp() {
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            for chunk in bytes.chunks(PLP_CHUNK) {
                out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                out.extend_from_slice(chunk);
            }
            out.extend_from_slice(&0u32.to_le_bytes());
            return Ok(());
        }
        if bytes.len() > 8000 {
            return Err(format!(
                "string or binary data would be truncated ({} bytes)",
                bytes.len()
            ));
        }
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
        Ok(())
    }
}

fn as_i64(value: ValueRef<'_>) -> Result<i64, String> {
    match value {
        ValueRef::Integer(i) => Ok(i),
        ValueRef::Real(r) if r.fract() == 0.0 => Ok(r as i64),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            s.trim().parse().map_err(|_| {
                format!("conversion failed when converting the value '{s}' to data type int")
            })
        }
        _ => Err("value is not an integer".into()),
    }
}

fn as_text(value: ValueRef<'_>) -> Result<&str, String> {
    match value {
        ValueRef::Text(t) => std::str::from_utf8(t).map_err(|e| e.to_string()),
        _ => Err("value is not text".into()),
    }
}

fn days_since_year_one(date: NaiveDate) -> u32 {
    let epoch = NaiveDate::from_ymd_opt(1, 1, 1).expect("valid date");
    (date - epoch).num_days() as u32
}

pub fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let s = s.trim();
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d")
        .map_err(|_| format!("conversion failed when converting date from character string '{s}'"))
}

pub fn parse_datetime(s: &str) -> Result<NaiveDateTime, String> {
    let t = s.trim().trim_end_matches('Z');
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
    ] {
        if let Ok(at) = NaiveDateTime::parse_from_str(t, format) {
            return Ok(at);
        }
        if format == "%Y-%m-%d" {
            if let Ok(d) = NaiveDate::parse_from_str(t, format) {
                return Ok(d.and_hms_opt(0, 0, 0).expect("midnight"));
            }
        }
    }
    Err(format!(
        "conversion failed when converting date and/or time from character string '{s}'"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_parse_including_max_as_minus_one() {
        assert_eq!(
            ColType::parse("NVARCHAR(100)"),
            Some(ColType::NVarChar(Some(100)))
        );
        assert_eq!(
            ColType::parse("nvarchar(-1)"),
            Some(ColType::NVarChar(None))
        );
        assert_eq!(
            ColType::parse("VARBINARY(MAX)"),
            Some(ColType::VarBinary(None))
        );
        assert_eq!(
            ColType::parse("DECIMAL(5, 2)"),
            Some(ColType::Decimal {
                precision: 5,
                scale: 2
            })
        );
        assert_eq!(ColType::parse("DATETIME2(3)"), Some(ColType::DateTime2(3)));
        assert_eq!(ColType::parse("GEOGRAPHY"), None);
    }

    #[test]
    fn decimal_is_rescaled_to_the_declared_scale() {
        let mut out = Vec::new();
        ColType::Decimal {
            precision: 5,
            scale: 2,
        }
        .write_value(ValueRef::Text(b"12.5"), &mut out)
        .unwrap();
        // length 5, positive, 1250 little-endian in 4 bytes
        assert_eq!(out, vec![5, 1, 0xE2, 0x04, 0, 0]);
        let err = ColType::Decimal {
            precision: 3,
            scale: 2,
        }
        .write_value(ValueRef::Text(b"12.5"), &mut out)
        .unwrap_err();
        assert!(err.contains("overflow"), "{err}");
    }

    #[test]
    fn datetime2_scale_three_uses_four_time_bytes() {
        let mut out = Vec::new();
        ColType::DateTime2(3)
            .write_value(ValueRef::Text(b"0001-01-02 00:00:01.500"), &mut out)
            .unwrap();
        assert_eq!(out, vec![7, 0xDC, 0x05, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn max_values_are_chunked_plp_and_null_is_the_plp_null() {
        let mut out = Vec::new();
        let blob = vec![7u8; 10_000];
        ColType::VarBinary(None)
            .write_value(ValueRef::Blob(&blob), &mut out)
            .unwrap();
        assert_eq!(&out[..8], &10_000u64.to_le_bytes());
        assert_eq!(&out[8..12], &4000u32.to_le_bytes());
        assert_eq!(out.len(), 8 + 3 * 4 + 10_000 + 4);
        let mut null = Vec::new();
        ColType::NVarChar(None)
            .write_value(ValueRef::Null, &mut null)
            .unwrap();
        assert_eq!(null, u64::MAX.to_le_bytes());
    }

    #[test]
    fn out_of_range_integers_are_refused() {
        let mut out = Vec::new();
        assert!(ColType::TinyInt
            .write_value(ValueRef::Integer(300), &mut out)
            .is_err());
        assert!(ColType::Int
            .write_value(ValueRef::Text(b"12abc"), &mut out)
            .is_err());
    }
}
