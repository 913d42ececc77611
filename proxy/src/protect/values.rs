//! Plaintext values of sealed columns: from what a client sends (text or binary parameters,
//! SQL literals, COPY fields) to the canonical bytes pgseal seals, and back to what a client
//! reads (text or binary results) in the column's declared type.
//!
//! The canonical form is the text PostgreSQL prints for the value with default settings
//! (ISO dates, `t`/`f`, …), so equal values seal equally in deterministic mode whatever form
//! the client wrote them in; for `bytea` it is the raw bytes. Timestamps with time zone are kept
//! in UTC (`+00`): the same instant, whatever the session's `TimeZone`. Dates and times are
//! read and printed in the session's `DateStyle` and `TimeZone` ([`DateSettings`]).

use bytes::BytesMut;
use pgseal_policies::PlainType;
use thiserror::Error;
use zeroize::Zeroizing;

use super::date_settings::{DateSettings, DateStyle};
use super::datetime::{self, DateTimeError};
use super::datetime_style;
use super::numeric;

/// A value that does not fit the column's declared type.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid input for {type_name}: {reason}")]
pub struct ValueError {
    /// The declared type, as SQL names it.
    pub type_name: String,
    /// What is wrong (never the value itself: it is patient data).
    pub reason: &'static str,
    /// The SQLSTATE PostgreSQL would use for the same input (22P02 invalid text, 22003 out
    /// of range, 22007/22008/22009 for dates and times…), or pgseal's own (0A000) for a value
    /// PostgreSQL accepts but pgseal cannot canonicalize.
    pub code: &'static str,
}

impl ValueError {
    /// The SQLSTATE reported to the client.
    pub fn sqlstate(&self) -> &'static str {
        self.code
    }
}

const TOO_LONG: &str = "value too long for the declared length";

/// An input PostgreSQL would refuse as invalid text (22P02).
fn invalid(ty: &PlainType, reason: &'static str) -> ValueError {
    refused(ty, reason, "22P02")
}

fn refused(ty: &PlainType, reason: &'static str, code: &'static str) -> ValueError {
    ValueError {
        type_name: ty.sql_name(),
        reason,
        code,
    }
}

fn datetime_error(ty: &PlainType, error: DateTimeError) -> ValueError {
    refused(ty, error.reason, error.sqlstate)
}

/// Out of range for the type (22003).
const OUT_OF_RANGE: &str = "value out of range for the type";

/// Why a sealed date or time is not printed in text while the settings are stale.
const STALE_SETTINGS: &str = "DateStyle or TimeZone changed earlier in this pipeline and \
     PostgreSQL reports the new value only at its end: pgseal cannot print this sealed value as \
     the server would; read it in binary, or send the statement after a Sync";

/// Whether text of `ty` depends on DateStyle and TimeZone.
fn is_dated(ty: &PlainType) -> bool {
    matches!(
        ty,
        PlainType::Date | PlainType::Timestamp | PlainType::Timestamptz
    )
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

/// Turns a client's value, in `format`, into canonical plaintext bytes for `ty`, a text date
/// or time read in the session's `dates` settings.
pub fn canonical_from_wire(
    ty: &PlainType,
    format: Format,
    value: &[u8],
    dates: &DateSettings,
) -> Result<Vec<u8>, ValueError> {
    match format {
        Format::Text => {
            if *ty == PlainType::Bytea {
                return bytea_from_text(value).ok_or_else(|| invalid(ty, "not a bytea literal"));
            }
            let text = std::str::from_utf8(value).map_err(|_| invalid(ty, "not valid UTF-8"))?;
            canonical_from_text(ty, text, dates).map(String::into_bytes)
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

/// Canonical text for a value written as text (a parameter, a SQL literal, a COPY field), a
/// date or time read in the session's `dates` settings.
pub fn canonical_from_text(
    ty: &PlainType,
    text: &str,
    dates: &DateSettings,
) -> Result<String, ValueError> {
    let trimmed = trim_spaces(text);
    let bad = |reason| invalid(ty, reason);
    Ok(match ty {
        PlainType::Text | PlainType::Json | PlainType::Jsonb => text.to_string(),
        PlainType::Varchar(limit) => {
            check_length(text, *limit).map_err(|_| refused(ty, TOO_LONG, "22001"))?;
            text.to_string()
        }
        PlainType::Char(n) => {
            let kept = text.trim_end_matches(' ');
            check_length(kept, Some(*n)).map_err(|_| refused(ty, TOO_LONG, "22001"))?;
            kept.to_string()
        }
        PlainType::Bool => match parse_bool(trimmed) {
            Some(true) => "t".into(),
            Some(false) => "f".into(),
            None => return Err(bad("not a boolean")),
        },
        PlainType::Int2 => integer_text::<i16>(ty, trimmed, "not a smallint")?,
        PlainType::Int4 => integer_text::<i32>(ty, trimmed, "not an integer")?,
        PlainType::Int8 => integer_text::<i64>(ty, trimmed, "not a bigint")?,
        PlainType::Numeric(typmod) => numeric::canonical_text(trimmed, *typmod)
            .map_err(|e| refused(ty, e.reason, e.sqlstate))?,
        PlainType::Float4 => float_text(trimmed, true).map_err(|e| float_error(ty, e))?,
        PlainType::Float8 => float_text(trimmed, false).map_err(|e| float_error(ty, e))?,
        PlainType::Date => datetime::format_date(
            datetime::parse_date(text, dates).map_err(|e| datetime_error(ty, e))?,
        ),
        PlainType::Timestamp => datetime::format_timestamp(
            datetime::parse_timestamp(text, dates).map_err(|e| datetime_error(ty, e))?,
            false,
        ),
        PlainType::Timestamptz => datetime::format_timestamp(
            datetime::parse_timestamptz(text, dates).map_err(|e| datetime_error(ty, e))?,
            true,
        ),
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
            return canonical_from_text(ty, text, DateSettings::canonical())
                .map(String::into_bytes);
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
            format_float(f64::from(v), true)
        }
        PlainType::Float8 => {
            let v = f64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("length"))?);
            format_float(v, false)
        }
        PlainType::Numeric(typmod) => {
            let text =
                numeric::from_binary(value).ok_or_else(|| bad("malformed binary numeric"))?;
            numeric::canonical_text(&text, *typmod)
                .map_err(|e| refused(ty, e.reason, e.sqlstate))?
        }
        PlainType::Date => {
            let days = i32::from_be_bytes(fixed(4)?.try_into().map_err(|_| bad("length"))?);
            if !datetime::date_in_range(days) {
                return Err(refused(ty, "date out of range", "22008"));
            }
            datetime::format_date(days)
        }
        PlainType::Timestamp | PlainType::Timestamptz => {
            let micros = i64::from_be_bytes(fixed(8)?.try_into().map_err(|_| bad("length"))?);
            if !datetime::timestamp_in_range(micros) {
                return Err(refused(ty, "timestamp out of range", "22008"));
            }
            datetime::format_timestamp(micros, *ty == PlainType::Timestamptz)
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
    dates: &DateSettings,
    out: &mut BytesMut,
) -> Result<(), ValueError> {
    if dates.is_stale() && is_dated(ty) && format == Format::Text {
        return Err(refused(ty, STALE_SETTINGS, "0A000"));
    }
    let as_is = match (ty, format) {
        (PlainType::Bytea | PlainType::Char(_), _) => false,
        (PlainType::Float4 | PlainType::Float8, Format::Text) => false,
        // A date or a timestamp without zone prints the same in ISO whatever the zone.
        (PlainType::Date | PlainType::Timestamp, Format::Text) => {
            dates.style() == DateStyle::Iso && !is_old_bc_form(canonical)
        }
        (PlainType::Timestamptz, Format::Text) => {
            dates.prints_canonical() && !is_old_bc_form(canonical)
        }
        (_, Format::Text) => true,
        (PlainType::Text | PlainType::Varchar(_) | PlainType::Json, Format::Binary) => true,
        (_, Format::Binary) => false,
    };
    if as_is {
        std::str::from_utf8(canonical).map_err(|_| invalid(ty, "stored plaintext is not UTF-8"))?;
        out.extend_from_slice(canonical);
    } else {
        out.extend_from_slice(&Zeroizing::new(wire_from_canonical(
            ty, format, canonical, dates,
        )?));
    }
    Ok(())
}

/// Turns canonical plaintext into what a client reads, in `format`, for `ty`: a date or time
/// in text printed in the session's `dates` settings.
pub fn wire_from_canonical(
    ty: &PlainType,
    format: Format,
    canonical: &[u8],
    dates: &DateSettings,
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
        if dates.is_stale() && is_dated(ty) {
            return Err(refused(ty, STALE_SETTINGS, "0A000"));
        }
        return Ok(match ty {
            PlainType::Char(n) => pad_chars(text, *n as usize),
            PlainType::Float4 => postgres_float_text(text, true),
            PlainType::Float8 => postgres_float_text(text, false),
            PlainType::Date | PlainType::Timestamp | PlainType::Timestamptz => {
                dated_text(ty, text, dates).ok_or_else(|| bad("stored plaintext is not a date"))?
            }
            _ => text.to_string(),
        }
        .into_bytes());
    }
    let canonical_dates = DateSettings::canonical();
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
        PlainType::Float4 => parse_float(text, true)
            .map(|v| (v as f32).to_be_bytes().to_vec())
            .map_err(|_| bad("stored plaintext is not a real"))?,
        PlainType::Float8 => parse_float(text, false)
            .map(|v| v.to_be_bytes().to_vec())
            .map_err(|_| bad("stored plaintext is not a double precision"))?,
        PlainType::Numeric(_) => numeric::to_binary(text).ok_or_else(|| bad("not a number"))?,
        PlainType::Date => {
            let text = current_form(text);
            datetime::parse_date(&text, canonical_dates)
                .map_err(|_| bad("stored plaintext is not a date"))?
                .to_be_bytes()
                .to_vec()
        }
        PlainType::Timestamp => {
            let text = current_form(text);
            datetime::parse_timestamp(&text, canonical_dates)
                .map_err(|_| bad("stored plaintext is not a timestamp"))?
                .to_be_bytes()
                .to_vec()
        }
        PlainType::Timestamptz => {
            let text = current_form(text);
            datetime::parse_timestamptz(&text, canonical_dates)
                .map_err(|_| bad("stored plaintext is not a timestamptz"))?
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

/// A stored date or time (canonical text) as the session prints it.
fn dated_text(ty: &PlainType, canonical: &str, dates: &DateSettings) -> Option<String> {
    let text = current_form(canonical);
    let stored = DateSettings::canonical();
    Some(match ty {
        PlainType::Date => {
            datetime_style::styled_date(datetime::parse_date(&text, stored).ok()?, dates)
        }
        PlainType::Timestamp => {
            datetime_style::styled_timestamp(datetime::parse_timestamp(&text, stored).ok()?, dates)
        }
        _ => datetime_style::styled_timestamptz(
            datetime::parse_timestamptz(&text, stored).ok()?,
            dates,
        ),
    })
}

/// Whether a stored date or time has the astronomical year of a BC date sealed from binary by
/// an older pgseal (see [`current_form`]).
fn is_old_bc_form(canonical: &[u8]) -> bool {
    canonical.starts_with(b"0000-")
        || canonical.first() == Some(&b'-') && canonical.get(1).is_some_and(u8::is_ascii_digit)
}

/// A stored date or timestamp canonical form as the current parser reads it. Before dates
/// had their own module, a year at or before 1 BC arriving in binary was written with an
/// astronomical year (`0000-12-31` for 1 BC, `-044-03-15` for 45 BC) where PostgreSQL writes
/// `0001-12-31 BC`: those stored forms are rewritten here so they still render in binary.
fn current_form(text: &str) -> std::borrow::Cow<'_, str> {
    let (year, rest) = if let Some(rest) = text.strip_prefix("0000-") {
        (0i64, &text[4..4 + 1 + rest.len()])
    } else if let Some(digits) = text
        .strip_prefix('-')
        .filter(|t| t.starts_with(|c: char| c.is_ascii_digit()))
    {
        let end = digits.find('-').unwrap_or(digits.len());
        match digits[..end].parse::<i64>() {
            Ok(year) => (-year, &digits[end..]),
            Err(_) => return text.into(),
        }
    } else {
        return text.into();
    };
    format!("{:04}{rest} BC", 1 - year).into()
}

/// `boolin`: any prefix of true/false/yes/no, `on`, `of[f]`, `1`, `0`, case-insensitive.
fn parse_bool(text: &str) -> Option<bool> {
    let lower = text.to_ascii_lowercase();
    let prefix_of = |word: &str| !lower.is_empty() && word.starts_with(lower.as_str());
    match lower.as_bytes().first()? {
        b't' if prefix_of("true") => Some(true),
        b'f' if prefix_of("false") => Some(false),
        b'y' if prefix_of("yes") => Some(true),
        b'n' if prefix_of("no") => Some(false),
        b'o' if lower.len() >= 2 && prefix_of("on") => Some(true),
        b'o' if lower.len() >= 2 && prefix_of("off") => Some(false),
        b'1' if lower.len() == 1 => Some(true),
        b'0' if lower.len() == 1 => Some(false),
        _ => None,
    }
}

/// `int2in`/`int4in`/`int8in`: an optional sign and decimal digits (spaces already trimmed).
fn integer_text<T>(ty: &PlainType, text: &str, reason: &'static str) -> Result<String, ValueError>
where
    T: std::str::FromStr<Err = std::num::ParseIntError> + ToString,
{
    use std::num::IntErrorKind;
    text.parse::<T>()
        .map(|v| v.to_string())
        .map_err(|e| match e.kind() {
            IntErrorKind::PosOverflow | IntErrorKind::NegOverflow => {
                refused(ty, OUT_OF_RANGE, "22003")
            }
            _ => invalid(ty, reason),
        })
}

/// Strips what C's `isspace` calls space from both ends, as PostgreSQL's input functions do
/// (not Unicode spaces, which PostgreSQL refuses).
fn trim_spaces(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_ascii() && datetime::is_space(c as u8))
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

/// Why a float text was refused.
#[derive(Debug, PartialEq, Eq)]
enum FloatError {
    Syntax,
    OutOfRange,
}

fn float_error(ty: &PlainType, error: FloatError) -> ValueError {
    match error {
        FloatError::Syntax => invalid(ty, "not a floating-point number"),
        FloatError::OutOfRange => refused(ty, OUT_OF_RANGE, "22003"),
    }
}

/// Reads a float as `float8in` does with glibc's `strtod` (decimal forms and the words NaN,
/// Inf, Infinity with a sign, case-insensitive; hexadecimal floats are refused): a finite
/// value that rounds to zero or to infinity is out of range. With `single`, the value must
/// also fit a `real`.
fn parse_float(text: &str, single: bool) -> Result<f64, FloatError> {
    let lower = text.to_ascii_lowercase();
    let word = lower.trim_start_matches(['+', '-']);
    if matches!(word, "nan" | "inf" | "infinity") && lower.len() - word.len() <= 1 {
        let negative = lower.starts_with('-');
        return Ok(match word {
            "nan" => f64::NAN,
            _ if negative => f64::NEG_INFINITY,
            _ => f64::INFINITY,
        });
    }
    if !lower
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'))
    {
        return Err(FloatError::Syntax);
    }
    let value: f64 = lower.parse().map_err(|_| FloatError::Syntax)?;
    let mantissa = lower.split('e').next().unwrap_or("");
    let nonzero = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b));
    let narrowed = if single {
        f64::from(value as f32)
    } else {
        value
    };
    if narrowed.is_infinite() || (narrowed == 0.0 && nonzero) {
        return Err(FloatError::OutOfRange);
    }
    Ok(value)
}

/// The canonical text of a float: the shortest text that reads back as the same value, with
/// PostgreSQL's names for the special values.
///
/// The digits are PostgreSQL's (both print the shortest round-trip digits) but not the
/// layout: PostgreSQL switches to exponent notation (`1e+20`, `1e-05`) outside
/// 1e-4 <= |x| < 1e15 (1e6 for `real`) where this prints every digit. Sealed values hold this
/// form already, so it stays until stored values can be migrated (see the input-forms test).
fn format_float(value: f64, single: bool) -> String {
    if value.is_nan() {
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
    }
}

/// A float's canonical text as PostgreSQL prints it: the same shortest digits, in exponent
/// notation (`1e+20`, `1.5e-05`) outside 1e-4 <= |x| < 1e15 (1e6 for `real`). The canonical
/// form keeps fixed notation, which sealed values already hold; only what clients read follows
/// PostgreSQL.
pub fn postgres_float_text(canonical: &str, single: bool) -> String {
    let scientific = if single {
        match canonical.parse::<f32>() {
            Ok(value) if value.is_finite() && value != 0.0 => format!("{value:e}"),
            _ => return canonical.to_string(),
        }
    } else {
        match canonical.parse::<f64>() {
            Ok(value) if value.is_finite() && value != 0.0 => format!("{value:e}"),
            _ => return canonical.to_string(),
        }
    };
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return canonical.to_string();
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return canonical.to_string();
    };
    let decimal_below = if single { 6 } else { 15 };
    if (-4..decimal_below).contains(&exponent) {
        return canonical.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// Canonical text of a float written as text.
fn float_text(text: &str, single: bool) -> Result<String, FloatError> {
    Ok(format_float(parse_float(text, single)?, single))
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
        canonical_from_text(&ty, text, &DateSettings::unknown())
    }

    #[test]
    fn floats_are_read_in_postgres_layout() {
        for (canonical, single, read) in [
            ("100000000000000000000", false, "1e+20"),
            ("0.00001", false, "1e-05"),
            ("0.0001", false, "0.0001"),
            ("100000000000000", false, "100000000000000"),
            ("1000000000000000", false, "1e+15"),
            ("-12345600000000000000", false, "-1.23456e+19"),
            ("1000000", true, "1e+06"),
            ("123456", true, "123456"),
            ("0", false, "0"),
            ("-0", false, "-0"),
            ("NaN", false, "NaN"),
            ("-Infinity", true, "-Infinity"),
        ] {
            assert_eq!(postgres_float_text(canonical, single), read, "{canonical}");
        }
    }

    #[test]
    fn text_forms_are_canonicalized() {
        assert_eq!(
            canon(PlainType::Date, " 1985-05-17 ").unwrap(),
            "1985-05-17"
        );
        assert!(canon(PlainType::Date, "1985-02-30").is_err());
        // Day or month first depends on the session's DateStyle: refused either way.
        assert!(canon(PlainType::Date, "17/05/1985").is_err());
        assert!(canon(PlainType::Date, "05/17/1985").is_err());
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
        // Timestamps go on to 294276 AD, as in PostgreSQL (the `time` crate stopped at 9999).
        assert!(canon(PlainType::Timestamptz, "9999-12-31 23:00:00-05").is_ok());
        assert!(canon(PlainType::Timestamptz, "294276-12-31 23:00:00-05").is_err());
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
            let canonical = canonical_from_text(ty, text, DateSettings::canonical()).unwrap();
            let binary = wire_from_canonical(
                ty,
                Format::Binary,
                canonical.as_bytes(),
                DateSettings::canonical(),
            )
            .unwrap();
            let back = canonical_from_wire(ty, Format::Binary, &binary, DateSettings::canonical())
                .unwrap();
            assert_eq!(String::from_utf8(back).unwrap(), canonical, "{ty:?}");
            // Appending gives the same bytes as the buffer-returning form, in both formats.
            for format in [Format::Text, Format::Binary] {
                let mut out = BytesMut::from(&b"row so far"[..]);
                put_wire_from_canonical(
                    ty,
                    format,
                    canonical.as_bytes(),
                    DateSettings::canonical(),
                    &mut out,
                )
                .unwrap();
                let whole = wire_from_canonical(
                    ty,
                    format,
                    canonical.as_bytes(),
                    DateSettings::canonical(),
                )
                .unwrap();
                assert_eq!(&out[10..], &whole[..], "{ty:?} {format:?}");
            }
        }
        let mut out = BytesMut::new();
        assert!(
            put_wire_from_canonical(
                &PlainType::Text,
                Format::Text,
                br"\xff",
                DateSettings::canonical(),
                &mut out
            )
            .is_ok()
        );
        assert!(
            put_wire_from_canonical(
                &PlainType::Text,
                Format::Text,
                &[0xff],
                DateSettings::canonical(),
                &mut out
            )
            .is_err()
        );
        assert_eq!(
            wire_from_canonical(
                &PlainType::Char(4),
                Format::Text,
                b"ab",
                DateSettings::canonical()
            )
            .unwrap(),
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
                assert_eq!(
                    canonical_from_wire(ty, *format, value, DateSettings::canonical()).unwrap(),
                    *value
                );
            }
        }
    }

    #[test]
    fn dates_before_year_one_are_written_as_postgres_writes_them() {
        // Binary input of years at or before 1 BC used to give astronomical years
        // (`0000-12-31`, `-044-03-15`); PostgreSQL writes `0001-12-31 BC`, `0045-03-15 BC`.
        for (days, text) in [(-730120, "0001-12-31 BC"), (-746117, "0044-03-15 BC")] {
            let binary = i32::to_be_bytes(days);
            let canonical = canonical_from_wire(
                &PlainType::Date,
                Format::Binary,
                &binary,
                DateSettings::canonical(),
            )
            .unwrap();
            assert_eq!(String::from_utf8(canonical).unwrap(), text);
            assert_eq!(
                wire_from_canonical(
                    &PlainType::Date,
                    Format::Binary,
                    text.as_bytes(),
                    DateSettings::canonical()
                )
                .unwrap(),
                binary
            );
        }
        // The forms stored before still render, in binary and in text.
        for (ty, legacy, current) in [
            (PlainType::Date, "0000-12-31", "0001-12-31 BC"),
            (PlainType::Date, "-044-03-15", "0045-03-15 BC"),
            (
                PlainType::Timestamptz,
                "0000-12-31 10:00:00+00",
                "0001-12-31 10:00:00+00 BC",
            ),
        ] {
            assert_eq!(current_form(legacy), current);
            let mut out = BytesMut::new();
            put_wire_from_canonical(
                &ty,
                Format::Text,
                legacy.as_bytes(),
                DateSettings::canonical(),
                &mut out,
            )
            .unwrap();
            assert_eq!(&out[..], current.as_bytes(), "{legacy}");
        }
        assert_eq!(current_form("-infinity"), "-infinity");
        assert_eq!(current_form("1985-05-17"), "1985-05-17");
    }

    #[test]
    fn infinities_round_trip_in_binary() {
        for (ty, text, binary) in [
            (PlainType::Date, "infinity", i32::MAX.to_be_bytes().to_vec()),
            (
                PlainType::Date,
                "-infinity",
                i32::MIN.to_be_bytes().to_vec(),
            ),
            (
                PlainType::Timestamp,
                "infinity",
                i64::MAX.to_be_bytes().to_vec(),
            ),
            (
                PlainType::Timestamptz,
                "-infinity",
                i64::MIN.to_be_bytes().to_vec(),
            ),
        ] {
            assert_eq!(
                canonical_from_text(&ty, text, DateSettings::canonical()).unwrap(),
                text
            );
            assert_eq!(
                wire_from_canonical(
                    &ty,
                    Format::Binary,
                    text.as_bytes(),
                    DateSettings::canonical()
                )
                .unwrap(),
                binary
            );
            assert_eq!(
                canonical_from_wire(&ty, Format::Binary, &binary, DateSettings::canonical())
                    .unwrap(),
                text.as_bytes()
            );
        }
    }

    #[test]
    fn scalar_forms_read_as_postgres_reads_them() {
        for (ty, input, output) in [
            (PlainType::Bool, "tr", "t"),
            (PlainType::Bool, " Fa ", "f"),
            (PlainType::Bool, "of", "f"),
            (PlainType::Bool, "ON", "t"),
            (PlainType::Int4, " +42 ", "42"),
            (PlainType::Int8, "-0", "0"),
            (PlainType::Float8, "+inf", "Infinity"),
            (PlainType::Float8, "-nan", "NaN"),
        ] {
            assert_eq!(
                canonical_from_text(&ty, input, DateSettings::canonical()).unwrap(),
                output,
                "{input:?}"
            );
        }
        // A subnormal double is in range, as strtod leaves it.
        assert!(
            canonical_from_text(&PlainType::Float8, "2.5e-310", DateSettings::canonical()).is_ok()
        );
        assert_eq!(
            canonical_from_text(&PlainType::Float8, "4.9e-324", DateSettings::canonical()).unwrap(),
            5e-324_f64.to_string()
        );
        for (ty, input, code) in [
            (PlainType::Bool, "o", "22P02"),
            (PlainType::Bool, "01", "22P02"),
            (PlainType::Bool, "truex", "22P02"),
            (PlainType::Int4, "2147483648", "22003"),
            (PlainType::Int2, "1_000", "22P02"),
            (PlainType::Int4, "\u{a0}42", "22P02"),
            (PlainType::Float8, "1e-400", "22003"),
            (PlainType::Float8, "1e400", "22003"),
            (PlainType::Float4, "3.5e38", "22003"),
            (PlainType::Float4, "1e-46", "22003"),
            (PlainType::Float8, "0x10", "22P02"),
            (PlainType::Numeric(Some((5, 2))), "Infinity", "22003"),
        ] {
            assert_eq!(
                canonical_from_text(&ty, input, DateSettings::canonical())
                    .unwrap_err()
                    .sqlstate(),
                code,
                "{ty:?} {input:?}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn no_text_panics_canonicalization(text in "\\PC{0,40}") {
            for ty in [
                PlainType::Bool,
                PlainType::Int2,
                PlainType::Int4,
                PlainType::Int8,
                PlainType::Numeric(None),
                PlainType::Numeric(Some((5, 2))),
                PlainType::Float4,
                PlainType::Float8,
                PlainType::Date,
                PlainType::Timestamp,
                PlainType::Timestamptz,
                PlainType::Uuid,
            ] {
                if let Ok(canonical) = canonical_from_text(&ty, &text, DateSettings::canonical()) {
                    // What is accepted renders in binary, and reads back the same.
                    let binary = wire_from_canonical(&ty, Format::Binary, canonical.as_bytes(), DateSettings::canonical());
                    proptest::prop_assert!(binary.is_ok(), "{:?}", ty);
                    let _ = wire_from_canonical(&ty, Format::Binary, text.as_bytes(), DateSettings::canonical());
                }
            }
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
        assert!(
            canonical_from_wire(
                &PlainType::Date,
                Format::Binary,
                &[0, 0],
                DateSettings::canonical()
            )
            .is_err()
        );
        assert!(
            canonical_from_wire(
                &PlainType::Bool,
                Format::Binary,
                &[7],
                DateSettings::canonical()
            )
            .is_err()
        );
        assert!(
            canonical_from_wire(
                &PlainType::Jsonb,
                Format::Binary,
                &[2, b'{'],
                DateSettings::canonical()
            )
            .is_err()
        );
        assert!(
            canonical_from_wire(
                &PlainType::Text,
                Format::Binary,
                &[0xff],
                DateSettings::canonical()
            )
            .is_err()
        );
    }
}
