//! PostgreSQL `numeric` between its text form and its binary wire form (base-10000 digits with
//! a weight, a sign and a display scale), and the canonical text pgseal seals.

use std::fmt::Write as _;

/// Sign words of the binary format.
const POSITIVE: u16 = 0x0000;
const NEGATIVE: u16 = 0x4000;
const NAN: u16 = 0xC000;
const PLUS_INFINITY: u16 = 0xD000;
const MINUS_INFINITY: u16 = 0xF000;
/// The display scale PostgreSQL's `numeric_send` writes for an infinity.
const INFINITY_DSCALE: u16 = 32;

/// A decimal number as sign, digits and the position of the decimal point.
#[derive(Debug, PartialEq, Eq)]
enum Decimal {
    NaN,
    Infinity {
        negative: bool,
    },
    Finite {
        negative: bool,
        /// Decimal digits, without leading zeros in the integer part.
        integer: String,
        /// Decimal digits after the point (the display scale is their count).
        fraction: String,
    },
}

/// Why a numeric text was refused: what is wrong (never the value) and PostgreSQL's SQLSTATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumericError {
    /// What is wrong.
    pub reason: &'static str,
    /// 22P02 for a syntax error, 22003 for a value out of range.
    pub sqlstate: &'static str,
}

const SYNTAX: NumericError = NumericError {
    reason: "not a number",
    sqlstate: "22P02",
};
const OVERFLOW: NumericError = NumericError {
    reason: "value overflows numeric format",
    sqlstate: "22003",
};
const FIELD_OVERFLOW: NumericError = NumericError {
    reason: "numeric field overflow: the value does not fit the declared precision and scale",
    sqlstate: "22003",
};

/// Most digits before the decimal point (`NUMERIC_WEIGHT_MAX` + 1 groups of four).
const MAX_INTEGER_DIGITS: i64 = 131_072;
/// Most digits after it (`NUMERIC_DSCALE_MAX`).
const MAX_SCALE: i64 = 16_383;

/// Parses PostgreSQL's numeric input syntax (`numeric_in`: spaces around, sign, digits,
/// optional point and exponent, NaN, Infinity) and returns the canonical text, rounded to the
/// scale and checked against the precision when the column declares `(precision, scale)`.
pub fn canonical_text(input: &str, typmod: Option<(u16, u16)>) -> Result<String, NumericError> {
    let decimal = parse(input)?;
    let decimal = match (decimal, typmod) {
        (
            Decimal::Finite {
                negative,
                integer,
                fraction,
            },
            Some((precision, scale)),
        ) => {
            let rounded = round(negative, integer, fraction, scale as usize);
            if let Decimal::Finite { integer, .. } = &rounded {
                if integer.len() > usize::from(precision.saturating_sub(scale)) {
                    return Err(FIELD_OVERFLOW);
                }
            }
            rounded
        }
        (Decimal::Infinity { .. }, Some(_)) => return Err(FIELD_OVERFLOW),
        (other, _) => other,
    };
    Ok(render(&decimal))
}

fn parse(input: &str) -> Result<Decimal, NumericError> {
    let text = input.trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let lower = text.to_ascii_lowercase();
    match lower.as_str() {
        "nan" => return Ok(Decimal::NaN),
        "infinity" | "+infinity" | "inf" | "+inf" => {
            return Ok(Decimal::Infinity { negative: false });
        }
        "-infinity" | "-inf" => return Ok(Decimal::Infinity { negative: true }),
        _ => {}
    }
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        Some(_) => (false, text),
        None => return Err(SYNTAX),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (&rest[..at], exponent(&rest[at + 1..])?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(SYNTAX);
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return Err(SYNTAX);
    }
    // Check the size before writing any digit out: an exponent may ask for billions.
    let leading_zeros = int_part
        .bytes()
        .chain(frac_part.bytes())
        .take_while(|b| *b == b'0')
        .count() as i64;
    let all_zero = leading_zeros == (int_part.len() + frac_part.len()) as i64;
    let point = int_part.len() as i64 + exponent;
    let scale = (frac_part.len() as i64 - exponent).max(0);
    if scale > MAX_SCALE || (!all_zero && point - leading_zeros > MAX_INTEGER_DIGITS) {
        return Err(OVERFLOW);
    }
    // Shift the point by the exponent.
    let mut digits = format!("{int_part}{frac_part}");
    let mut point = point;
    if point < 0 {
        digits = "0".repeat((-point) as usize) + &digits;
        point = 0;
    }
    let point = point as usize;
    if point > digits.len() {
        digits.push_str(&"0".repeat(point - digits.len()));
    }
    let (integer, fraction) = digits.split_at(point);
    let integer = integer.trim_start_matches('0').to_string();
    Ok(Decimal::Finite {
        negative,
        integer,
        fraction: fraction.to_string(),
    })
}

/// The exponent after `e`, read as C's `strtol` reads it (spaces, then a sign, then digits);
/// beyond what PostgreSQL accepts it is an overflow, as `numeric_in` reports it.
fn exponent(text: &str) -> Result<i64, NumericError> {
    let text = text.trim_start_matches(|c: char| c.is_ascii() && is_space(c as u8));
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SYNTAX);
    }
    let limit = i64::from(i32::MAX / 2);
    let value = digits.parse::<i64>().unwrap_or(i64::MAX).min(limit);
    if value >= limit {
        return Err(OVERFLOW);
    }
    Ok(if negative { -value } else { value })
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Rounds half away from zero to `scale` digits, as PostgreSQL does for numeric(p, s).
fn round(negative: bool, integer: String, fraction: String, scale: usize) -> Decimal {
    if fraction.len() <= scale {
        let padded = format!("{fraction:0<scale$}");
        return Decimal::Finite {
            negative,
            integer,
            fraction: padded,
        };
    }
    let round_up = fraction.as_bytes()[scale] >= b'5';
    let mut digits: Vec<u8> = format!("{integer}{}", &fraction[..scale]).into_bytes();
    if round_up {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, b'1');
                break;
            }
            i -= 1;
            if digits[i] == b'9' {
                digits[i] = b'0';
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - scale;
    let text = String::from_utf8(digits).unwrap_or_default();
    let (integer, fraction) = text.split_at(split);
    Decimal::Finite {
        negative,
        integer: integer.trim_start_matches('0').to_string(),
        fraction: fraction.to_string(),
    }
}

fn render(decimal: &Decimal) -> String {
    match decimal {
        Decimal::NaN => "NaN".into(),
        Decimal::Infinity { negative: false } => "Infinity".into(),
        Decimal::Infinity { negative: true } => "-Infinity".into(),
        Decimal::Finite {
            negative,
            integer,
            fraction,
        } => {
            let is_zero = integer.is_empty() && fraction.bytes().all(|b| b == b'0');
            let mut out = String::new();
            if *negative && !is_zero {
                out.push('-');
            }
            out.push_str(if integer.is_empty() { "0" } else { integer });
            if !fraction.is_empty() {
                out.push('.');
                out.push_str(fraction);
            }
            out
        }
    }
}

/// Encodes canonical numeric text in the binary wire format.
pub fn to_binary(text: &str) -> Option<Vec<u8>> {
    let decimal = parse(text).ok()?;
    let mut out = Vec::new();
    let header = |out: &mut Vec<u8>, ndigits: i16, weight: i16, sign: u16, dscale: u16| {
        out.extend_from_slice(&ndigits.to_be_bytes());
        out.extend_from_slice(&weight.to_be_bytes());
        out.extend_from_slice(&sign.to_be_bytes());
        out.extend_from_slice(&dscale.to_be_bytes());
    };
    match decimal {
        Decimal::NaN => header(&mut out, 0, 0, NAN, 0),
        // PostgreSQL 15 sends a display scale of 32 with its infinities (what its special
        // header reads as); clients ignore it, but the bytes are the server's.
        Decimal::Infinity { negative } => header(
            &mut out,
            0,
            0,
            if negative {
                MINUS_INFINITY
            } else {
                PLUS_INFINITY
            },
            INFINITY_DSCALE,
        ),
        Decimal::Finite {
            negative,
            integer,
            fraction,
        } => {
            let dscale = u16::try_from(fraction.len()).ok()?;
            // Pad the integer part on the left and the fraction on the right to whole groups
            // of four digits.
            let int_pad = (4 - integer.len() % 4) % 4;
            let frac_pad = (4 - fraction.len() % 4) % 4;
            let all = format!(
                "{}{integer}{fraction}{}",
                "0".repeat(int_pad),
                "0".repeat(frac_pad)
            );
            let int_groups = (integer.len() + int_pad) / 4;
            let mut groups: Vec<i16> = all
                .as_bytes()
                .chunks(4)
                .map(|chunk| {
                    chunk
                        .iter()
                        .fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0'))
                })
                .collect();
            let mut weight = int_groups as i32 - 1;
            // Strip leading and trailing zero groups (the weight follows the leading ones).
            while groups.first() == Some(&0) {
                groups.remove(0);
                weight -= 1;
            }
            while groups.last() == Some(&0) {
                groups.pop();
            }
            if groups.is_empty() {
                weight = 0;
            }
            let sign = if negative && !groups.is_empty() {
                NEGATIVE
            } else {
                POSITIVE
            };
            header(
                &mut out,
                i16::try_from(groups.len()).ok()?,
                i16::try_from(weight).ok()?,
                sign,
                dscale,
            );
            for group in groups {
                out.extend_from_slice(&group.to_be_bytes());
            }
        }
    }
    Some(out)
}

/// Decodes the binary wire format into text (as PostgreSQL prints it, at its display scale).
pub fn from_binary(bytes: &[u8]) -> Option<String> {
    let word = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
    };
    let ndigits = word(0)? as i16;
    let weight = word(2)? as i16 as i32;
    let sign = word(4)?;
    let dscale = word(6)? as usize;
    if ndigits < 0 || bytes.len() != 8 + 2 * ndigits as usize {
        return None;
    }
    match sign {
        NAN => return Some("NaN".into()),
        PLUS_INFINITY => return Some("Infinity".into()),
        MINUS_INFINITY => return Some("-Infinity".into()),
        POSITIVE | NEGATIVE => {}
        _ => return None,
    }
    let mut groups = Vec::with_capacity(ndigits as usize);
    for i in 0..ndigits as usize {
        let group = word(8 + 2 * i)?;
        if group > 9999 {
            return None;
        }
        groups.push(group);
    }
    // Integer part: groups at weights weight..=0; fraction: weights -1, -2, ...
    let mut integer = String::new();
    let mut w = weight.max(0);
    while w >= 0 {
        let index = weight - w;
        let group = if index >= 0 {
            groups.get(index as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if integer.is_empty() {
            if group != 0 {
                let _ = write!(integer, "{group}");
            }
        } else {
            let _ = write!(integer, "{group:04}");
        }
        w -= 1;
    }
    let mut fraction = String::new();
    let mut w = -1;
    while fraction.len() < dscale {
        let index = weight - w;
        let group = if index >= 0 {
            groups.get(index as usize).copied().unwrap_or(0)
        } else {
            0
        };
        let _ = write!(fraction, "{group:04}");
        w -= 1;
    }
    fraction.truncate(dscale);
    Some(render(&Decimal::Finite {
        negative: sign == NEGATIVE,
        integer,
        fraction,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_normalizes_and_rounds() {
        assert_eq!(canonical_text("0072.50", None).unwrap(), "72.50");
        assert_eq!(canonical_text("-0.0", None).unwrap(), "0.0");
        assert_eq!(canonical_text("1.2e3", None).unwrap(), "1200");
        assert_eq!(canonical_text("12.5e-3", None).unwrap(), "0.0125");
        assert_eq!(canonical_text("2.345", Some((5, 2))).unwrap(), "2.35");
        assert_eq!(canonical_text("-9.995", Some((5, 2))).unwrap(), "-10.00");
        assert_eq!(canonical_text("7", Some((5, 2))).unwrap(), "7.00");
        assert_eq!(canonical_text("nan", None).unwrap(), "NaN");
        assert_eq!(canonical_text("-infinity", None).unwrap(), "-Infinity");
        for bad in ["", "1.2.3", "abc", "--1", "1e", ".", "1e999999"] {
            assert!(canonical_text(bad, None).is_err(), "{bad:?}");
        }
        // As numeric_in reads them: spaces in the exponent, limits on the size.
        assert_eq!(canonical_text(" 1e +3 ", None).unwrap(), "1000");
        assert_eq!(canonical_text("1e-3", None).unwrap(), "0.001");
        assert_eq!(canonical_text("1e1001", None).unwrap().len(), 1002);
        for (overflow, typmod) in [
            ("1e131072", None),
            ("1e-16384", None),
            ("1e2147483647", None),
            ("Infinity", Some((5, 2))),
            ("999.995", Some((5, 2))),
            ("12345.6", Some((5, 2))),
        ] {
            assert_eq!(
                canonical_text(overflow, typmod).unwrap_err().sqlstate,
                "22003",
                "{overflow}"
            );
        }
        assert_eq!(canonical_text("NaN", Some((5, 2))).unwrap(), "NaN");
        assert_eq!(canonical_text("-999.994", Some((5, 2))).unwrap(), "-999.99");
        assert_eq!(canonical_text("+nan", None).unwrap_err().sqlstate, "22P02");
    }

    #[test]
    fn binary_round_trips_through_postgres_layout() {
        // 12345.6789 = groups [1, 2345, 6789], weight 1, dscale 4.
        let binary = to_binary("12345.6789").unwrap();
        assert_eq!(
            binary,
            [0, 3, 0, 1, 0, 0, 0, 4, 0, 1, 0x09, 0x29, 0x1a, 0x85]
        );
        for text in [
            "0",
            "1",
            "-1",
            "0.0001",
            "10000",
            "123456789.000001",
            "-0.50",
            "NaN",
            "Infinity",
            "99990000",
            "0.00",
        ] {
            let binary = to_binary(text).unwrap();
            assert_eq!(from_binary(&binary).unwrap(), text, "{text}");
        }
    }

    #[test]
    fn malformed_binary_is_refused_not_panicked_on() {
        assert!(from_binary(&[]).is_none());
        assert!(from_binary(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_none());
        assert!(from_binary(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]).is_none()); // 10000 > 9999
        assert!(from_binary(&[0xff, 0xff, 0, 0, 0, 0, 0, 0]).is_none());
    }
}
