//! Typed plaintext values of sealed columns, compared as PostgreSQL's operators compare them.
//!
//! [`parse`] reads a sealed column's canonical plaintext (see `protect::values`: the text
//! PostgreSQL prints with default settings, raw bytes for `bytea`) into a [`Scalar`];
//! [`compare`] and [`equal`] are what `<` / `ORDER BY` and `=` do:
//!
//! - text, `varchar` and `char(n)` by the database's [`TextOrder`]; `char(n)` without its
//!   trailing blanks (bpchar semantics); `=` is bytewise (a database collation is
//!   deterministic);
//! - integers and `numeric` by value (`1.0 = 1.00`), `NaN` above every number and equal to
//!   itself, `-Infinity` and `Infinity` at the ends; an integer against a `numeric` exactly,
//!   as PostgreSQL casts the integer to `numeric`;
//! - `real` and `double precision` as `float8_cmp_internal` does: `-0 = 0`, `NaN = NaN`, `NaN`
//!   above `Infinity`; an integer or a `numeric` against a float is cast to `double precision`
//!   first, as PostgreSQL does (a `numeric` out of its range is not compared: PostgreSQL
//!   raises an error);
//! - dates and timestamps by their day or microsecond counts, `-infinity` and `infinity` at
//!   the ends; `timestamp` and `timestamptz` do not compare with each other or with dates
//!   here (PostgreSQL's answer depends on the session's `TimeZone`);
//! - `uuid` and `bytea` bytewise, `false < true`.
//!
//! `json` and `jsonb` have no order pgseal evaluates: [`parse`] refuses them. A `Scalar` holds
//! patient data: its `Debug` shows the type only, and text, bytes and digits are wiped on drop.

use std::cmp::Ordering;
use std::fmt;

use pgseal_policies::PlainType;
use thiserror::Error;
use zeroize::Zeroize;

use super::collation::TextOrder;
use crate::protect::values::{Format, wire_from_canonical};

/// Why canonical plaintext could not become a [`Scalar`] (never the value itself).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ScalarError {
    /// A type pgseal does not compare (`json`, `jsonb`).
    #[error("{0} values cannot be compared or ordered by pgseal")]
    NotComparable(String),
    /// Stored plaintext that does not read as its declared type.
    #[error("stored plaintext is not a valid {type_name}: {reason}")]
    Invalid {
        /// The declared type, as SQL names it.
        type_name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// A plaintext value, typed.
#[derive(Clone)]
pub enum Scalar {
    /// `text`, `varchar`, `char(n)` (without trailing blanks).
    Text(String),
    /// `boolean`.
    Bool(bool),
    /// `smallint`, `integer`, `bigint`.
    Int(i64),
    /// `numeric`.
    Numeric(Numeric),
    /// `real` (widened exactly) and `double precision`.
    Float(f64),
    /// `date`: days since 2000-01-01, `i32::MIN` / `i32::MAX` for `-infinity` / `infinity`.
    Date(i32),
    /// `timestamp`: microseconds since 2000-01-01 00:00, `i64::MIN` / `i64::MAX` for the
    /// infinities.
    Timestamp(i64),
    /// `timestamptz`: UTC microseconds since 2000-01-01 00:00, infinities as for `Timestamp`.
    Timestamptz(i64),
    /// `uuid`.
    Uuid([u8; 16]),
    /// `bytea`.
    Bytea(Vec<u8>),
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Scalar::Text(_) => "Text",
            Scalar::Bool(_) => "Bool",
            Scalar::Int(_) => "Int",
            Scalar::Numeric(_) => "Numeric",
            Scalar::Float(_) => "Float",
            Scalar::Date(_) => "Date",
            Scalar::Timestamp(_) => "Timestamp",
            Scalar::Timestamptz(_) => "Timestamptz",
            Scalar::Uuid(_) => "Uuid",
            Scalar::Bytea(_) => "Bytea",
        };
        write!(f, "Scalar::{name}(..)")
    }
}

impl Drop for Scalar {
    fn drop(&mut self) {
        match self {
            Scalar::Text(text) => text.zeroize(),
            Scalar::Bytea(bytes) => bytes.zeroize(),
            Scalar::Numeric(Numeric::Finite { digits, .. }) => digits.zeroize(),
            Scalar::Uuid(bytes) => bytes.zeroize(),
            Scalar::Int(value) | Scalar::Timestamp(value) | Scalar::Timestamptz(value) => {
                value.zeroize()
            }
            Scalar::Float(value) => value.zeroize(),
            Scalar::Date(value) => value.zeroize(),
            Scalar::Bool(value) => value.zeroize(),
            Scalar::Numeric(_) => {}
        }
    }
}

/// A `numeric` value, normalized for comparison (the display scale is not kept).
#[derive(Clone)]
pub enum Numeric {
    /// `NaN`: above every number, equal to itself.
    NaN,
    /// `Infinity` (`negative`: `-Infinity`).
    Infinity {
        /// `-Infinity`.
        negative: bool,
    },
    /// A finite value: `0.digits × 10^point`, negated when `negative`.
    Finite {
        /// Below zero (never for zero).
        negative: bool,
        /// Decimal digits as ASCII, without leading or trailing zeros; empty for zero.
        digits: Vec<u8>,
        /// Where the decimal point goes, in digits from the first.
        point: i64,
    },
}

impl fmt::Debug for Numeric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Numeric(..)")
    }
}

impl Numeric {
    /// Reads canonical numeric text (`-12.340`, `NaN`, `Infinity`, `-Infinity`); also accepts
    /// what `numeric_in` writes out for any finite value.
    pub fn parse(text: &str) -> Option<Numeric> {
        match text {
            "NaN" => return Some(Numeric::NaN),
            "Infinity" => return Some(Numeric::Infinity { negative: false }),
            "-Infinity" => return Some(Numeric::Infinity { negative: true }),
            _ => {}
        }
        let (negative, body) = match text.strip_prefix('-') {
            Some(body) => (true, body),
            None => (false, text),
        };
        let (integer, fraction) = body.split_once('.').unwrap_or((body, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) {
            return None;
        }
        let leading = integer.bytes().take_while(|b| *b == b'0').count();
        let mut digits: Vec<u8> = integer
            .bytes()
            .skip(leading)
            .chain(fraction.bytes())
            .collect();
        let mut point = i64::try_from(integer.len() - leading).ok()?;
        if leading == integer.len() {
            // No integer digits: the fraction's leading zeros move the point left.
            let zeros = digits.iter().take_while(|b| **b == b'0').count();
            digits.drain(..zeros);
            point = -i64::try_from(zeros).ok()?;
        }
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Numeric::Finite {
                negative: false,
                digits,
                point: 0,
            });
        }
        Some(Numeric::Finite {
            negative,
            digits,
            point,
        })
    }

    /// An integer as a numeric.
    pub fn from_int(value: i64) -> Numeric {
        Numeric::parse(&value.to_string()).unwrap_or(Numeric::NaN)
    }

    /// The value as `double precision`, as PostgreSQL's `numeric_float8` gives it; `None`
    /// where PostgreSQL raises "out of range" (a nonzero value that rounds to zero or to
    /// infinity).
    pub fn to_f64(&self) -> Option<f64> {
        match self {
            Numeric::NaN => Some(f64::NAN),
            Numeric::Infinity { negative: false } => Some(f64::INFINITY),
            Numeric::Infinity { negative: true } => Some(f64::NEG_INFINITY),
            Numeric::Finite { digits, .. } if digits.is_empty() => Some(0.0),
            Numeric::Finite {
                negative,
                digits,
                point,
            } => {
                let mut text = String::with_capacity(digits.len() + 24);
                if *negative {
                    text.push('-');
                }
                text.push_str("0.");
                text.extend(digits.iter().map(|b| char::from(*b)));
                text.push('e');
                text.push_str(&point.to_string());
                let value: f64 = text.parse().ok()?;
                text.zeroize();
                (value != 0.0 && value.is_finite()).then_some(value)
            }
        }
    }

    fn rank(&self) -> i8 {
        match self {
            Numeric::Infinity { negative: true } => -2,
            Numeric::Finite { negative: true, .. } => -1,
            Numeric::Finite { digits, .. } if digits.is_empty() => 0,
            Numeric::Finite { .. } => 1,
            Numeric::Infinity { negative: false } => 2,
            Numeric::NaN => 3,
        }
    }

    /// Orders as `numeric_cmp`: by value, `NaN` last and equal to itself.
    pub fn compare(&self, other: &Numeric) -> Ordering {
        let by_rank = self.rank().cmp(&other.rank());
        if by_rank != Ordering::Equal {
            return by_rank;
        }
        match (self, other) {
            (
                Numeric::Finite {
                    negative,
                    digits: a,
                    point: pa,
                },
                Numeric::Finite {
                    digits: b,
                    point: pb,
                    ..
                },
            ) => {
                let magnitude = pa.cmp(pb).then_with(|| a.cmp(b));
                if *negative {
                    magnitude.reverse()
                } else {
                    magnitude
                }
            }
            _ => Ordering::Equal,
        }
    }
}

/// Reads a sealed column's canonical plaintext as a value of its declared type.
pub fn parse(ty: &PlainType, canonical: &[u8]) -> Result<Scalar, ScalarError> {
    let invalid = |reason| ScalarError::Invalid {
        type_name: ty.sql_name(),
        reason,
    };
    let text = || std::str::from_utf8(canonical).map_err(|_| invalid("not valid UTF-8"));
    // The binary wire form of the canonical text, read by pgseal's own value code.
    let binary = |n: usize| -> Result<Vec<u8>, ScalarError> {
        let bytes = wire_from_canonical(
            ty,
            Format::Binary,
            canonical,
            crate::protect::date_settings::DateSettings::canonical(),
        )
        .map_err(|error| invalid(error.reason))?;
        if bytes.len() == n {
            Ok(bytes)
        } else {
            Err(invalid("unexpected binary length"))
        }
    };
    let array = |bytes: Vec<u8>| -> Result<[u8; 8], ScalarError> {
        let mut out = [0u8; 8];
        let first = bytes.get(..8).ok_or_else(|| invalid("too short"))?;
        out.copy_from_slice(first);
        Ok(out)
    };
    Ok(match ty {
        PlainType::Text | PlainType::Varchar(_) => Scalar::Text(text()?.to_string()),
        PlainType::Char(_) => Scalar::Text(text()?.trim_end_matches(' ').to_string()),
        PlainType::Bool => match canonical {
            b"t" => Scalar::Bool(true),
            b"f" => Scalar::Bool(false),
            _ => return Err(invalid("not t or f")),
        },
        PlainType::Int2 | PlainType::Int4 | PlainType::Int8 => Scalar::Int(
            text()?
                .parse::<i64>()
                .map_err(|_| invalid("not an integer"))?,
        ),
        PlainType::Numeric(_) => {
            Scalar::Numeric(Numeric::parse(text()?).ok_or_else(|| invalid("not a number"))?)
        }
        PlainType::Float4 => {
            let bytes = binary(4)?;
            let raw: [u8; 4] = bytes
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| invalid("too short"))?;
            Scalar::Float(f64::from(f32::from_be_bytes(raw)))
        }
        PlainType::Float8 => Scalar::Float(f64::from_be_bytes(array(binary(8)?)?)),
        PlainType::Date => {
            let bytes = binary(4)?;
            let raw: [u8; 4] = bytes
                .get(..4)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| invalid("too short"))?;
            Scalar::Date(i32::from_be_bytes(raw))
        }
        PlainType::Timestamp => Scalar::Timestamp(i64::from_be_bytes(array(binary(8)?)?)),
        PlainType::Timestamptz => Scalar::Timestamptz(i64::from_be_bytes(array(binary(8)?)?)),
        PlainType::Uuid => {
            let bytes = binary(16)?;
            let raw: [u8; 16] = bytes
                .get(..16)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| invalid("too short"))?;
            Scalar::Uuid(raw)
        }
        PlainType::Bytea => Scalar::Bytea(canonical.to_vec()),
        PlainType::Json | PlainType::Jsonb => {
            return Err(ScalarError::NotComparable(ty.sql_name()));
        }
    })
}

/// PostgreSQL's `float8_cmp_internal`: `NaN` above everything and equal to itself, `-0 = 0`.
fn compare_floats(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

/// Compares as `<` and `ORDER BY` do (text under `order`); `None` when PostgreSQL would not
/// compare the two (different types, or a `numeric` out of `double precision`'s range
/// against a float).
pub fn compare(a: &Scalar, b: &Scalar, order: &TextOrder) -> Option<Ordering> {
    use Scalar as S;
    Some(match (a, b) {
        (S::Text(a), S::Text(b)) => order.compare(a, b),
        (S::Bool(a), S::Bool(b)) => a.cmp(b),
        (S::Int(a), S::Int(b)) => a.cmp(b),
        (S::Numeric(a), S::Numeric(b)) => a.compare(b),
        (S::Int(a), S::Numeric(b)) => Numeric::from_int(*a).compare(b),
        (S::Numeric(a), S::Int(b)) => a.compare(&Numeric::from_int(*b)),
        (S::Float(a), S::Float(b)) => compare_floats(*a, *b),
        (S::Int(a), S::Float(b)) => compare_floats(*a as f64, *b),
        (S::Float(a), S::Int(b)) => compare_floats(*a, *b as f64),
        (S::Numeric(a), S::Float(b)) => compare_floats(a.to_f64()?, *b),
        (S::Float(a), S::Numeric(b)) => compare_floats(*a, b.to_f64()?),
        (S::Date(a), S::Date(b)) => a.cmp(b),
        (S::Timestamp(a), S::Timestamp(b)) => a.cmp(b),
        (S::Timestamptz(a), S::Timestamptz(b)) => a.cmp(b),
        (S::Uuid(a), S::Uuid(b)) => a.cmp(b),
        (S::Bytea(a), S::Bytea(b)) => a.cmp(b),
        _ => return None,
    })
}

/// Bytes equal for two values exactly when PostgreSQL's `=` holds between them (for
/// `DISTINCT`), tagged by kind: a numeric's display scale and a float's zero sign do not
/// count, every NaN is one value, dates and times are their instants (whatever text form was
/// stored), and bytes are bytes.
pub fn identity_bytes(value: &Scalar) -> Vec<u8> {
    let tagged = |tag: u8, body: &[u8]| [&[tag][..], body].concat();
    match value {
        Scalar::Text(text) => tagged(b't', text.as_bytes()),
        Scalar::Bool(b) => tagged(b'b', &[u8::from(*b)]),
        Scalar::Int(n) => tagged(b'i', &n.to_le_bytes()),
        Scalar::Numeric(Numeric::Finite {
            negative,
            digits,
            point,
        }) => tagged(
            b'n',
            format!("{}{point}:", if *negative { "-" } else { "+" }).as_bytes(),
        )
        .into_iter()
        .chain(digits.iter().copied())
        .collect(),
        Scalar::Numeric(Numeric::NaN) => tagged(b'n', b"NaN"),
        Scalar::Numeric(Numeric::Infinity { negative }) => {
            tagged(b'n', if *negative { b"-Inf" } else { b"+Inf" })
        }
        Scalar::Float(f) if f.is_nan() => tagged(b'f', b"NaN"),
        Scalar::Float(f) if *f == 0.0 => tagged(b'f', &0f64.to_le_bytes()),
        Scalar::Float(f) => tagged(b'f', &f.to_le_bytes()),
        Scalar::Date(d) => tagged(b'd', &d.to_le_bytes()),
        Scalar::Timestamp(t) => tagged(b's', &t.to_le_bytes()),
        Scalar::Timestamptz(t) => tagged(b'z', &t.to_le_bytes()),
        Scalar::Uuid(u) => tagged(b'u', u),
        Scalar::Bytea(bytes) => tagged(b'x', bytes),
    }
}

/// What `=` answers; `None` when PostgreSQL would not compare the two. Text is equal only
/// when its bytes are (deterministic collations), `1.0 = 1.00`, `-0 = 0`, `NaN = NaN`.
pub fn equal(a: &Scalar, b: &Scalar) -> Option<bool> {
    compare(a, b, &TextOrder::bytes()).map(|o| o == Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(ty: &PlainType, text: &str) -> Scalar {
        let canonical = crate::protect::values::canonical_from_text(
            ty,
            text,
            crate::protect::date_settings::DateSettings::canonical(),
        )
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
        parse(ty, canonical.as_bytes()).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn order_of(ty: &PlainType, a: &str, b: &str) -> Option<Ordering> {
        compare(&value(ty, a), &value(ty, b), &TextOrder::bytes())
    }

    /// Each value is strictly below the next.
    fn assert_ascending(ty: &PlainType, texts: &[&str]) {
        for pair in texts.windows(2) {
            assert_eq!(
                order_of(ty, pair[0], pair[1]),
                Some(Ordering::Less),
                "{} < {}",
                pair[0],
                pair[1]
            );
            assert_eq!(order_of(ty, pair[1], pair[0]), Some(Ordering::Greater));
        }
    }

    #[test]
    fn numerics_compare_by_value() {
        let ty = PlainType::Numeric(None);
        assert_ascending(
            &ty,
            &[
                "-Infinity",
                "-1e10",
                "-12.5",
                "-12.4999",
                "-1",
                "-0.001",
                "0",
                "0.000001",
                "0.1",
                "0.10001",
                "1",
                "9.99",
                "10",
                "100",
                "1e20",
                "Infinity",
                "NaN",
            ],
        );
        for (a, b) in [
            ("1.0", "1.00"),
            ("0", "-0.000"),
            ("NaN", "nan"),
            ("1e3", "1000"),
            ("0.5", ".5"),
            ("-0.0", "0.0000"),
        ] {
            assert_eq!(order_of(&ty, a, b), Some(Ordering::Equal), "{a} = {b}");
            assert_eq!(equal(&value(&ty, a), &value(&ty, b)), Some(true));
        }
        let ty = PlainType::Numeric(Some((5, 2)));
        assert_eq!(order_of(&ty, "1.005", "1.01"), Some(Ordering::Equal));
    }

    #[test]
    fn floats_follow_float8_cmp() {
        let ty = PlainType::Float8;
        assert_ascending(
            &ty,
            &[
                "-Infinity",
                "-1e308",
                "-1",
                "0",
                "5e-324",
                "1",
                "1e308",
                "Infinity",
                "NaN",
            ],
        );
        assert_eq!(order_of(&ty, "-0", "0"), Some(Ordering::Equal));
        assert_eq!(order_of(&ty, "NaN", "NaN"), Some(Ordering::Equal));
        assert_eq!(equal(&value(&ty, "NaN"), &value(&ty, "nan")), Some(true));
        let real = PlainType::Float4;
        assert_eq!(
            compare(
                &value(&real, "0.1"),
                &value(&ty, "0.1"),
                &TextOrder::bytes()
            ),
            Some(Ordering::Greater)
        );
        assert_ascending(
            &real,
            &["-Infinity", "-3.4e38", "0", "1.5", "Infinity", "NaN"],
        );
    }

    #[test]
    fn numbers_across_types() {
        let int = value(&PlainType::Int4, "2");
        let numeric = value(&PlainType::Numeric(None), "2.000");
        let half = value(&PlainType::Numeric(None), "2.5");
        let float = value(&PlainType::Float8, "2.5");
        let order = TextOrder::bytes();
        assert_eq!(equal(&int, &numeric), Some(true));
        assert_eq!(compare(&int, &half, &order), Some(Ordering::Less));
        assert_eq!(compare(&float, &half, &order), Some(Ordering::Equal));
        assert_eq!(compare(&int, &float, &order), Some(Ordering::Less));
        let huge = value(&PlainType::Numeric(None), "1e400");
        let tiny = value(&PlainType::Numeric(None), "1e-400");
        assert_eq!(compare(&huge, &float, &order), None);
        assert_eq!(compare(&float, &tiny, &order), None);
        let nan = value(&PlainType::Numeric(None), "NaN");
        let float_nan = value(&PlainType::Float8, "NaN");
        assert_eq!(equal(&nan, &float_nan), Some(true));
        let text = value(&PlainType::Text, "2");
        assert_eq!(compare(&int, &text, &order), None);
        assert_eq!(equal(&text, &int), None);
    }

    #[test]
    fn dates_and_timestamps_have_infinities_at_the_ends() {
        let date = PlainType::Date;
        assert_ascending(
            &date,
            &[
                "-infinity",
                "4714-11-24 BC",
                "0044-03-15 BC",
                "0001-12-31 BC",
                "0001-01-01",
                "1999-12-31",
                "2000-01-01",
                "5874897-12-31",
                "infinity",
            ],
        );
        let ts = PlainType::Timestamp;
        assert_ascending(
            &ts,
            &[
                "-infinity",
                "0001-01-01 00:00:00 BC",
                "1999-12-31 23:59:59.999999",
                "2000-01-01 00:00:00",
                "2000-01-01 00:00:00.000001",
                "infinity",
            ],
        );
        let tstz = PlainType::Timestamptz;
        assert_eq!(
            order_of(&tstz, "2024-01-01 10:00:00+02", "2024-01-01 08:00:00Z"),
            Some(Ordering::Equal)
        );
        let order = TextOrder::bytes();
        assert_eq!(
            compare(
                &value(&ts, "2000-01-01"),
                &value(&tstz, "2000-01-01Z"),
                &order
            ),
            None
        );
        assert_eq!(
            compare(
                &value(&date, "2000-01-01"),
                &value(&ts, "2000-01-01"),
                &order
            ),
            None
        );
    }

    #[test]
    fn text_char_uuid_bytea_bool() {
        let char5 = PlainType::Char(5);
        assert_eq!(order_of(&char5, "ab", "ab   "), Some(Ordering::Equal));
        assert_eq!(order_of(&char5, "ab", "ab c"), Some(Ordering::Less));
        assert_eq!(
            parse(&char5, b"ab  ").map(|s| equal(&s, &value(&PlainType::Text, "ab"))),
            Ok(Some(true))
        );
        let text = PlainType::Text;
        assert_eq!(order_of(&text, "", "a"), Some(Ordering::Less));
        assert_eq!(order_of(&text, "ab ", "ab"), Some(Ordering::Greater));
        let icu = TextOrder::icu("fr-FR").expect("fr-FR");
        assert_eq!(
            compare(&value(&text, "b"), &value(&text, "C"), &icu),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&value(&text, "b"), &value(&text, "C"), &TextOrder::bytes()),
            Some(Ordering::Greater)
        );
        assert_ascending(
            &PlainType::Uuid,
            &[
                "00000000-0000-0000-0000-000000000000",
                "0000000000000000000000000000000F",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                "{ffffffff-ffff-ffff-ffff-ffffffffffff}",
            ],
        );
        let bytea = PlainType::Bytea;
        let raw = |b: &[u8]| parse(&bytea, b).expect("bytea");
        let order = TextOrder::bytes();
        assert_eq!(
            compare(&raw(b""), &raw(b"\0"), &order),
            Some(Ordering::Less)
        );
        assert_eq!(
            compare(&raw(b"\xff"), &raw(b"a\xff"), &order),
            Some(Ordering::Greater)
        );
        assert_ascending(&PlainType::Bool, &["f", "t"]);
    }

    #[test]
    fn refusals_name_no_value() {
        assert_eq!(
            parse(&PlainType::Jsonb, b"{}").map(|_| ()),
            Err(ScalarError::NotComparable("jsonb".into()))
        );
        let error = parse(&PlainType::Int4, b"secret").map(|_| ()).unwrap_err();
        assert!(!error.to_string().contains("secret"));
        assert!(parse(&PlainType::Date, b"not a date").is_err());
        assert!(parse(&PlainType::Float8, b"").is_err());
        assert!(parse(&PlainType::Numeric(None), b"1.2.3").is_err());
        assert!(parse(&PlainType::Uuid, b"xyz").is_err());
        assert!(parse(&PlainType::Text, b"\xff").is_err());
        assert_eq!(
            format!("{:?}", value(&PlainType::Text, "Dupont")),
            "Scalar::Text(..)"
        );
    }
}
