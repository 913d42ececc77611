//! Plaintext values of sealed columns: from what a client sends (text or binary parameters,
//! SQL literals, COPY fields) to the canonical bytes pgseal seals, and back to what a client
//! reads (text or binary results) in the column's declared type.
//!
//! The canonical form is the text PostgreSQL prints for the value with default settings
//! (ISO dates, `t`/`f`, …), so equal values seal equally in deterministic mode whatever form
//! the client wrote them in; for `bytea` it is the raw bytes. Timestamps with time zone are kept
//! in UTC (`+00`): the same instant, whatever the session's `TimeZone`.

use bytes::BytesMut;
use pgseal_policies::PlainType;
use thiserror::Error;
use time::{Date, Duration, Month, PrimitiveDateTime, Time, UtcOffset};
use zeroize::Zeroizing;

use super::numeric;

/// The epoch of PostgreSQL's binary dates and timestamps.
fn postgres_epoch() -> PrimitiveDateTime {
    PrimitiveDateTime::new(
        Date::from_calendar_date(2000, Month::January, 1).unwrap_or(Date::MIN),
        Time::MIDNIGHT,
    )
}

/// A value that does not fit the column's declared type.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid input for {type_name}: {reason}")]
pub struct ValueError {
    /// The declared type, as SQL names it.
    pub type_name: String,
    /// What is wrong (never the value itself: it is patient data).
    pub reason: &'static str,
}

impl ValueError {
    /// The SQLSTATE PostgreSQL would use.
    pub fn sqlstate(&self) -> &'static str {
        match self.reason {
            TOO_LONG => "22001",
            _ => "22P02",
        }
    }
}

const TOO_LONG: &str = "value too long for the declared length";

fn invalid(ty: &PlainType, reason: &'static str) -> ValueError {
    ValueError {
        type_name: ty.sql_name(),
        reason,
    }
}

/// The wire format of a parameter or result column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Text (format code 0).
    Text,
    /// Binary (format code 1).
    Binary,
}

impl Format {
    /// The format for a protocol format code (anything but 1 is text, as PostgreSQL reads it).
    pub fn from_code(code: i16) -> Format {
        if code == 1 {
            Format::Binary
        } else {
            Format::Text
        }
    }
}

/// The type of a built-in type OID pgseal can decode, without modifiers.
pub fn plain_type_of_oid(oid: u32) -> Option<PlainType> {
    Some(match oid {
        25 => PlainType::Text,
        1043 => PlainType::Varchar(None),
        16 => PlainType::Bool,
        21 => PlainType::Int2,
        23 => PlainType::Int4,
        20 => PlainType::Int8,
        1700 => PlainType::Numeric(None),
        700 => PlainType::Float4,
        701 => PlainType::Float8,
        1082 => PlainType::Date,
        1114 => PlainType::Timestamp,
        1184 => PlainType::Timestamptz,
        2950 => PlainType::Uuid,
        17 => PlainType::Bytea,
        114 => PlainType::Json,
        3802 => PlainType::Jsonb,
        _ => return None,
    })
}

/// Turns a client's value, in `format`, into canonical plaintext bytes for `ty`.
pub fn canonical_from_wire(
    ty: &PlainType,
    format: Format,
    value: &[u8],
) -> Result<Vec<u8>, ValueError> {
    match format {
        Format::Text => {
            if *ty == PlainType::Bytea {
                return bytea_from_text(value).ok_or_else(|| invalid(ty, "not a bytea literal"));
            }
            let text = std::str::from_utf8(value).map_err(|_| invalid(ty, "not valid UTF-8"))?;
            canonical_from_text(ty, text).map(String::into_bytes)
        }
        Format::Binary => canonical_from_binary(ty, value),
    }
}

/// Whether a value the client wrote in `format` is already its canonical plaintext, as text
/// and JSON written as text are (and varchar within its limit): it can be sealed as it came,
/// without a copy. `canonical_from_wire` gives the same bytes for it.
pub fn is_canonical_as_is(ty: &PlainType, format: Format, value: &[u8]) -> bool {
    let limit = match ty {
        PlainType::Text | PlainType::Json | PlainType::Jsonb => None,
        PlainType::Varchar(limit) => *limit,
        _ => return false,
    };
    format == Format::Text
        && std::str::from_utf8(value).is_ok_and(|text| check_length(text, limit).is_ok())
}

/// Canonical text for a value written as text (a parameter, a SQL literal, a COPY field).
pub fn canonical_from_text(ty: &PlainType, text: &str) -> Result<String, ValueError> {
    let trimmed = text.trim();
    let bad = |reason| invalid(ty, reason);
    Ok(match ty {
        PlainType::Text | PlainType::Json | PlainType::Jsonb => text.to_string(),
        PlainType::Varchar(limit) => {
            check_length(text, *limit).map_err(|_| bad(TOO_LONG))?;
            text.to_string()
        }
        PlainType::Char(n) => {
            let kept = text.trim_end_matches(' ');
            check_length(kept, Some(*n)).map_err(|_| bad(TOO_LONG))?;
            kept.to_string()
        }
        PlainType::Bool => match trimmed.to_ascii_lowercase().as_str() {
            "t" | "true" | "y" | "yes" | "on" | "1" => "t".into(),
            "f" | "false" | "n" | "no" | "off" | "0" => "f".into(),
            _ => return Err(bad("not a boolean")),
        },
        PlainType::Int2 => trimmed
            .parse::<i16>()
            .map_err(|_| bad("not a smallint"))?
            .to_string(),
        PlainType::Int4 => trimmed
            .parse::<i32>()
            .map_err(|_| bad("not an integer"))?
            .to_string(),
        PlainType::Int8 => trimmed
            .parse::<i64>()
            .map_err(|_| bad("not a bigint"))?
            .to_string(),
        PlainType::Numeric(precision) => {
            numeric::canonical_text(trimmed, precision.map(|(_, scale)| scale))
                .ok_or_else(|| bad("not a number"))?
        }
        PlainType::Float4 => float_text(trimmed, true).ok_or_else(|| bad("not a real"))?,
        PlainType::Float8 => {
            float_text(trimmed, false).ok_or_else(|| bad("not a double precision"))?
        }
        PlainType::Date => {
            format_date(parse_date(trimmed).ok_or_else(|| bad("not an ISO date (YYYY-MM-DD)"))?)
        }
        PlainType::Timestamp => {
            let (stamp, offset) =
                parse_timestamp(trimmed).ok_or_else(|| bad("not an ISO timestamp"))?;
            if offset.is_some() {
                return Err(bad("a timestamp without time zone cannot carry an offset"));
            }
            format_timestamp(stamp, false)
        }
        PlainType::Timestamptz => {
            let (stamp, offset) =
                parse_timestamp(trimmed).ok_or_else(|| bad("not an ISO timestamp"))?;
            let offset = offset.ok_or_else(|| {
                bad("a sealed timestamptz needs an explicit UTC offset (e.g. +01 or Z)")
            })?;
            format_timestamp(
                to_utc(stamp, offset).ok_or_else(|| bad("timestamp out of range"))?,
                true,
            )
        }
        PlainType::Uuid => uuid_text(trimmed).ok_or_else(|| bad("not a uuid"))?,
        PlainType::Bytea => return Err(bad("bytea values are not text")),
    })
}

fn canonical_from_binary(ty: &PlainType, value: &[u8]) -> Result<Vec<u8>, ValueError> {
    let bad = |reason| invalid(ty, reason);
    let fixed = |n: usize| -> Result<&[u8], ValueError> {
        if value.len() == n {
            Ok(value)
        } else {
            Err(bad("wrong binary length"))
        }
    };
    let text = match ty {
        PlainType::Text | PlainType::Varchar(_) | PlainType::Char(_) | PlainType::Json => {
            let text = std::str::from_utf8(value).map_err(|_| bad("not valid UTF-8"))?;
            return canonical_from_text(ty, text).map(String::into_bytes);
        }
        PlainType::Jsonb => match value.split_first() {
            Some((1, rest)) => std::str::from_utf8(rest)
                .map_err(|_| bad("not valid UTF-8"))?
                .to_string(),
            _ => return Err(bad("unknown jsonb binary version")),
        },
        PlainType::Bytea => return Ok(value.to_vec()),
        PlainType::Bool => match fixed(1)?[0] {
            0 => "f".into(),
            1 => "t".into(),
            _ => return Err(bad("not a boolean")),
        },
        PlainType::Int2 => {
            i16::from_be_bytes(fixed(2)?.try_into().map_err(|_| bad("length"))?).to_string()
        }
        PlainType::Int4 => {
            i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("length"))?).to_string()
        }
        PlainType::Int8 => {
            i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("length"))?).to_string()
        }
        PlainType::Float4 => {
            let v = f32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("length"))?);
            float_text(&v.to_string(), true).ok_or_else(|| bad("not a real"))?
        }
        PlainType::Float8 => {
            let v = f64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("length"))?);
            float_text(&v.to_string(), false).ok_or_else(|| bad("not a double precision"))?
        }
        PlainType::Numeric(precision) => {
            let text =
                numeric::from_binary(value).ok_or_else(|| bad("malformed binary numeric"))?;
            numeric::canonical_text(&text, precision.map(|(_, s)| s))
                .ok_or_else(|| bad("not a number"))?
        }
        PlainType::Date => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("length"))?);
            let date = postgres_epoch()
                .date()
                .checked_add(Duration::days(days.into()))
                .ok_or_else(|| bad("date out of range"))?;
            format_date(date)
        }
        PlainType::Timestamp | PlainType::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("length"))?);
            let stamp = postgres_epoch()
                .checked_add(Duration::microseconds(micros))
                .ok_or_else(|| bad("timestamp out of range"))?;
            format_timestamp(stamp, *ty == PlainType::Timestamptz)
        }
        PlainType::Uuid => {
            let bytes: [u8; 16] = fixed(16)?.try_into().map_err(|_| bad("length"))?;
            format_uuid(&bytes)
        }
    };
    Ok(text.into_bytes())
}

/// Appends what a client reads of canonical plaintext, in `format`, for `ty` (see
/// [`wire_from_canonical`]). Text, and the types whose binary form is their text, are copied
/// straight from `canonical`; the others are converted in a buffer zeroized after the copy.
pub fn put_wire_from_canonical(
    ty: &PlainType,
    format: Format,
    canonical: &[u8],
    out: &mut BytesMut,
) -> Result<(), ValueError> {
    let as_is = match (ty, format) {
        (PlainType::Bytea | PlainType::Char(_), _) => false,
        (_, Format::Text) => true,
        (PlainType::Text | PlainType::Varchar(_) | PlainType::Json, Format::Binary) => true,
        (_, Format::Binary) => false,
    };
    if as_is {
        std::str::from_utf8(canonical).map_err(|_| invalid(ty, "stored plaintext is not UTF-8"))?;
        out.extend_from_slice(canonical);
    } else {
        out.extend_from_slice(&Zeroizing::new(wire_from_canonical(ty, format, canonical)?));
    }
    Ok(())
}

/// Turns canonical plaintext into what a client reads, in `format`, for `ty`.
pub fn wire_from_canonical(
    ty: &PlainType,
    format: Format,
    canonical: &[u8],
) -> Result<Vec<u8>, ValueError> {
    let bad = |reason| invalid(ty, reason);
    if *ty == PlainType::Bytea {
        return Ok(match format {
            Format::Binary => canonical.to_vec(),
            Format::Text => bytea_to_text(canonical).into_bytes(),
        });
    }
    let text = std::str::from_utf8(canonical).map_err(|_| bad("stored plaintext is not UTF-8"))?;
    if format == Format::Text {
        return Ok(match ty {
            PlainType::Char(n) => pad_chars(text, *n as usize),
            _ => text.to_string(),
        }
        .into_bytes());
    }
    Ok(match ty {
        PlainType::Text | PlainType::Varchar(_) | PlainType::Json => text.as_bytes().to_vec(),
        PlainType::Char(n) => pad_chars(text, *n as usize).into_bytes(),
        PlainType::Jsonb => [&[1u8][..], text.as_bytes()].concat(),
        PlainType::Bool => vec![u8::from(text == "t")],
        PlainType::Int2 => text
            .parse::<i16>()
            .map_err(|_| bad("not a smallint"))?
            .to_be_bytes()
            .to_vec(),
        PlainType::Int4 => text
            .parse::<i32>()
            .map_err(|_| bad("not an integer"))?
            .to_be_bytes()
            .to_vec(),
        PlainType::Int8 => text
            .parse::<i64>()
            .map_err(|_| bad("not a bigint"))?
            .to_be_bytes()
            .to_vec(),
        PlainType::Float4 => parse_float(text)
            .map(|v| (v as f32).to_be_bytes().to_vec())
            .ok_or_else(|| bad("not a real"))?,
        PlainType::Float8 => parse_float(text)
            .map(|v| v.to_be_bytes().to_vec())
            .ok_or_else(|| bad("not a double"))?,
        PlainType::Numeric(_) => numeric::to_binary(text).ok_or_else(|| bad("not a number"))?,
        PlainType::Date => {
            let date = parse_date(text).ok_or_else(|| bad("not a date"))?;
            let days = (date - postgres_epoch().date()).whole_days();
            i32::try_from(days)
                .map_err(|_| bad("date out of range"))?
                .to_be_bytes()
                .to_vec()
        }
        PlainType::Timestamp | PlainType::Timestamptz => {
            let (stamp, offset) = parse_timestamp(text).ok_or_else(|| bad("not a timestamp"))?;
            let utc = match offset {
                Some(offset) => {
                    to_utc(stamp, offset).ok_or_else(|| bad("timestamp out of range"))?
                }
                None => stamp,
            };
            let micros = (utc - postgres_epoch()).whole_microseconds();
            i64::try_from(micros)
                .map_err(|_| bad("timestamp out of range"))?
                .to_be_bytes()
                .to_vec()
        }
        PlainType::Uuid => {
            let canonical = uuid_text(text).ok_or_else(|| bad("not a uuid"))?;
            let hex: String = canonical.chars().filter(|c| *c != '-').collect();
            decode_hex(&hex).ok_or_else(|| bad("not a uuid"))?
        }
        PlainType::Bytea => canonical.to_vec(),
    })
}

/// The UTC wall-clock time of a local time at `offset`.
fn to_utc(stamp: PrimitiveDateTime, offset: UtcOffset) -> Option<PrimitiveDateTime> {
    let utc = stamp
        .assume_offset(offset)
        .checked_to_offset(UtcOffset::UTC)?;
    Some(PrimitiveDateTime::new(utc.date(), utc.time()))
}

fn check_length(text: &str, limit: Option<u32>) -> Result<(), ()> {
    match limit {
        Some(n) if text.chars().count() > n as usize => Err(()),
        _ => Ok(()),
    }
}

fn pad_chars(text: &str, n: usize) -> String {
    let count = text.chars().count();
    if count >= n {
        text.to_string()
    } else {
        format!("{text}{}", " ".repeat(n - count))
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        other => other.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// The shortest text that reads back as the same float, with PostgreSQL's names for the
/// special values.
fn float_text(text: &str, single: bool) -> Option<String> {
    let value = parse_float(text)?;
    Some(if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if single {
        (value as f32).to_string()
    } else {
        value.to_string()
    })
}

fn parse_date(text: &str) -> Option<Date> {
    let mut parts = text.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next()?.parse().ok()?;
    let day: u8 = parts.next()?.parse().ok()?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

fn format_date(date: Date) -> String {
    let (year, month, day) = (date.year(), u8::from(date.month()), date.day());
    let Ok(year @ 0..=9999) = u16::try_from(year) else {
        // Outside four digits: `format!` puts the sign and the digits as PostgreSQL does.
        return format!("{year:04}-{month:02}-{day:02}");
    };
    // Written by hand: every sealed date a client binds goes through here.
    let digit = |n: u16| char::from(b'0' + (n % 10) as u8);
    let mut out = String::with_capacity(10);
    out.extend([year / 1000, year / 100, year / 10, year].map(digit));
    out.push('-');
    out.extend([u16::from(month) / 10, u16::from(month)].map(digit));
    out.push('-');
    out.extend([u16::from(day) / 10, u16::from(day)].map(digit));
    out
}

/// Parses `YYYY-MM-DD[ T]HH:MM[:SS[.ffffff]][Z|±HH[:MM]]`.
fn parse_timestamp(text: &str) -> Option<(PrimitiveDateTime, Option<UtcOffset>)> {
    let (date_part, rest) = text.split_at(text.find([' ', 'T'])?);
    let date = parse_date(date_part)?;
    let rest = &rest[1..];
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(zone_at);
    let mut fields = clock.splitn(3, ':');
    let hour: u8 = fields.next()?.parse().ok()?;
    let minute: u8 = fields.next()?.parse().ok()?;
    let (second, micros) = match fields.next() {
        None => (0u8, 0u32),
        Some(seconds) => {
            let (whole, fraction) = seconds.split_once('.').unwrap_or((seconds, ""));
            if fraction.len() > 6 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let micros: u32 = if fraction.is_empty() {
                0
            } else {
                format!("{fraction:0<6}").parse().ok()?
            };
            (whole.parse().ok()?, micros)
        }
    };
    let time = Time::from_hms_micro(hour, minute, second, micros).ok()?;
    let offset = match zone {
        "" => None,
        "Z" | "z" => Some(UtcOffset::UTC),
        signed => {
            let sign: i8 = if signed.starts_with('-') { -1 } else { 1 };
            let digits = &signed[1..];
            let (hours, minutes) = match digits.split_once(':') {
                Some((h, m)) => (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?),
                None if digits.len() == 4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
                None => (digits.parse::<i8>().ok()?, 0),
            };
            Some(UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()?)
        }
    };
    Some((PrimitiveDateTime::new(date, time), offset))
}

fn format_timestamp(stamp: PrimitiveDateTime, utc_suffix: bool) -> String {
    let mut out = format!(
        "{} {:02}:{:02}:{:02}",
        format_date(stamp.date()),
        stamp.hour(),
        stamp.minute(),
        stamp.second()
    );
    let micros = stamp.microsecond();
    if micros != 0 {
        let fraction = format!("{micros:06}");
        out.push('.');
        out.push_str(fraction.trim_end_matches('0'));
    }
    if utc_suffix {
        out.push_str("+00");
    }
    out
}

fn uuid_text(text: &str) -> Option<String> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let hex: String = inner
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses bytea text input: hex (`\x…`) or the escape format.
pub fn bytea_from_text(value: &[u8]) -> Option<Vec<u8>> {
    if let Some(hex) = value.strip_prefix(b"\\x") {
        let hex: String = std::str::from_utf8(hex)
            .ok()?
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        return decode_hex(&hex);
    }
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        if value[i] != b'\\' {
            out.push(value[i]);
            i += 1;
        } else if value.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let octal = value.get(i + 1..i + 4)?;
            if !octal.iter().all(|b| (b'0'..=b'7').contains(b)) {
                return None;
            }
            let byte = u16::from(octal[0] - b'0') * 64
                + u16::from(octal[1] - b'0') * 8
                + u16::from(octal[2] - b'0');
            out.push(u8::try_from(byte).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// bytea in PostgreSQL's default text output (hex).
pub fn bytea_to_text(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(ty: PlainType, text: &str) -> Result<String, ValueError> {
        canonical_from_text(&ty, text)
    }

    #[test]
    fn text_forms_are_canonicalized() {
        assert_eq!(
            canon(PlainType::Date, " 1985-05-17 ").unwrap(),
            "1985-05-17"
        );
        assert!(canon(PlainType::Date, "1985-02-30").is_err());
        assert!(canon(PlainType::Date, "17/05/1985").is_err());
        assert_eq!(canon(PlainType::Bool, "YES").unwrap(), "t");
        assert_eq!(canon(PlainType::Int4, "+042").unwrap(), "42");
        assert!(canon(PlainType::Int2, "70000").is_err());
        assert_eq!(canon(PlainType::Char(5), "ab   ").unwrap(), "ab");
        assert_eq!(canon(PlainType::Varchar(Some(3)), "été").unwrap(), "été");
        assert_eq!(
            canon(PlainType::Varchar(Some(2)), "été")
                .unwrap_err()
                .sqlstate(),
            "22001"
        );
        assert_eq!(
            canon(PlainType::Uuid, "{A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11}").unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert_eq!(
            canon(PlainType::Timestamptz, "2024-11-03T10:15:00.250+01:00").unwrap(),
            "2024-11-03 09:15:00.25+00"
        );
        assert!(canon(PlainType::Timestamptz, "2024-11-03 10:15:00").is_err());
        assert!(canon(PlainType::Timestamptz, "9999-12-31 23:00:00-05").is_err());
        assert_eq!(
            canon(PlainType::Timestamp, "2024-11-03 10:15").unwrap(),
            "2024-11-03 10:15:00"
        );
        assert_eq!(canon(PlainType::Float8, "0.1").unwrap(), "0.1");
        assert_eq!(
            canon(PlainType::Numeric(Some((5, 2))), "72.456").unwrap(),
            "72.46"
        );
    }

    #[test]
    fn binary_and_text_forms_of_one_value_seal_alike() {
        let cases: &[(PlainType, &str)] = &[
            (PlainType::Date, "1985-05-17"),
            (PlainType::Date, "1899-12-31"),
            (PlainType::Int4, "-17"),
            (PlainType::Int8, "9007199254740993"),
            (PlainType::Bool, "f"),
            (PlainType::Numeric(None), "-1234.5600"),
            (PlainType::Timestamptz, "2024-11-03 09:15:00.25+00"),
            (PlainType::Timestamp, "1970-01-01 00:00:01"),
            (PlainType::Uuid, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            (PlainType::Text, "Éloïse"),
            (PlainType::Jsonb, "{\"a\": 1}"),
            (PlainType::Float8, "2.5"),
            (PlainType::Char(4), "ab"),
        ];
        for (ty, text) in cases {
            let canonical = canonical_from_text(ty, text).unwrap();
            let binary = wire_from_canonical(ty, Format::Binary, canonical.as_bytes()).unwrap();
            let back = canonical_from_wire(ty, Format::Binary, &binary).unwrap();
            assert_eq!(String::from_utf8(back).unwrap(), canonical, "{ty:?}");
            // Appending gives the same bytes as the buffer-returning form, in both formats.
            for format in [Format::Text, Format::Binary] {
                let mut out = BytesMut::from(&b"row so far"[..]);
                put_wire_from_canonical(ty, format, canonical.as_bytes(), &mut out).unwrap();
                let whole = wire_from_canonical(ty, format, canonical.as_bytes()).unwrap();
                assert_eq!(&out[10..], &whole[..], "{ty:?} {format:?}");
            }
        }
        let mut out = BytesMut::new();
        assert!(
            put_wire_from_canonical(&PlainType::Text, Format::Text, br"\xff", &mut out).is_ok()
        );
        assert!(
            put_wire_from_canonical(&PlainType::Text, Format::Text, &[0xff], &mut out).is_err()
        );
        assert_eq!(
            wire_from_canonical(&PlainType::Char(4), Format::Text, b"ab").unwrap(),
            b"ab  "
        );
    }

    #[test]
    fn values_taken_as_they_came_are_their_canonical_form() {
        let cases: &[(PlainType, Format, &[u8], bool)] = &[
            (PlainType::Text, Format::Text, "Éloïse".as_bytes(), true),
            (PlainType::Jsonb, Format::Text, b"{\"a\": 1}", true),
            (PlainType::Varchar(Some(4)), Format::Text, b"abcd", true),
            (PlainType::Varchar(Some(4)), Format::Text, b"abcde", false),
            // The limit counts characters, not bytes.
            (
                PlainType::Varchar(Some(4)),
                Format::Text,
                "éééé".as_bytes(),
                true,
            ),
            (
                PlainType::Varchar(Some(4)),
                Format::Text,
                "ééééé".as_bytes(),
                false,
            ),
            (PlainType::Text, Format::Text, &[0xff], false),
            (PlainType::Text, Format::Binary, b"abc", false),
            (PlainType::Char(4), Format::Text, b"ab  ", false),
            (PlainType::Date, Format::Text, b"1985-05-17", false),
            (PlainType::Int4, Format::Text, b" 42", false),
        ];
        for (ty, format, value, as_is) in cases {
            assert_eq!(
                is_canonical_as_is(ty, *format, value),
                *as_is,
                "{ty:?} {value:?}"
            );
            if *as_is {
                assert_eq!(canonical_from_wire(ty, *format, value).unwrap(), *value);
            }
        }
    }

    #[test]
    fn dates_are_written_as_format_would() {
        for (y, m, d) in [
            (1985, 5, 17),
            (1, 1, 1),
            (0, 12, 31),
            (9999, 12, 31),
            (-44, 3, 15),
        ] {
            let date = Date::from_calendar_date(y, Month::try_from(m).unwrap(), d).unwrap();
            assert_eq!(format_date(date), format!("{y:04}-{m:02}-{d:02}"));
        }
    }

    #[test]
    fn bytea_text_forms() {
        assert_eq!(bytea_from_text(b"\\x0aff").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(
            bytea_from_text(b"a\\\\b\\001").unwrap(),
            b"a\\b\x01".to_vec()
        );
        assert!(bytea_from_text(b"\\x0").is_none());
        assert!(bytea_from_text(b"\\9").is_none());
        assert_eq!(bytea_to_text(&[1, 0xab]), "\\x01ab");
    }

    #[test]
    fn malformed_binary_values_are_errors() {
        assert!(canonical_from_wire(&PlainType::Date, Format::Binary, &[0, 0]).is_err());
        assert!(canonical_from_wire(&PlainType::Bool, Format::Binary, &[7]).is_err());
        assert!(canonical_from_wire(&PlainType::Jsonb, Format::Binary, &[2, b'{']).is_err());
        assert!(canonical_from_wire(&PlainType::Text, Format::Binary, &[0xff]).is_err());
    }
}
