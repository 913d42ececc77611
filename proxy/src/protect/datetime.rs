//! `date`, `timestamp` and `timestamptz` input and output as PostgreSQL 15 reads and prints them.
//!
//! Input follows PostgreSQL's own two steps (`ParseDateTime`, then `DecodeDateTime` in
//! `src/backend/utils/adt/datetime.c`): the text is cut into fields (numbers, dates, times,
//! numeric zones, words), then each field is read by what came before it, with the same masks,
//! the same two-digit-year rule, the same range checks and the same rounding of fractional
//! seconds (`rint` of the fraction times a million). A numeric date is read in the session's
//! `DateStyle` order, and a `timestamptz` without a zone takes the session's `TimeZone`
//! ([`DateSettings`]); full zone names (`Europe/Paris`) come from the zone database. What
//! PostgreSQL rejects is rejected with the SQLSTATE it would use. pgseal refuses, on purpose,
//! what it cannot compute without the server: the time-dependent words (`now`, `today`,
//! `tomorrow`, `yesterday`), zone abbreviations other than UTC/GMT/Z (their meanings come from
//! the server's `timezone_abbreviations` file), field labels (`J2451545`, `y2001m02d04`), and
//! what depends on a setting pgseal does not know at that moment.
//!
//! Values are held as PostgreSQL holds them: days since 2000-01-01 for a date, microseconds
//! since 2000-01-01 00:00 for a timestamp (UTC for `timestamptz`), with the extreme integers as
//! `-infinity` and `infinity`. The canonical output is PostgreSQL's ISO text in UTC:
//! `0044-03-15 BC`, `2024-11-03 09:15:00.25+00`, `infinity` (other styles and zones:
//! `datetime_style`).

use super::date_settings::{self, DateOrder, DateSettings};

/// Days since 2000-01-01 of `-infinity` (PostgreSQL's `DATEVAL_NOBEGIN`).
pub const DATE_NEG_INFINITY: i32 = i32::MIN;
/// Days since 2000-01-01 of `infinity` (PostgreSQL's `DATEVAL_NOEND`).
pub const DATE_INFINITY: i32 = i32::MAX;
/// Microseconds since 2000-01-01 of `-infinity` (PostgreSQL's `DT_NOBEGIN`).
pub const TIMESTAMP_NEG_INFINITY: i64 = i64::MIN;
/// Microseconds since 2000-01-01 of `infinity` (PostgreSQL's `DT_NOEND`).
pub const TIMESTAMP_INFINITY: i64 = i64::MAX;

pub(super) const POSTGRES_EPOCH_JDATE: i64 = 2_451_545;
const UNIX_EPOCH_JDATE: i64 = 2_440_588;
pub(super) const USECS_PER_DAY: i64 = 86_400_000_000;
pub(super) const USECS_PER_SEC: i64 = 1_000_000;
/// First Julian day not representable as a date (`DATE_END_JULIAN`).
const DATE_END_JULIAN: i64 = 2_147_483_494;
/// 4714-11-24 00:00:00 BC (`MIN_TIMESTAMP`).
const MIN_TIMESTAMP: i64 = -211_813_488_000_000_000;
/// 294277-01-01 00:00:00 (`END_TIMESTAMP`).
const END_TIMESTAMP: i64 = 9_223_371_331_200_000_000;
/// Most fields PostgreSQL cuts an input into (`MAXDATEFIELDS`).
const MAX_FIELDS: usize = 25;
/// `MAXDATELEN`: the parse buffer holds at most this many bytes of fields (plus terminators).
const MAX_DATE_LEN: usize = 128;
/// Largest hour of a numeric zone offset (`MAX_TZDISP_HOUR`).
const MAX_TZDISP_HOUR: i64 = 15;

/// Why a date or timestamp text was refused: a reason that names the problem (never the
/// value) and the SQLSTATE PostgreSQL (or pgseal, for what it refuses on purpose) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DateTimeError {
    /// What is wrong, without the value.
    pub reason: &'static str,
    /// The SQLSTATE.
    pub sqlstate: &'static str,
}

const fn error(reason: &'static str, sqlstate: &'static str) -> DateTimeError {
    DateTimeError { reason, sqlstate }
}

/// `DTERR_BAD_FORMAT`.
const BAD_FORMAT: DateTimeError = error("invalid input syntax", "22007");
/// `DTERR_FIELD_OVERFLOW` and `DTERR_MD_FIELD_OVERFLOW`.
const FIELD_OVERFLOW: DateTimeError = error("date/time field value out of range", "22008");
/// `DTERR_TZDISP_OVERFLOW`.
const TZ_OVERFLOW: DateTimeError = error("time zone displacement out of range", "22009");
const DATE_OUT_OF_RANGE: DateTimeError = error("date out of range", "22008");
const TIMESTAMP_OUT_OF_RANGE: DateTimeError = error("timestamp out of range", "22008");
const NAMED_ZONE: DateTimeError = error(
    "time zone abbreviations other than UTC, GMT and Z are not supported by pgseal (write a \
     numeric offset such as +02:00, or a full zone name such as Europe/Paris)",
    "22023",
);
const UNKNOWN_ZONE: DateTimeError = error("time zone not recognized", "22023");
const TIME_DEPENDENT: DateTimeError = error(
    "now, today, tomorrow and yesterday are not supported by pgseal: it cannot compute a \
     time-dependent value on the server's clock",
    "0A000",
);
const FIELD_LABELS: DateTimeError = error(
    "field labels and Julian days (J, y/m/d/h/mm/s, julian) are not supported by pgseal",
    "22007",
);
const ORDER_DEPENDS: DateTimeError = error(
    "a date written with a day or month first depends on the session's DateStyle (MDY, DMY or \
     YMD), which pgseal does not know here (a change of it is under way in the same pipeline): \
     write it year first (YYYY-MM-DD), or send it after the change has completed",
    "22007",
);
const NO_ZONE: DateTimeError = error(
    "this timestamptz has no time zone and pgseal does not know the session's TimeZone here \
     (it cannot read the setting, or a change of it is under way in the same pipeline): write \
     an offset such as +01, or send it after the change has completed",
    "0A000",
);

// Field kinds of ParseDateTime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Number,
    Date,
    Time,
    Tz,
    /// A word (`DTK_STRING`) or a signed word (`DTK_SPECIAL`): looked up the same way.
    Word,
}

// Mask bits (PostgreSQL's DTK_M of each field type).
const RESERV: u32 = 1 << 0;
const MONTH: u32 = 1 << 1;
const YEAR: u32 = 1 << 2;
const DAY: u32 = 1 << 3;
const TZ: u32 = 1 << 5;
const AMPM: u32 = 1 << 9;
const HOUR: u32 = 1 << 10;
const MINUTE: u32 = 1 << 11;
const SECOND: u32 = 1 << 12;
const DOY: u32 = 1 << 15;
const DOW: u32 = 1 << 16;
const ADBC: u32 = 1 << 18;
const DATE_M: u32 = YEAR | MONTH | DAY;
const TIME_M: u32 = HOUR | MINUTE | SECOND;

/// What a date/time text denotes before it becomes a value of one type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    Date,
    Epoch,
    Late,
    Early,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meridian {
    Hr24,
    Am,
    Pm,
}

/// PostgreSQL's `struct pg_tm` plus fractional seconds and the zone (seconds west of UTC, as
/// PostgreSQL keeps it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tm {
    year: i64,
    mon: i64,
    mday: i64,
    hour: i64,
    min: i64,
    sec: i64,
    yday: i64,
    fsec: i64,
    tz: i64,
}

struct Decoded {
    special: Special,
    tm: Tm,
    fmask: u32,
    /// A full zone name written in the value (`Europe/Paris`).
    named_zone: Option<jiff::tz::TimeZone>,
}

/// Which type is being read: only the buffer size PostgreSQL gives the parse differs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Date,
    Timestamp,
}

/// Reads a `date` as PostgreSQL's `date_in` does under `settings` (a time and a zone are
/// allowed and ignored); returns days since 2000-01-01, or [`DATE_INFINITY`] /
/// [`DATE_NEG_INFINITY`].
pub fn parse_date(text: &str, settings: &DateSettings) -> Result<i32, DateTimeError> {
    if let Some(days) = plain_iso_date(text) {
        return Ok(days);
    }
    let decoded = decode(text, Target::Date, settings.order())?;
    match decoded.special {
        Special::Late => return Ok(DATE_INFINITY),
        Special::Early => return Ok(DATE_NEG_INFINITY),
        Special::Epoch => return Ok((UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) as i32),
        Special::Date => {}
    }
    let tm = decoded.tm;
    if !valid_julian(tm.year, tm.mon, tm.mday) {
        return Err(DATE_OUT_OF_RANGE);
    }
    let days = date2j(tm.year, tm.mon, tm.mday) - POSTGRES_EPOCH_JDATE;
    if !valid_date(days) {
        return Err(DATE_OUT_OF_RANGE);
    }
    Ok(days as i32)
}

/// The fast path of what drivers send most: exactly `YYYY-MM-DD`, a valid date of years 1 to
/// 9999, read without the general parser (which gives the same days, and handles the rest).
fn plain_iso_date(text: &str) -> Option<i32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        b[range].iter().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if year < 1 || !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    i32::try_from(date2j(year, month, day) - POSTGRES_EPOCH_JDATE).ok()
}

/// Reads a `timestamp` (without time zone) as PostgreSQL's `timestamp_in` does under
/// `settings`: a zone, when present, is checked and then dropped. Returns microseconds since
/// 2000-01-01 00:00, or [`TIMESTAMP_INFINITY`] / [`TIMESTAMP_NEG_INFINITY`].
pub fn parse_timestamp(text: &str, settings: &DateSettings) -> Result<i64, DateTimeError> {
    let decoded = decode(text, Target::Timestamp, settings.order())?;
    special_timestamp(&decoded).map_or_else(|| tm_to_timestamp(&decoded.tm, None), Ok)
}

/// Reads a `timestamptz` as PostgreSQL's `timestamptz_in` does under `settings`, the zone
/// applied: the one written (an offset, or a full name whose offset at that local time the
/// zone database gives), else the session's `TimeZone`. Returns UTC microseconds since
/// 2000-01-01 00:00, or [`TIMESTAMP_INFINITY`] / [`TIMESTAMP_NEG_INFINITY`]. A value without
/// a zone while the session's is unknown is refused (0A000).
pub fn parse_timestamptz(text: &str, settings: &DateSettings) -> Result<i64, DateTimeError> {
    let decoded = decode(text, Target::Timestamp, settings.order())?;
    if let Some(micros) = special_timestamp(&decoded) {
        return Ok(micros);
    }
    let tz = match &decoded.named_zone {
        Some(zone) => date_settings::offset_west_at_local(zone, local_micros(&decoded.tm)),
        None if decoded.fmask & TZ != 0 => decoded.tm.tz,
        None => settings
            .offset_west_at_local(local_micros(&decoded.tm))
            .ok_or(NO_ZONE)?,
    };
    tm_to_timestamp(&decoded.tm, Some(tz))
}

/// The local time of a broken-down value as microseconds since 2000-01-01 00:00, for looking
/// up its zone's offset (out-of-range values, refused right after, give any answer).
fn local_micros(tm: &Tm) -> i64 {
    tm_to_timestamp(tm, None).unwrap_or(0)
}

fn special_timestamp(decoded: &Decoded) -> Option<i64> {
    match decoded.special {
        Special::Late => Some(TIMESTAMP_INFINITY),
        Special::Early => Some(TIMESTAMP_NEG_INFINITY),
        Special::Epoch => Some((UNIX_EPOCH_JDATE - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY),
        Special::Date => None,
    }
}

/// Whether `days` since 2000-01-01 is a date PostgreSQL stores (an infinity or within
/// 4714-11-24 BC to 5874897-12-31), as `date_recv` checks a binary value.
pub fn date_in_range(days: i32) -> bool {
    days == DATE_INFINITY || days == DATE_NEG_INFINITY || valid_date(i64::from(days))
}

/// Whether `micros` since 2000-01-01 is a timestamp PostgreSQL stores (an infinity or within
/// 4714-11-24 BC to 294276-12-31), as `timestamp_recv` checks a binary value.
pub fn timestamp_in_range(micros: i64) -> bool {
    micros == TIMESTAMP_INFINITY || micros == TIMESTAMP_NEG_INFINITY || valid_timestamp(micros)
}

/// PostgreSQL's ISO text of a date given as days since 2000-01-01 (`1985-05-17`,
/// `0044-03-15 BC`, `infinity`). Days outside [`date_in_range`] are printed as PostgreSQL
/// would print them too, but never come from a parse.
pub fn format_date(days: i32) -> String {
    match days {
        DATE_INFINITY => return "infinity".into(),
        DATE_NEG_INFINITY => return "-infinity".into(),
        _ => {}
    }
    let (year, month, day) = j2date(i64::from(days) + POSTGRES_EPOCH_JDATE);
    let mut out = String::with_capacity(13);
    push_ymd(&mut out, year, month, day);
    if year <= 0 {
        out.push_str(" BC");
    }
    out
}

/// PostgreSQL's ISO text of a timestamp given as microseconds since 2000-01-01 00:00
/// (`2024-11-03 10:15:00`, `…+00` with `utc_suffix` for `timestamptz` in UTC, ` BC` last,
/// `infinity`).
pub fn format_timestamp(micros: i64, utc_suffix: bool) -> String {
    match micros {
        TIMESTAMP_INFINITY => return "infinity".into(),
        TIMESTAMP_NEG_INFINITY => return "-infinity".into(),
        _ => {}
    }
    let days = micros.div_euclid(USECS_PER_DAY);
    let time = micros.rem_euclid(USECS_PER_DAY);
    let (year, month, day) = j2date(days + POSTGRES_EPOCH_JDATE);
    let mut out = String::with_capacity(32);
    push_ymd(&mut out, year, month, day);
    let seconds = time / USECS_PER_SEC;
    let fraction = time % USECS_PER_SEC;
    push_digits(&mut out, seconds / 3600, 2, ' ');
    push_digits(&mut out, seconds / 60 % 60, 2, ':');
    push_digits(&mut out, seconds % 60, 2, ':');
    if fraction != 0 {
        let mut digits = format!("{fraction:06}");
        while digits.ends_with('0') {
            digits.pop();
        }
        out.push('.');
        out.push_str(&digits);
    }
    if utc_suffix {
        out.push_str("+00");
    }
    if year <= 0 {
        out.push_str(" BC");
    }
    out
}

/// `YYYY-MM-DD`, the year as PostgreSQL prints it (at least four digits, BC years counted
/// from 1).
pub(super) fn push_ymd(out: &mut String, year: i64, month: i64, day: i64) {
    let shown = if year > 0 { year } else { 1 - year };
    let text = shown.to_string();
    for _ in text.len()..4 {
        out.push('0');
    }
    out.push_str(&text);
    push_digits(out, month, 2, '-');
    push_digits(out, day, 2, '-');
}

pub(super) fn push_digits(out: &mut String, value: i64, width: usize, before: char) {
    out.push(before);
    let text = value.to_string();
    for _ in text.len()..width {
        out.push('0');
    }
    out.push_str(&text);
}

fn valid_date(days: i64) -> bool {
    (-POSTGRES_EPOCH_JDATE..DATE_END_JULIAN - POSTGRES_EPOCH_JDATE).contains(&days)
}

fn valid_timestamp(micros: i64) -> bool {
    (MIN_TIMESTAMP..END_TIMESTAMP).contains(&micros)
}

/// `IS_VALID_JULIAN`: 4714-11-01 BC (year -4713) up to 5874898-05-31.
fn valid_julian(year: i64, month: i64, _day: i64) -> bool {
    (year > -4713 || (year == -4713 && month >= 11))
        && (year < 5_874_898 || (year == 5_874_898 && month < 6))
}

/// PostgreSQL's `date2j` (proleptic Gregorian, year 0 = 1 BC).
fn date2j(year: i64, month: i64, day: i64) -> i64 {
    let (year, month) = if month > 2 {
        (year + 4800, month + 1)
    } else {
        (year + 4799, month + 13)
    };
    let century = year.div_euclid(100);
    let mut julian = year * 365 - 32167;
    julian += year.div_euclid(4) - century + century.div_euclid(4);
    julian + 7834 * month / 256 + day
}

/// PostgreSQL's `j2date`.
pub(super) fn j2date(jd: i64) -> (i64, i64, i64) {
    // PostgreSQL computes in unsigned arithmetic, exact from Julian day -32044 on (printing
    // the earliest timestamps in zones west of UTC reaches a day or so below 0).
    let mut julian = jd.max(-32_044) + 32_044;
    let quad = julian / 146_097;
    let extra = (julian - quad * 146_097) * 4 + 3;
    julian += 60 + quad * 3 + extra / 146_097;
    let quad = julian / 1461;
    julian -= quad * 1461;
    let mut y = julian * 4 / 1461;
    julian = if y != 0 {
        (julian + 305) % 365
    } else {
        (julian + 306) % 366
    } + 123;
    y += quad * 4;
    let quad = julian * 2141 / 65536;
    (y - 4800, (quad + 10) % 12 + 1, julian - 7834 * quad / 256)
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    const DAYS: [i64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let index = (month - 1).clamp(0, 11) as usize;
    DAYS[index] + i64::from(index == 1 && is_leap(year))
}

/// `tm2timestamp`: the broken-down time (and zone, seconds west of UTC) as microseconds.
fn tm_to_timestamp(tm: &Tm, tz: Option<i64>) -> Result<i64, DateTimeError> {
    if !valid_julian(tm.year, tm.mon, tm.mday) {
        return Err(TIMESTAMP_OUT_OF_RANGE);
    }
    let date = i128::from(date2j(tm.year, tm.mon, tm.mday) - POSTGRES_EPOCH_JDATE);
    let time = (((i128::from(tm.hour) * 60 + i128::from(tm.min)) * 60 + i128::from(tm.sec))
        * i128::from(USECS_PER_SEC))
        + i128::from(tm.fsec);
    let result = date * i128::from(USECS_PER_DAY) + time;
    let Ok(mut result) = i64::try_from(result) else {
        return Err(TIMESTAMP_OUT_OF_RANGE);
    };
    if (result < 0 && date > 0) || (result > 0 && date < -1) {
        return Err(TIMESTAMP_OUT_OF_RANGE);
    }
    if let Some(tz) = tz {
        result = result
            .checked_add(tz * USECS_PER_SEC)
            .ok_or(TIMESTAMP_OUT_OF_RANGE)?;
    }
    if !valid_timestamp(result) {
        return Err(TIMESTAMP_OUT_OF_RANGE);
    }
    Ok(result)
}

/// C's `isspace` in the C locale.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `ParseDateTime`: cuts the text into typed fields (letters lowered).
fn parse_fields(text: &str, target: Target) -> Result<Vec<(Kind, String)>, DateTimeError> {
    let bytes = text.as_bytes();
    let buffer = match target {
        Target::Date => MAX_DATE_LEN + 1,
        Target::Timestamp => MAX_DATE_LEN + MAX_FIELDS,
    };
    let mut used = 0usize;
    let mut fields: Vec<(Kind, String)> = Vec::new();
    let mut i = 0;
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    while i < bytes.len() {
        let c = bytes[i];
        if is_space(c) {
            i += 1;
            continue;
        }
        let mut field = String::new();
        let mut push = |field: &mut String, b: u8| -> Result<(), DateTimeError> {
            if used + 1 >= buffer {
                return Err(BAD_FORMAT);
            }
            used += 1;
            field.push(char::from(b.to_ascii_lowercase()));
            Ok(())
        };
        let kind;
        if c.is_ascii_digit() {
            while at(i).is_ascii_digit() {
                push(&mut field, at(i))?;
                i += 1;
            }
            if at(i) == b':' {
                kind = Kind::Time;
                push(&mut field, b':')?;
                i += 1;
                while at(i).is_ascii_digit() || at(i) == b':' || at(i) == b'.' {
                    push(&mut field, at(i))?;
                    i += 1;
                }
            } else if matches!(at(i), b'-' | b'/' | b'.') {
                let delim = at(i);
                push(&mut field, delim)?;
                i += 1;
                if at(i).is_ascii_digit() {
                    let mut k = if delim == b'.' {
                        Kind::Number
                    } else {
                        Kind::Date
                    };
                    while at(i).is_ascii_digit() {
                        push(&mut field, at(i))?;
                        i += 1;
                    }
                    if at(i) == delim {
                        k = Kind::Date;
                        push(&mut field, delim)?;
                        i += 1;
                        while at(i).is_ascii_digit() || at(i) == delim {
                            push(&mut field, at(i))?;
                            i += 1;
                        }
                    }
                    kind = k;
                } else {
                    kind = Kind::Date;
                    while at(i).is_ascii_alphanumeric() || at(i) == delim {
                        push(&mut field, at(i))?;
                        i += 1;
                    }
                }
            } else {
                kind = Kind::Number;
            }
        } else if c == b'.' {
            push(&mut field, c)?;
            i += 1;
            while at(i).is_ascii_digit() {
                push(&mut field, at(i))?;
                i += 1;
            }
            kind = Kind::Number;
        } else if c.is_ascii_alphabetic() {
            while at(i).is_ascii_alphabetic() {
                push(&mut field, at(i))?;
                i += 1;
            }
            let next = at(i);
            let is_date = matches!(next, b'-' | b'/' | b'.')
                || ((next == b'+' || next.is_ascii_digit()) && core_token(&field).is_none());
            if is_date {
                kind = Kind::Date;
                loop {
                    push(&mut field, at(i))?;
                    i += 1;
                    let b = at(i);
                    if !(matches!(b, b'+' | b'-' | b'/' | b'_' | b'.' | b':')
                        || b.is_ascii_alphanumeric())
                    {
                        break;
                    }
                }
            } else {
                kind = Kind::Word;
            }
        } else if c == b'+' || c == b'-' {
            push(&mut field, c)?;
            i += 1;
            while is_space(at(i)) {
                i += 1;
            }
            if at(i).is_ascii_digit() {
                kind = Kind::Tz;
                push(&mut field, at(i))?;
                i += 1;
                while at(i).is_ascii_digit() || matches!(at(i), b':' | b'.' | b'-') {
                    push(&mut field, at(i))?;
                    i += 1;
                }
            } else if at(i).is_ascii_alphabetic() {
                kind = Kind::Word;
                while at(i).is_ascii_alphabetic() {
                    push(&mut field, at(i))?;
                    i += 1;
                }
            } else {
                return Err(BAD_FORMAT);
            }
        } else if c.is_ascii_punctuation() {
            i += 1;
            continue;
        } else {
            return Err(BAD_FORMAT);
        }
        if fields.len() >= MAX_FIELDS {
            return Err(BAD_FORMAT);
        }
        // The field's terminating NUL.
        used += 1;
        fields.push((kind, field));
    }
    Ok(fields)
}

/// A word of PostgreSQL's core token table (`datetktbl`) as pgseal reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Early,
    Late,
    Epoch,
    /// now, today, tomorrow, yesterday.
    TimeDependent,
    Allballs,
    Ad,
    Bc,
    Am,
    Pm,
    Month(i64),
    Dow,
    Ignore,
    IsoTime,
    Units,
    DstModifier,
}

fn core_token(word: &str) -> Option<Token> {
    Some(match word {
        "-infinity" => Token::Early,
        "infinity" => Token::Late,
        "epoch" => Token::Epoch,
        "now" | "today" | "tomorrow" | "yesterday" => Token::TimeDependent,
        "allballs" => Token::Allballs,
        "ad" => Token::Ad,
        "bc" => Token::Bc,
        "am" => Token::Am,
        "pm" => Token::Pm,
        "jan" | "january" => Token::Month(1),
        "feb" | "february" => Token::Month(2),
        "mar" | "march" => Token::Month(3),
        "apr" | "april" => Token::Month(4),
        "may" => Token::Month(5),
        "jun" | "june" => Token::Month(6),
        "jul" | "july" => Token::Month(7),
        "aug" | "august" => Token::Month(8),
        "sep" | "sept" | "september" => Token::Month(9),
        "oct" | "october" => Token::Month(10),
        "nov" | "november" => Token::Month(11),
        "dec" | "december" => Token::Month(12),
        "sun" | "sunday" | "mon" | "monday" | "tue" | "tues" | "tuesday" | "wed" | "weds"
        | "wednesday" | "thu" | "thur" | "thurs" | "thursday" | "fri" | "friday" | "sat"
        | "saturday" => Token::Dow,
        "at" | "on" => Token::Ignore,
        "t" => Token::IsoTime,
        "d" | "dow" | "doy" | "h" | "isodow" | "isoyear" | "j" | "jd" | "julian" | "m" | "mm"
        | "s" | "y" => Token::Units,
        "dst" => Token::DstModifier,
        _ => return None,
    })
}

/// The zone abbreviations pgseal knows: the ones meaning UTC.
fn is_utc_abbreviation(word: &str) -> bool {
    matches!(word, "utc" | "gmt" | "z" | "zulu" | "ut")
}

/// `strtoint` over leading digits: (value, rest); no digits give 0 and the whole text.
fn leading_int(text: &str) -> Result<(i64, &str), DateTimeError> {
    let end = text
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(text.len());
    if end == 0 {
        return Ok((0, text));
    }
    let value: i64 = text[..end].parse().map_err(|_| FIELD_OVERFLOW)?;
    if value > i64::from(i32::MAX) {
        return Err(FIELD_OVERFLOW);
    }
    Ok((value, &text[end..]))
}

/// `atoi` over leading digits (saturating where C would overflow).
fn atoi(text: &str) -> i64 {
    let mut value: i64 = 0;
    for b in text.bytes().take_while(u8::is_ascii_digit) {
        value = value.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    value.min(i64::from(i32::MAX))
}

/// The fraction of a time field (`hh:mm:ss.ddd`, `mm:ss.ddd`): PostgreSQL 15 takes a lone
/// `.` there as no fraction (`10:00:00.` reads as `10:00:00`).
fn time_fraction(text: &str) -> Result<i64, DateTimeError> {
    if text == "." {
        Ok(0)
    } else {
        fractional_second(text)
    }
}

/// `ParseFractionalSecond`: `.ddd` as rounded microseconds.
fn fractional_second(text: &str) -> Result<i64, DateTimeError> {
    let digits = &text[1..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD_FORMAT);
    }
    Ok(round_fraction(text))
}

/// `rint(strtod(".ddd") * 1000000)`.
fn round_fraction(text: &str) -> i64 {
    let fraction: f64 = format!("0{text}").parse().unwrap_or(0.0);
    (fraction * 1_000_000.0).round_ties_even() as i64
}

/// `DecodeTimezone`: `±hh[:mm[:ss]]` or `±hhmm`; returns seconds west of UTC.
fn decode_timezone(text: &str) -> Result<i64, DateTimeError> {
    let negative = match text.as_bytes().first() {
        Some(b'+') => false,
        Some(b'-') => true,
        _ => return Err(BAD_FORMAT),
    };
    let overflow = |_| TZ_OVERFLOW;
    let (hr, rest) = leading_int(&text[1..]).map_err(overflow)?;
    let (mut hr, mut min, mut sec, mut rest) = (hr, 0, 0, rest);
    if let Some(after) = rest.strip_prefix(':') {
        let (m, r) = leading_int(after).map_err(overflow)?;
        min = m;
        rest = r;
        if let Some(after) = rest.strip_prefix(':') {
            let (s, r) = leading_int(after).map_err(overflow)?;
            sec = s;
            rest = r;
        }
    } else if rest.is_empty() && text.len() > 3 {
        min = hr % 100;
        hr /= 100;
    }
    if !(0..=MAX_TZDISP_HOUR).contains(&hr) || !(0..60).contains(&min) || !(0..60).contains(&sec) {
        return Err(TZ_OVERFLOW);
    }
    let east = (hr * 60 + min) * 60 + sec;
    if !rest.is_empty() {
        return Err(BAD_FORMAT);
    }
    Ok(if negative { east } else { -east })
}

/// `DecodeTime`: `hh:mm[:ss[.fff]]` or `mm:ss.fff`.
fn decode_time(text: &str, tm: &mut Tm) -> Result<(), DateTimeError> {
    let (hour, rest) = leading_int(text)?;
    let Some(rest) = rest.strip_prefix(':') else {
        return Err(BAD_FORMAT);
    };
    let (min, rest) = leading_int(rest)?;
    tm.hour = hour;
    tm.min = min;
    if rest.is_empty() {
        tm.sec = 0;
        tm.fsec = 0;
    } else if rest.starts_with('.') {
        tm.fsec = time_fraction(rest)?;
        tm.sec = tm.min;
        tm.min = tm.hour;
        tm.hour = 0;
    } else if let Some(rest) = rest.strip_prefix(':') {
        let (sec, rest) = leading_int(rest)?;
        tm.sec = sec;
        if rest.starts_with('.') {
            tm.fsec = time_fraction(rest)?;
        } else if !rest.is_empty() {
            return Err(BAD_FORMAT);
        } else {
            tm.fsec = 0;
        }
    } else {
        return Err(BAD_FORMAT);
    }
    if tm.min > 59 || tm.sec > 60 || tm.fsec > USECS_PER_SEC {
        return Err(FIELD_OVERFLOW);
    }
    Ok(())
}

/// `DecodeNumberField`: run-together `[yy]yymmdd`, `hhmmss`, `hhmm`, with a fraction.
/// Returns the mask of what it set.
fn decode_number_field(
    text: &str,
    fmask: u32,
    tm: &mut Tm,
    is2digits: &mut bool,
) -> Result<u32, DateTimeError> {
    let mut digits = text;
    if let Some(dot) = text.find('.') {
        // A lone `.` here is refused by PostgreSQL 15 (`100000.`), unlike in a time field.
        tm.fsec = fractional_second(&text[dot..])?;
        digits = &text[..dot];
    } else if fmask & DATE_M != DATE_M && digits.len() >= 6 {
        let len = digits.len();
        tm.mday = atoi(&digits[len - 2..]);
        tm.mon = atoi(&digits[len - 4..len - 2]);
        tm.year = atoi(&digits[..len - 4]);
        if len - 4 == 2 {
            *is2digits = true;
        }
        return Ok(DATE_M);
    }
    if fmask & TIME_M != TIME_M {
        match digits.len() {
            6 => {
                tm.sec = atoi(&digits[4..]);
                tm.min = atoi(&digits[2..4]);
                tm.hour = atoi(&digits[..2]);
                return Ok(TIME_M);
            }
            4 => {
                tm.sec = 0;
                tm.min = atoi(&digits[2..]);
                tm.hour = atoi(&digits[..2]);
                return Ok(TIME_M);
            }
            _ => {}
        }
    }
    Err(BAD_FORMAT)
}

/// `DecodeNumber`: one number, read by the fields seen so far and the session's DateStyle
/// `order`.
fn decode_number(
    text: &str,
    have_text_month: bool,
    order: DateOrder,
    fmask: u32,
    tm: &mut Tm,
    is2digits: &mut bool,
) -> Result<u32, DateTimeError> {
    let flen = text.len();
    let (val, rest) = leading_int(text)?;
    if rest.len() == text.len() {
        return Err(BAD_FORMAT);
    }
    if rest.starts_with('.') {
        if text.len() - rest.len() > 2 {
            return decode_number_field(text, fmask | DATE_M, tm, is2digits);
        }
        tm.fsec = fractional_second(rest)?;
    } else if !rest.is_empty() {
        return Err(BAD_FORMAT);
    }
    if flen == 3 && fmask & DATE_M == YEAR && (1..=366).contains(&val) {
        tm.yday = val;
        return Ok(DOY | MONTH | DAY);
    }
    let tmask = match fmask & DATE_M {
        0 => match order {
            _ if flen >= 3 => {
                tm.year = val;
                YEAR
            }
            DateOrder::Ymd => {
                tm.year = val;
                YEAR
            }
            DateOrder::Dmy => {
                tm.mday = val;
                DAY
            }
            DateOrder::Mdy => {
                tm.mon = val;
                MONTH
            }
        },
        YEAR => {
            tm.mon = val;
            MONTH
        }
        MONTH => {
            if have_text_month && (flen >= 3 || order == DateOrder::Ymd) {
                tm.year = val;
                YEAR
            } else {
                tm.mday = val;
                DAY
            }
        }
        m if m == YEAR | MONTH => {
            if have_text_month && flen >= 3 && *is2digits {
                tm.mday = tm.year;
                tm.year = val;
                *is2digits = false;
            } else {
                tm.mday = val;
            }
            DAY
        }
        DAY => {
            tm.mon = val;
            MONTH
        }
        m if m == MONTH | DAY => {
            tm.year = val;
            YEAR
        }
        DATE_M => return decode_number_field(text, fmask, tm, is2digits),
        _ => return Err(BAD_FORMAT),
    };
    if tmask == YEAR {
        *is2digits = flen <= 2;
    }
    Ok(tmask)
}

/// `DecodeDate`: a date field with separators (`1992-07-01`, `07/01/1992`, `1992-jul-01`).
fn decode_date(
    text: &str,
    order: DateOrder,
    mut fmask: u32,
    is2digits: &mut bool,
    tm: &mut Tm,
) -> Result<u32, DateTimeError> {
    let bytes = text.as_bytes();
    let mut parts: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < bytes.len() && parts.len() < MAX_FIELDS {
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i >= bytes.len() {
            return Err(BAD_FORMAT);
        }
        let start = i;
        if bytes[i].is_ascii_digit() {
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        } else {
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
        }
        parts.push(&text[start..i]);
        // The character after a run is overwritten by the terminator, whatever it was.
        if i < bytes.len() {
            i += 1;
        }
    }
    let mut tmask = 0;
    let mut have_text_month = false;
    let mut numeric = Vec::new();
    for part in parts {
        if part.as_bytes()[0].is_ascii_alphabetic() {
            let dmask = match core_token(part) {
                Some(Token::Ignore) => continue,
                Some(Token::Month(month)) => {
                    tm.mon = month;
                    have_text_month = true;
                    MONTH
                }
                _ => return Err(BAD_FORMAT),
            };
            if fmask & dmask != 0 {
                return Err(BAD_FORMAT);
            }
            fmask |= dmask;
            tmask |= dmask;
        } else {
            numeric.push(part);
        }
    }
    for part in numeric {
        let dmask = decode_number(part, have_text_month, order, fmask, tm, is2digits)?;
        if fmask & dmask != 0 {
            return Err(BAD_FORMAT);
        }
        fmask |= dmask;
        tmask |= dmask;
    }
    if fmask & !(DOY | TZ) != DATE_M {
        return Err(BAD_FORMAT);
    }
    Ok(tmask)
}

/// `DecodeDateTime` in DateStyle `order`, after `ParseDateTime`. Without an order, a text is
/// read only when every order reads it the same way (or refuses it the same way).
fn decode(text: &str, target: Target, order: Option<DateOrder>) -> Result<Decoded, DateTimeError> {
    if let Some(order) = order {
        return decode_in(text, target, order);
    }
    let mdy = decode_in(text, target, DateOrder::Mdy);
    let same = |other: &Result<Decoded, DateTimeError>| match (&mdy, other) {
        (Ok(a), Ok(b)) => {
            a.special == b.special
                && a.tm == b.tm
                && a.fmask == b.fmask
                && a.named_zone.as_ref().and_then(|z| z.iana_name())
                    == b.named_zone.as_ref().and_then(|z| z.iana_name())
        }
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    if same(&decode_in(text, target, DateOrder::Dmy))
        && same(&decode_in(text, target, DateOrder::Ymd))
    {
        mdy
    } else {
        Err(ORDER_DEPENDS)
    }
}

fn decode_in(text: &str, target: Target, order: DateOrder) -> Result<Decoded, DateTimeError> {
    let fields = parse_fields(text, target)?;
    let mut tm = Tm::default();
    let mut fmask = 0u32;
    let mut special = Special::Date;
    let mut is2digits = false;
    let mut have_text_month = false;
    let mut bc = false;
    let mut meridian = Meridian::Hr24;
    // A `t` was seen: the next field is a time.
    let mut iso_time = false;
    let mut time_dependent = false;
    let mut abbreviation = false;
    let mut named_zone = None;
    for (index, (kind, field)) in fields.iter().enumerate() {
        let field = field.as_str();
        let tmask: u32 = match kind {
            Kind::Date => {
                if iso_time || fmask & (MONTH | DAY) == MONTH | DAY {
                    if field.as_bytes()[0].is_ascii_digit() || iso_time {
                        iso_time = false;
                        if fmask & TIME_M == TIME_M {
                            return Err(BAD_FORMAT);
                        }
                        let Some(dash) = field.find('-') else {
                            return Err(BAD_FORMAT);
                        };
                        tm.tz = decode_timezone(&field[dash..])?;
                        decode_number_field(&field[..dash], fmask, &mut tm, &mut is2digits)? | TZ
                    } else {
                        named_zone = Some(date_settings::named_zone(field).ok_or(UNKNOWN_ZONE)?);
                        TZ
                    }
                } else {
                    decode_date(field, order, fmask, &mut is2digits, &mut tm)?
                }
            }
            Kind::Time => {
                iso_time = false;
                decode_time(field, &mut tm)?;
                if tm.hour > 24 || (tm.hour == 24 && (tm.min > 0 || tm.sec > 0 || tm.fsec > 0)) {
                    return Err(FIELD_OVERFLOW);
                }
                TIME_M
            }
            Kind::Tz => {
                tm.tz = decode_timezone(field)?;
                TZ
            }
            Kind::Number => {
                if iso_time {
                    iso_time = false;
                    let tmask =
                        decode_number_field(field, fmask | DATE_M, &mut tm, &mut is2digits)?;
                    if tmask != TIME_M {
                        return Err(BAD_FORMAT);
                    }
                    tmask
                } else {
                    let flen = field.len();
                    match field.find('.') {
                        Some(_) if fmask & DATE_M == 0 => {
                            decode_date(field, order, fmask, &mut is2digits, &mut tm)?
                        }
                        Some(dot) if dot > 2 => {
                            decode_number_field(field, fmask, &mut tm, &mut is2digits)?
                        }
                        _ if flen >= 6 && (fmask & DATE_M == 0 || fmask & TIME_M == 0) => {
                            decode_number_field(field, fmask, &mut tm, &mut is2digits)?
                        }
                        _ => decode_number(
                            field,
                            have_text_month,
                            order,
                            fmask,
                            &mut tm,
                            &mut is2digits,
                        )?,
                    }
                }
            }
            Kind::Word => {
                if is_utc_abbreviation(field) {
                    tm.tz = 0;
                    TZ
                } else {
                    match core_token(field) {
                        None => {
                            abbreviation = true;
                            TZ
                        }
                        Some(Token::Ignore) => continue,
                        Some(Token::Early) => {
                            special = Special::Early;
                            RESERV
                        }
                        Some(Token::Late) => {
                            special = Special::Late;
                            RESERV
                        }
                        Some(Token::Epoch) => {
                            special = Special::Epoch;
                            RESERV
                        }
                        Some(Token::TimeDependent) => {
                            // Decoded on with a stand-in date, so that what PostgreSQL rejects
                            // around the word is still rejected as it rejects it.
                            time_dependent = true;
                            special = Special::Date;
                            (tm.year, tm.mon, tm.mday) = (2000, 1, 1);
                            if field == "now" {
                                (tm.hour, tm.min, tm.sec, tm.fsec, tm.tz) = (0, 0, 0, 0, 0);
                            }
                            // now sets date, time and zone; the others the date.
                            if field == "now" {
                                DATE_M | TIME_M | TZ
                            } else {
                                DATE_M
                            }
                        }
                        Some(Token::Allballs) => {
                            special = Special::Date;
                            tm.hour = 0;
                            tm.min = 0;
                            tm.sec = 0;
                            tm.tz = 0;
                            TIME_M | TZ
                        }
                        Some(Token::Month(month)) => {
                            let mut tmask = MONTH;
                            if fmask & MONTH != 0
                                && !have_text_month
                                && fmask & DAY == 0
                                && (1..=31).contains(&tm.mon)
                            {
                                tm.mday = tm.mon;
                                tmask = DAY;
                            }
                            have_text_month = true;
                            tm.mon = month;
                            tmask
                        }
                        Some(Token::Am) => {
                            meridian = Meridian::Am;
                            AMPM
                        }
                        Some(Token::Pm) => {
                            meridian = Meridian::Pm;
                            AMPM
                        }
                        Some(Token::Ad) => {
                            bc = false;
                            ADBC
                        }
                        Some(Token::Bc) => {
                            bc = true;
                            ADBC
                        }
                        Some(Token::Dow) => DOW,
                        Some(Token::IsoTime) => {
                            if fmask & DATE_M != DATE_M {
                                return Err(BAD_FORMAT);
                            }
                            match fields.get(index + 1) {
                                Some((Kind::Number | Kind::Time | Kind::Date, _)) => {}
                                _ => return Err(BAD_FORMAT),
                            }
                            iso_time = true;
                            0
                        }
                        Some(Token::Units) => return Err(FIELD_LABELS),
                        Some(Token::DstModifier) => return Err(NAMED_ZONE),
                    }
                }
            }
        };
        if tmask & fmask != 0 {
            return Err(BAD_FORMAT);
        }
        fmask |= tmask;
    }
    validate_date(fmask, is2digits, bc, &mut tm)?;
    if meridian != Meridian::Hr24 && tm.hour > 12 {
        return Err(FIELD_OVERFLOW);
    }
    match meridian {
        Meridian::Am if tm.hour == 12 => tm.hour = 0,
        Meridian::Pm if tm.hour != 12 => tm.hour += 12,
        _ => {}
    }
    if special == Special::Date && fmask & DATE_M != DATE_M {
        return Err(BAD_FORMAT);
    }
    if abbreviation {
        return Err(NAMED_ZONE);
    }
    if time_dependent {
        return Err(TIME_DEPENDENT);
    }
    Ok(Decoded {
        special,
        tm,
        fmask,
        named_zone,
    })
}

/// `ValidateDate`: BC and two-digit years, day of year, month and day ranges.
fn validate_date(fmask: u32, is2digits: bool, bc: bool, tm: &mut Tm) -> Result<(), DateTimeError> {
    if fmask & YEAR != 0 {
        if bc {
            if tm.year <= 0 {
                return Err(FIELD_OVERFLOW);
            }
            tm.year = -(tm.year - 1);
        } else if is2digits {
            if tm.year < 70 {
                tm.year += 2000;
            } else if tm.year < 100 {
                tm.year += 1900;
            }
        } else if tm.year <= 0 {
            return Err(FIELD_OVERFLOW);
        }
    }
    if fmask & DOY != 0 {
        if !valid_julian(tm.year, 1, 1) {
            return Err(DATE_OUT_OF_RANGE);
        }
        let (year, month, day) = j2date(date2j(tm.year, 1, 1) + tm.yday - 1);
        (tm.year, tm.mon, tm.mday) = (year, month, day);
    }
    if fmask & MONTH != 0 && !(1..=12).contains(&tm.mon) {
        return Err(FIELD_OVERFLOW);
    }
    if fmask & DAY != 0 && !(1..=31).contains(&tm.mday) {
        return Err(FIELD_OVERFLOW);
    }
    if fmask & DATE_M == DATE_M && tm.mday > days_in_month(tm.year, tm.mon) {
        return Err(FIELD_OVERFLOW);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The `YYYY-MM-DD` fast path gives what the general parser gives, on and around every
    /// month's edges, leap years and centuries included.
    #[test]
    fn the_iso_fast_path_agrees_with_the_parser() {
        for year in [
            1, 2, 4, 99, 100, 400, 1582, 1900, 1999, 2000, 2024, 2100, 9999,
        ] {
            for month in 0..=13 {
                for day in 0..=32 {
                    let text = format!("{year:04}-{month:02}-{day:02}");
                    let general = decode(&text, Target::Date, Some(DateOrder::Mdy))
                        .ok()
                        .and_then(|d| {
                            let tm = d.tm;
                            valid_julian(tm.year, tm.mon, tm.mday).then(|| {
                                (date2j(tm.year, tm.mon, tm.mday) - POSTGRES_EPOCH_JDATE) as i32
                            })
                        });
                    let fast = plain_iso_date(&text);
                    if fast.is_some() {
                        assert_eq!(fast, general, "{text}");
                    }
                    assert_eq!(parse_date(&text, &strict()).ok(), general, "{text}");
                }
            }
        }
    }

    use super::*;

    /// Settings not known: what depends on them is refused.
    fn strict() -> DateSettings {
        DateSettings::unknown()
    }

    fn session(style: &str, zone: &str) -> DateSettings {
        DateSettings::reported(style, zone)
    }

    fn date(text: &str) -> Result<String, &'static str> {
        date_in(text, &strict())
    }

    fn date_in(text: &str, settings: &DateSettings) -> Result<String, &'static str> {
        parse_date(text, settings)
            .map(format_date)
            .map_err(|e| e.sqlstate)
    }

    fn stamp(text: &str) -> Result<String, &'static str> {
        parse_timestamp(text, &strict())
            .map(|m| format_timestamp(m, false))
            .map_err(|e| e.sqlstate)
    }

    fn stamptz(text: &str) -> Result<String, &'static str> {
        stamptz_in(text, &strict())
    }

    fn stamptz_in(text: &str, settings: &DateSettings) -> Result<String, &'static str> {
        parse_timestamptz(text, settings)
            .map(|m| format_timestamp(m, true))
            .map_err(|e| e.sqlstate)
    }

    #[test]
    fn dates_read_as_postgres_reads_them() {
        for (input, output) in [
            ("1992-07-01", "1992-07-01"),
            (" 1992-07-01 ", "1992-07-01"),
            ("1992-07-01 +00", "1992-07-01"),
            ("1992-07-01 +02:00", "1992-07-01"),
            ("1992-07-01 -0530", "1992-07-01"),
            ("1992-07-01T10:00:00Z", "1992-07-01"),
            ("19920701", "1992-07-01"),
            ("July 1, 1992", "1992-07-01"),
            ("1992-Jul-01", "1992-07-01"),
            ("1992.183", "1992-07-01"),
            ("0044-03-15 BC", "0044-03-15 BC"),
            ("4714-11-24 BC", "4714-11-24 BC"),
            ("5874897-12-31", "5874897-12-31"),
            ("epoch", "1970-01-01"),
            ("infinity", "infinity"),
            ("-infinity", "-infinity"),
            ("1992-07-01 allballs", "1992-07-01"),
        ] {
            assert_eq!(date(input), Ok(output.to_string()), "{input:?}");
        }
        for (input, code) in [
            ("1992-02-30", "22008"),
            ("0000-01-01", "22008"),
            ("4714-11-23 BC", "22008"),
            ("5874898-01-01", "22008"),
            ("92-07-01", "22007"),
            ("1992-07-01 +16", "22009"),
            ("", "22007"),
            ("foo", "22007"),
            ("1992-07-01 Nowhere/Atlantis", "22023"),
            ("07/01/1992", "22007"),
            ("jan 02 03", "22007"),
            ("today", "0A000"),
            ("1992-07-01 today", "22007"),
            ("+infinity", "22007"),
            ("infinity 1992-07-01", "22007"),
        ] {
            assert_eq!(date(input), Err(code), "{input:?}");
        }
    }

    #[test]
    fn timestamps_read_as_postgres_reads_them() {
        for (input, output) in [
            ("2020-01-01 10:00:00+01", "2020-01-01 10:00:00"),
            ("1992-07-01 10:00:00.1234565", "1992-07-01 10:00:00.123456"),
            ("1992-07-01 10:00:00.1234575", "1992-07-01 10:00:00.123458"),
            ("1992-07-01 23:59:59.9999995", "1992-07-02 00:00:00"),
            ("1992-07-01 24:00", "1992-07-02 00:00:00"),
            ("1992-07-01 10:00:60", "1992-07-01 10:01:00"),
            ("1992-07-01 10:00.5", "1992-07-01 00:10:00.5"),
            ("1992-07-01 10:00 PM", "1992-07-01 22:00:00"),
            ("1992-07-01 12:00 AM", "1992-07-01 00:00:00"),
            ("1992-07-01 996060", "1992-07-05 04:01:00"),
            ("1992-07-01 100000-05", "1992-07-01 10:00:00"),
            ("Wed Jul 01 1992 10:00", "1992-07-01 10:00:00"),
            ("1992-07-01 10:00:00 BC", "1992-07-01 10:00:00 BC"),
            (
                "294276-12-31 23:59:59.999999",
                "294276-12-31 23:59:59.999999",
            ),
            ("epoch", "1970-01-01 00:00:00"),
        ] {
            assert_eq!(stamp(input), Ok(output.to_string()), "{input:?}");
        }
        for (input, code) in [
            ("1992-07-01 24:00:01", "22008"),
            ("1992-07-01 25:00", "22008"),
            ("1992-07-01 10", "22007"),
            ("294277-01-01", "22008"),
            ("4714-11-23 23:59 BC", "22008"),
            ("1992-07-01 10:00 allballs", "22007"),
            ("J2448805", "22007"),
            ("now", "0A000"),
        ] {
            assert_eq!(stamp(input), Err(code), "{input:?}");
        }
    }

    #[test]
    fn timestamptz_applies_the_zone_and_needs_one() {
        for (input, output) in [
            ("2024-11-03T10:15:00.250+01:00", "2024-11-03 09:15:00.25+00"),
            ("1992-07-01 +02", "1992-06-30 22:00:00+00"),
            ("1992-07-01 10:00 -05:30:15", "1992-07-01 15:30:15+00"),
            ("1992-07-01 10:00 UTC", "1992-07-01 10:00:00+00"),
            ("0044-03-15 10:00+00 BC", "0044-03-15 10:00:00+00 BC"),
            ("infinity", "infinity"),
            ("epoch", "1970-01-01 00:00:00+00"),
        ] {
            assert_eq!(stamptz(input), Ok(output.to_string()), "{input:?}");
        }
        assert_eq!(stamptz("2024-11-03 10:15:00"), Err("0A000"));
        assert_eq!(
            stamptz("2024-07-01 10:00 Europe/Paris"),
            Ok("2024-07-01 08:00:00+00".into())
        );
        assert_eq!(stamptz("2024-11-03 10:15:00 CET"), Err("22023"));
        assert_eq!(stamptz("294276-12-31 23:00:00-05"), Err("22008"));
    }

    #[test]
    fn numeric_dates_follow_the_session_order() {
        for (style, input, output) in [
            ("ISO, MDY", "07/01/1992", "1992-07-01"),
            ("ISO, DMY", "07/01/1992", "1992-01-07"),
            ("SQL, DMY", "31/12/1992", "1992-12-31"),
            ("ISO, YMD", "92/07/01", "1992-07-01"),
            ("ISO, MDY", "jan 02 03", "2003-01-02"),
            ("ISO, DMY", "jan 02 03", "2003-01-02"),
            ("ISO, YMD", "jan 02 03", "2002-01-03"),
            ("German, DMY", "01.02.2024", "2024-02-01"),
            ("ISO, DMY", "1 Feb 2024", "2024-02-01"),
        ] {
            let s = session(style, "UTC");
            assert_eq!(
                date_in(input, &s),
                Ok(output.to_string()),
                "{style} {input}"
            );
        }
        assert_eq!(
            date_in("31/12/1992", &session("ISO, MDY", "UTC")),
            Err("22008")
        );
        assert_eq!(
            date_in("92-07-01", &session("ISO, MDY", "UTC")),
            Err("22008")
        );
        assert_eq!(
            date_in("92-07-01", &session("ISO, YMD", "UTC")),
            Ok("1992-07-01".into())
        );
    }

    #[test]
    fn timestamptz_without_a_zone_takes_the_session_zone() {
        let paris = session("ISO, DMY", "Europe/Paris");
        for (input, output) in [
            ("2024-01-15 10:00", "2024-01-15 09:00:00+00"),
            ("2024-07-15 10:00", "2024-07-15 08:00:00+00"),
            ("15/07/2024 10:00", "2024-07-15 08:00:00+00"),
            // Skipped at the spring change: read with the offset before it.
            ("2024-03-31 02:30", "2024-03-31 01:30:00+00"),
            // Repeated at the autumn change: read with the offset after it.
            ("2024-10-27 02:30", "2024-10-27 01:30:00+00"),
            ("2024-07-15 10:00+00", "2024-07-15 10:00:00+00"),
            (
                "2024-07-15 10:00 America/New_York",
                "2024-07-15 14:00:00+00",
            ),
        ] {
            assert_eq!(stamptz_in(input, &paris), Ok(output.to_string()), "{input}");
        }
        let offset = session("ISO, MDY", "<+05:30>-05:30");
        assert_eq!(
            stamptz_in("2024-07-15 10:00", &offset),
            Ok("2024-07-15 04:30:00+00".into())
        );
    }

    #[test]
    fn every_output_reads_back_as_itself() {
        for days in [
            DATE_NEG_INFINITY,
            DATE_INFINITY,
            0,
            -1,
            -POSTGRES_EPOCH_JDATE as i32,
            (DATE_END_JULIAN - POSTGRES_EPOCH_JDATE - 1) as i32,
            -730_120 - 16_071,
        ] {
            assert_eq!(
                parse_date(&format_date(days), &strict()),
                Ok(days),
                "{days}"
            );
        }
        for micros in [
            TIMESTAMP_NEG_INFINITY,
            TIMESTAMP_INFINITY,
            0,
            -1,
            MIN_TIMESTAMP,
            END_TIMESTAMP - 1,
            -63_000_000_000_000_123,
        ] {
            assert_eq!(
                parse_timestamp(&format_timestamp(micros, false), &strict()),
                Ok(micros)
            );
            assert_eq!(
                parse_timestamptz(&format_timestamp(micros, true), &strict()),
                Ok(micros)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn no_text_panics_the_parsers(text in "\\PC{0,60}") {
            for settings in [strict(), session("SQL, DMY", "Europe/Paris")] {
                let _ = parse_date(&text, &settings);
                let _ = parse_timestamp(&text, &settings);
                let _ = parse_timestamptz(&text, &settings);
            }
        }

        #[test]
        fn no_datetime_shaped_text_panics_the_parsers(
            text in "[0-9 :.+\\-/TZtzjulbcadpm]{0,40}"
        ) {
            for settings in [strict(), session("SQL, DMY", "Europe/Paris")] {
                let _ = parse_date(&text, &settings);
                let _ = parse_timestamp(&text, &settings);
                let _ = parse_timestamptz(&text, &settings);
            }
        }
    }
}
