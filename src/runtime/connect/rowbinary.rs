//! ClickHouse `RowBinary`: the layout of each column type and the encoder of row batches.
//!
//! A column's layout comes from its dtype (the types the generator's DDL gives:
//! [`RbColumn::from_dtype`]) or, for a table that existed before the run, from the type the
//! server lists ([`RbColumn::from_native`]): an `Int32` or `Nullable(String)` column must
//! get exactly four bytes, or a null marker, per value, or every later value is misread.

use crate::expr::value::Decimal;
use crate::expr::Value;
use crate::runtime::values::{self, exact_scale, kind_name};
use crate::runtime::Row;
use crate::types::Dtype;
use chrono::NaiveDate;

/// How the values of one column are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RbType {
    /// A little-endian integer of `bytes` bytes.
    Int {
        /// 1, 2, 4 or 8.
        bytes: u8,
        /// Whether negative values are allowed.
        signed: bool,
    },
    /// `Float32`.
    Float32,
    /// `Float64`.
    Float64,
    /// `Decimal(p, s)`: the mantissa in 32, 64 or 128 bits by precision.
    Decimal {
        /// Total digits.
        precision: u8,
        /// Digits after the point.
        scale: u8,
    },
    /// `String`: a varint length, then the bytes.
    String,
    /// `FixedString(n)`: exactly `n` bytes, zero-padded.
    FixedString(usize),
    /// `Bool` (and `UInt8` for a bool dtype): one byte.
    Bool,
    /// `Date`: days since 1970 as `UInt16`.
    Date,
    /// `Date32`: days since 1970 as `Int32`.
    Date32,
    /// `DateTime`: seconds since 1970 as `UInt32` (fractions are dropped).
    DateTime,
    /// `DateTime64(p)`: ticks of 10^-p seconds since 1970 as `Int64`.
    DateTime64(u8),
    /// `UUID`: two little-endian 64-bit halves, high half first.
    Uuid,
    /// `Enum8` / `Enum16`: the value's number, in 1 or 2 bytes.
    Enum {
        /// 1 or 2.
        bytes: u8,
        /// The labels and their numbers.
        labels: Vec<(String, i64)>,
    },
}

/// One column of a RowBinary load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RbColumn {
    /// The dtype values are coerced to first.
    pub dtype: Dtype,
    /// The layout.
    pub ty: RbType,
    /// `Nullable`: a null-marker byte before each value.
    pub nullable: bool,
}

impl RbColumn {
    /// The layout of the column the generator's DDL declares for `dtype`: Int64, Float64,
    /// Decimal(p,s), String, UInt8 for bool, Date, DateTime, UUID, String for JSON.
    pub fn from_dtype(dtype: Dtype, nullable: bool) -> RbColumn {
        let ty = match dtype {
            Dtype::Int => RbType::Int {
                bytes: 8,
                signed: true,
            },
            Dtype::Float => RbType::Float64,
            Dtype::Decimal { precision, scale } => RbType::Decimal { precision, scale },
            Dtype::Str | Dtype::Json => RbType::String,
            Dtype::Bool => RbType::Bool,
            Dtype::Date => RbType::Date,
            Dtype::Datetime => RbType::DateTime,
            Dtype::Uuid => RbType::Uuid,
        };
        RbColumn {
            dtype,
            ty,
            nullable,
        }
    }

    /// The layout of an existing column of ClickHouse type `native` that receives values
    /// of `dtype`, or why synctool cannot write that type.
    pub fn from_native(dtype: Dtype, native: &str) -> Result<RbColumn, String> {
        let (base, nullable) = ch_base(native);
        let args = type_args(base);
        let int = |bytes, signed| RbType::Int { bytes, signed };
        let ty = match base {
            "Int8" => int(1, true),
            "Int16" => int(2, true),
            "Int32" => int(4, true),
            "Int64" => int(8, true),
            "UInt8" if dtype == Dtype::Bool => RbType::Bool,
            "UInt8" => int(1, false),
            "UInt16" => int(2, false),
            "UInt32" => int(4, false),
            "UInt64" => int(8, false),
            "Float32" => RbType::Float32,
            "Float64" => RbType::Float64,
            "String" => RbType::String,
            "Bool" => RbType::Bool,
            "Date" => RbType::Date,
            "Date32" => RbType::Date32,
            "UUID" => RbType::Uuid,
            "DateTime" => RbType::DateTime,
            _ if base.starts_with("DateTime(") => RbType::DateTime,
            _ if base.starts_with("DateTime64(") => match args.first() {
                Some(p) if *p <= 9 => RbType::DateTime64(*p as u8),
                _ => return Err(unsupported(native)),
            },
            _ if base.starts_with("Enum8(") || base.starts_with("Enum16(") => {
                let labels = enum_labels(base);
                if labels.is_empty() || labels.iter().any(|(_, n)| n.is_none()) {
                    return Err(unsupported(native));
                }
                RbType::Enum {
                    bytes: if base.starts_with("Enum8(") { 1 } else { 2 },
                    labels: labels
                        .into_iter()
                        .map(|(l, n)| (l, n.unwrap_or_default()))
                        .collect(),
                }
            }
            _ if base.starts_with("FixedString(") => match args.first() {
                Some(n) => RbType::FixedString(*n as usize),
                None => return Err(unsupported(native)),
            },
            _ if base.starts_with("Decimal") => {
                let (p, s) = match (base.split('(').next().unwrap_or(""), args.as_slice()) {
                    ("Decimal", [p, s]) => (*p, *s),
                    ("Decimal", [p]) => (*p, 0),
                    ("Decimal32", [s]) => (9, *s),
                    ("Decimal64", [s]) => (18, *s),
                    ("Decimal128", [s]) => (38, *s),
                    _ => return Err(unsupported(native)),
                };
                if p > 38 || s > p {
                    return Err(unsupported(native));
                }
                RbType::Decimal {
                    precision: p as u8,
                    scale: s as u8,
                }
            }
            _ => return Err(unsupported(native)),
        };
        Ok(RbColumn {
            dtype,
            ty,
            nullable,
        })
    }
}

fn unsupported(native: &str) -> String {
    format!("synctool cannot write ClickHouse type {native}")
}

/// A ClickHouse type without `LowCardinality(…)`/`Nullable(…)`, and whether it was
/// `Nullable`. (`LowCardinality` does not change RowBinary.)
pub fn ch_base(native: &str) -> (&str, bool) {
    let mut t = native.trim();
    let mut nullable = false;
    loop {
        if let Some(inner) = t
            .strip_prefix("LowCardinality(")
            .and_then(|s| s.strip_suffix(')'))
        {
            t = inner.trim();
        } else if let Some(inner) = t
            .strip_prefix("Nullable(")
            .and_then(|s| s.strip_suffix(')'))
        {
            t = inner.trim();
            nullable = true;
        } else {
            return (t, nullable);
        }
    }
}

/// The quoted labels of an enum type, with the number after each one's `=` if any:
/// ClickHouse `Enum8('a' = 1, 'b\\'c' = 2)`, MySQL `enum('a','b''c')`.
pub fn enum_labels(t: &str) -> Vec<(String, Option<i64>)> {
    let Some(open) = t.find('(') else {
        return Vec::new();
    };
    let b: Vec<char> = t[open + 1..].chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            '\'' => {
                let mut label = String::new();
                i += 1;
                while i < b.len() {
                    match b[i] {
                        '\\' if i + 1 < b.len() => {
                            label.push(b[i + 1]);
                            i += 2;
                        }
                        '\'' if b.get(i + 1) == Some(&'\'') => {
                            label.push('\'');
                            i += 2;
                        }
                        '\'' => break,
                        c => {
                            label.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                // An optional ` = <number>` follows.
                let rest: String = b[i..]
                    .iter()
                    .take_while(|c| **c != ',' && **c != ')')
                    .collect();
                i += rest.chars().count();
                let n = rest
                    .trim()
                    .strip_prefix('=')
                    .and_then(|x| x.trim().parse().ok());
                out.push((label, n));
            }
            ')' => break,
            _ => i += 1,
        }
    }
    out
}

/// The numbers inside the first `(…)` of a type: `Decimal(12, 2)` → [12, 2]; quoted
/// arguments (a time zone) are skipped.
pub fn type_args(t: &str) -> Vec<u32> {
    let Some(open) = t.find('(') else {
        return Vec::new();
    };
    let close = t[open..].find(')').map_or(t.len(), |c| open + c);
    t[open + 1..close]
        .split(',')
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Encodes rows as RowBinary for `cols`. Errors carry (row, column) indices.
pub fn encode_rows(cols: &[RbColumn], rows: &[Row]) -> Result<Vec<u8>, (usize, usize, String)> {
    let mut out = Vec::with_capacity(rows.len() * cols.len() * 9);
    for (r, row) in rows.iter().enumerate() {
        if row.len() != cols.len() {
            return Err((
                r,
                0,
                format!("{} values for {} columns", row.len(), cols.len()),
            ));
        }
        for (c, (v, col)) in row.iter().zip(cols).enumerate() {
            encode_value(&mut out, v, col).map_err(|m| (r, c, m))?;
        }
        if r == 0 {
            // Size the body from the first row (+25% for longer strings): growing it by
            // doubling copies it and touches fresh pages at every step.
            let rest = out.len() * (rows.len() - 1);
            out.reserve(rest + rest / 4);
        }
    }
    Ok(out)
}

/// Whether `v` encodes for `col` (the encoder's message when not): the per-row check
/// asks before a batch is written, so that a refused value is named by its row's key.
pub fn check_value(v: &Value, col: &RbColumn) -> Result<(), String> {
    let mut scratch = Vec::with_capacity(16);
    encode_value(&mut scratch, v, col)
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn put_int(out: &mut Vec<u8>, i: i64, bytes: u8, signed: bool) -> Result<(), String> {
    let bits = u32::from(bytes) * 8;
    let (lo, hi) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    if !(lo..=hi).contains(&i128::from(i)) {
        let kind = if signed { "Int" } else { "UInt" };
        return Err(format!("{i} is out of range for {kind}{bits}"));
    }
    out.extend_from_slice(&i.to_le_bytes()[..usize::from(bytes)]);
    Ok(())
}

/// A decimal at the column's scale. The field's own scale was checked before (a value with
/// more digits is refused, naming its row); a column of a smaller scale (warned about
/// before the run) keeps the value rounded half away from zero, as PostgreSQL and MySQL
/// store it.
fn put_decimal(out: &mut Vec<u8>, x: Decimal, precision: u8, scale: u8) -> Result<(), String> {
    let m = exact_scale(x.round_half_away(u32::from(scale)), scale)?.mantissa();
    let limit = 10i128
        .checked_pow(u32::from(precision))
        .unwrap_or(i128::MAX);
    if m.unsigned_abs() >= limit.unsigned_abs() {
        return Err(format!("{x} does not fit Decimal({precision}, {scale})"));
    }
    match precision {
        0..=9 => out.extend_from_slice(&(m as i32).to_le_bytes()),
        10..=18 => out.extend_from_slice(&(m as i64).to_le_bytes()),
        _ => out.extend_from_slice(&m.to_le_bytes()),
    }
    Ok(())
}

fn days(d: &NaiveDate) -> i64 {
    (*d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid")).num_days()
}

fn encode_value(out: &mut Vec<u8>, v: &Value, col: &RbColumn) -> Result<(), String> {
    let v = values::coerce_ref(v, col.dtype)?;
    let v = v.as_ref();
    if col.nullable {
        if v.is_null() {
            out.push(1);
            return Ok(());
        }
        out.push(0);
    } else if v.is_null() {
        return Err("NULL in a column that is not Nullable".into());
    }
    match (&col.ty, v) {
        (RbType::Int { bytes, signed }, Value::Int(i)) => put_int(out, *i, *bytes, *signed)?,
        (RbType::Int { bytes, signed }, Value::Bool(b)) => {
            put_int(out, *b as i64, *bytes, *signed)?
        }
        (RbType::Float64, Value::Float(f)) => out.extend_from_slice(&f.to_le_bytes()),
        (RbType::Float32, Value::Float(f)) => out.extend_from_slice(&(*f as f32).to_le_bytes()),
        (RbType::Decimal { precision, scale }, Value::Decimal(x)) => {
            put_decimal(out, *x, *precision, *scale)?
        }
        (RbType::Decimal { precision, scale }, Value::Int(i)) => {
            put_decimal(out, Decimal::from_i64(*i), *precision, *scale)?
        }
        (RbType::String, Value::Str(s) | Value::Uuid(s)) => put_str(out, s.as_bytes()),
        (RbType::String, Value::Json(j)) => put_str(out, j.to_string().as_bytes()),
        (RbType::FixedString(n), Value::Str(s) | Value::Uuid(s)) => {
            if s.len() > *n {
                return Err(format!(
                    "text of {} bytes does not fit FixedString({n})",
                    s.len()
                ));
            }
            out.extend_from_slice(s.as_bytes());
            out.resize(out.len() + *n - s.len(), 0);
        }
        (RbType::Bool, Value::Bool(b)) => out.push(*b as u8),
        (RbType::Date, Value::Date(x)) => {
            let d = u16::try_from(days(x))
                .map_err(|_| format!("{x} is outside ClickHouse Date's range (1970–2149)"))?;
            out.extend_from_slice(&d.to_le_bytes());
        }
        (RbType::Date32, Value::Date(x)) => {
            let d = i32::try_from(days(x))
                .map_err(|_| format!("{x} is outside ClickHouse Date32's range"))?;
            out.extend_from_slice(&d.to_le_bytes());
        }
        (RbType::DateTime, Value::Datetime(t)) => {
            let s = values::epoch_micros(t).div_euclid(1_000_000);
            let s = u32::try_from(s)
                .map_err(|_| format!("{t} is outside ClickHouse DateTime's range (1970–2106)"))?;
            out.extend_from_slice(&s.to_le_bytes());
        }
        (RbType::DateTime64(p), Value::Datetime(t)) => {
            let us = i128::from(values::epoch_micros(t));
            let p = *p;
            let ticks = if p <= 6 {
                us.div_euclid(10i128.pow(6 - u32::from(p)))
            } else {
                us * 10i128.pow(u32::from(p) - 6)
            };
            let ticks = i64::try_from(ticks)
                .map_err(|_| format!("{t} is outside ClickHouse DateTime64({p})'s range"))?;
            out.extend_from_slice(&ticks.to_le_bytes());
        }
        (RbType::Enum { bytes, labels }, Value::Str(s)) => {
            let n = labels
                .iter()
                .find(|(l, _)| l == s)
                .map(|(_, n)| *n)
                .ok_or_else(|| format!("'{s}' is not one of the enum's values"))?;
            out.extend_from_slice(&n.to_le_bytes()[..usize::from(*bytes)]);
        }
        (RbType::Uuid, Value::Uuid(s) | Value::Str(s)) => {
            let b = values::parse_uuid(s).ok_or("not a UUID")?;
            out.extend(b[..8].iter().rev());
            out.extend(b[8..].iter().rev());
        }
        (ty, v) => {
            return Err(format!(
                "cannot encode a {} value as ClickHouse {ty:?}",
                kind_name(v)
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_binary_layout() {
        let rows = vec![vec![
            Value::Int(1),
            Value::Null,
            Value::Str("é".into()),
            Value::Uuid("00112233-4455-6677-8899-aabbccddeeff".into()),
            Value::Decimal(Decimal::parse("-1.5").unwrap()),
        ]];
        let types = [
            Dtype::Int,
            Dtype::Int,
            Dtype::Str,
            Dtype::Uuid,
            Dtype::Decimal {
                precision: 9,
                scale: 2,
            },
        ];
        let cols: Vec<RbColumn> = types
            .iter()
            .zip([false, true, false, false, false])
            .map(|(d, n)| RbColumn::from_dtype(*d, n))
            .collect();
        let b = encode_rows(&cols, &rows).unwrap();
        let mut want = vec![1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0xc3, 0xa9];
        want.extend([0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0x00]);
        want.extend([0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88]);
        want.extend((-150i32).to_le_bytes());
        assert_eq!(b, want);
        let not_null: Vec<RbColumn> = types
            .iter()
            .map(|d| RbColumn::from_dtype(*d, false))
            .collect();
        assert!(
            encode_rows(&not_null, &rows).is_err(),
            "NULL in a non-Nullable column"
        );
    }

    #[test]
    fn a_column_of_a_smaller_scale_gets_the_value_rounded_half_away_from_zero() {
        let field = Dtype::Decimal {
            precision: 12,
            scale: 4,
        };
        let col = RbColumn::from_native(field, "Decimal(12, 2)").unwrap();
        let enc = |t: &str| {
            let v = Value::Decimal(Decimal::parse(t).unwrap());
            encode_rows(std::slice::from_ref(&col), &[vec![v]]).unwrap()
        };
        assert_eq!(enc("1.2345"), 123i64.to_le_bytes().to_vec());
        assert_eq!(enc("1.2350"), 124i64.to_le_bytes().to_vec());
        assert_eq!(enc("-1.235"), (-124i64).to_le_bytes().to_vec());
        assert_eq!(enc("7"), 700i64.to_le_bytes().to_vec());
    }

    #[test]
    fn native_types_set_the_layout() {
        let col = |d, t| RbColumn::from_native(d, t).unwrap();
        let rows = vec![vec![
            Value::Int(-2),
            Value::Int(300),
            Value::Str("ab".into()),
            Value::Null,
            Value::Float(1.5),
            Value::Datetime(
                NaiveDate::from_ymd_opt(1970, 1, 1)
                    .unwrap()
                    .and_hms_micro_opt(0, 0, 1, 250_000)
                    .unwrap(),
            ),
        ]];
        let cols = [
            col(Dtype::Int, "Int16"),
            col(Dtype::Int, "Nullable(UInt32)"),
            col(Dtype::Str, "FixedString(4)"),
            col(Dtype::Str, "LowCardinality(Nullable(String))"),
            col(Dtype::Float, "Float32"),
            col(Dtype::Datetime, "DateTime64(3, 'UTC')"),
        ];
        let b = encode_rows(&cols, &rows).unwrap();
        let mut want = vec![0xfe, 0xff, 0, 0x2c, 0x01, 0, 0, b'a', b'b', 0, 0, 1];
        want.extend(1.5f32.to_le_bytes());
        want.extend(1250i64.to_le_bytes());
        assert_eq!(b, want);
        assert_eq!(
            col(
                Dtype::Decimal {
                    precision: 18,
                    scale: 4
                },
                "Decimal64(2)"
            )
            .ty,
            RbType::Decimal {
                precision: 18,
                scale: 2
            }
        );
        assert_eq!(col(Dtype::Bool, "UInt8").ty, RbType::Bool);
        assert_eq!(col(Dtype::Datetime, "DateTime('UTC')").ty, RbType::DateTime);
        let e = col(Dtype::Str, "Enum8('a' = 1, 'it\\'s' = -2)");
        assert_eq!(
            e.ty,
            RbType::Enum {
                bytes: 1,
                labels: vec![("a".into(), 1), ("it's".into(), -2)]
            }
        );
        let rows = vec![vec![Value::Str("it's".into())]];
        assert_eq!(
            encode_rows(std::slice::from_ref(&e), &rows).unwrap(),
            vec![0xfe]
        );
        let rows = vec![vec![Value::Str("b".into())]];
        assert!(encode_rows(&[e], &rows)
            .unwrap_err()
            .2
            .contains("not one of"));
        let e16 = col(Dtype::Str, "Nullable(Enum16('x' = 300))");
        let rows = vec![vec![Value::Str("x".into())]];
        assert_eq!(encode_rows(&[e16], &rows).unwrap(), vec![0, 0x2c, 0x01]);
        assert_eq!(
            enum_labels("enum('a','b''c','d,e')"),
            vec![
                ("a".to_string(), None),
                ("b'c".to_string(), None),
                ("d,e".to_string(), None)
            ]
        );
        assert!(RbColumn::from_native(Dtype::Int, "Int128").is_err());
        let overflow = vec![vec![Value::Int(40_000)]];
        let err = encode_rows(&[col(Dtype::Int, "Int16")], &overflow).unwrap_err();
        assert!(err.2.contains("out of range for Int16"), "{err:?}");
        let long = vec![vec![Value::Str("abcde".into())]];
        assert!(encode_rows(&[col(Dtype::Str, "FixedString(4)")], &long).is_err());
    }
}
