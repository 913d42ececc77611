//! Dates and times printed as PostgreSQL prints them in a session's `DateStyle` and `TimeZone`
//! (`EncodeDateOnly`, `EncodeDateTime` and `EncodeTimezone` in PostgreSQL's `datetime.c`), for
//! text results of sealed columns when the session's settings are not the canonical ISO in UTC.

use super::date_settings::{DateOrder, DateSettings, DateStyle};
use super::datetime::{
    DATE_INFINITY, DATE_NEG_INFINITY, POSTGRES_EPOCH_JDATE, TIMESTAMP_INFINITY,
    TIMESTAMP_NEG_INFINITY, USECS_PER_DAY, USECS_PER_SEC, j2date, push_digits, push_ymd,
};

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
/// Longest zone abbreviation PostgreSQL prints (`MAXTZLEN`).
const MAX_TZ_LEN: usize = 10;

/// A broken-down date and time.
struct Parts {
    year: i64,
    month: i64,
    day: i64,
    julian: i64,
    hour: i64,
    minute: i64,
    second: i64,
    micros: i64,
}

impl Parts {
    /// A timestamp's parts.
    fn of(micros: i64) -> Parts {
        let mut parts = Parts::of_day(micros.div_euclid(USECS_PER_DAY));
        let time = micros.rem_euclid(USECS_PER_DAY);
        let seconds = time / USECS_PER_SEC;
        parts.hour = seconds / 3600;
        parts.minute = seconds / 60 % 60;
        parts.second = seconds % 60;
        parts.micros = time % USECS_PER_SEC;
        parts
    }

    /// A day's parts (days since 2000-01-01), at midnight.
    fn of_day(days: i64) -> Parts {
        let julian = days + POSTGRES_EPOCH_JDATE;
        let (year, month, day) = j2date(julian);
        Parts {
            year,
            month,
            day,
            julian,
            hour: 0,
            minute: 0,
            second: 0,
            micros: 0,
        }
    }
}

/// A date (days since 2000-01-01) as the session prints it.
pub fn styled_date(days: i32, settings: &DateSettings) -> String {
    match days {
        DATE_INFINITY => return "infinity".into(),
        DATE_NEG_INFINITY => return "-infinity".into(),
        _ => {}
    }
    let parts = Parts::of_day(i64::from(days));
    let mut out = String::with_capacity(16);
    let dmy = settings.order() == Some(DateOrder::Dmy);
    match settings.style() {
        DateStyle::Iso => push_ymd(&mut out, parts.year, parts.month, parts.day),
        DateStyle::Sql => push_day_month_year(&mut out, &parts, dmy, '/'),
        DateStyle::German => push_day_month_year(&mut out, &parts, true, '.'),
        DateStyle::Postgres => push_day_month_year(&mut out, &parts, dmy, '-'),
    }
    if parts.year <= 0 {
        out.push_str(" BC");
    }
    out
}

/// A `timestamp` (microseconds since 2000-01-01 00:00) as the session prints it.
pub fn styled_timestamp(micros: i64, settings: &DateSettings) -> String {
    format_date_time(micros, None, settings)
}

/// A `timestamptz` (UTC microseconds since 2000-01-01 00:00) as the session prints it: in its
/// zone's offset at that instant (UTC while the zone is unknown), with the zone's offset in
/// ISO style and its abbreviation in the others.
pub fn styled_timestamptz(micros: i64, settings: &DateSettings) -> String {
    if matches!(micros, TIMESTAMP_INFINITY | TIMESTAMP_NEG_INFINITY) {
        return format_date_time(micros, None, settings);
    }
    let zone = settings
        .zone_at(micros)
        .unwrap_or_else(|| super::date_settings::ZoneAt {
            offset: 0,
            abbreviation: "UTC".into(),
        });
    match micros.checked_add(zone.offset * USECS_PER_SEC) {
        Some(local) => format_date_time(local, Some((zone.offset, &zone.abbreviation)), settings),
        // Beyond what a timestamp holds once moved: printed in UTC, as PostgreSQL does
        // outside its zone range.
        None => format_date_time(micros, Some((0, "UTC")), settings),
    }
}

fn format_date_time(micros: i64, zone: Option<(i64, &str)>, settings: &DateSettings) -> String {
    match micros {
        TIMESTAMP_INFINITY => return "infinity".into(),
        TIMESTAMP_NEG_INFINITY => return "-infinity".into(),
        _ => {}
    }
    let parts = Parts::of(micros);
    let dmy = settings.order() == Some(DateOrder::Dmy);
    let mut out = String::with_capacity(40);
    let abbreviation = |out: &mut String| {
        if let Some((_, name)) = zone {
            out.push(' ');
            out.extend(name.chars().take(MAX_TZ_LEN));
        }
    };
    match settings.style() {
        DateStyle::Iso => {
            push_ymd(&mut out, parts.year, parts.month, parts.day);
            push_time(&mut out, &parts, ' ');
            if let Some((offset, _)) = zone {
                push_offset(&mut out, offset);
            }
        }
        DateStyle::Sql | DateStyle::German => {
            if settings.style() == DateStyle::Sql {
                push_day_month_year(&mut out, &parts, dmy, '/');
            } else {
                push_day_month_year(&mut out, &parts, true, '.');
            }
            push_time(&mut out, &parts, ' ');
            abbreviation(&mut out);
        }
        DateStyle::Postgres => {
            out.push_str(DAYS[(parts.julian + 1).rem_euclid(7) as usize]);
            out.push(' ');
            let month = MONTHS[(parts.month - 1).clamp(0, 11) as usize];
            if dmy {
                push_digits(&mut out, parts.day, 2, ' ');
                out.remove(out.len() - 3);
                out.push(' ');
                out.push_str(month);
            } else {
                out.push_str(month);
                push_digits(&mut out, parts.day, 2, ' ');
            }
            push_time(&mut out, &parts, ' ');
            push_digits(&mut out, shown_year(parts.year), 4, ' ');
            abbreviation(&mut out);
        }
    }
    if parts.year <= 0 {
        out.push_str(" BC");
    }
    out
}

/// `MM/DD/YYYY` (or day first), with `separator`.
fn push_day_month_year(out: &mut String, parts: &Parts, day_first: bool, separator: char) {
    let (first, second) = if day_first {
        (parts.day, parts.month)
    } else {
        (parts.month, parts.day)
    };
    push_digits(out, first, 2, separator);
    out.remove(out.len() - 3);
    push_digits(out, second, 2, separator);
    push_digits(out, shown_year(parts.year), 4, separator);
}

/// The year as printed: BC years counted from 1.
fn shown_year(year: i64) -> i64 {
    if year > 0 { year } else { 1 - year }
}

/// ` HH:MM:SS[.ffffff]`, trailing zeros of the fraction dropped.
fn push_time(out: &mut String, parts: &Parts, before: char) {
    push_digits(out, parts.hour, 2, before);
    push_digits(out, parts.minute, 2, ':');
    push_digits(out, parts.second, 2, ':');
    if parts.micros != 0 {
        let digits = format!("{:06}", parts.micros);
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
}

/// `EncodeTimezone`: `+01`, `+05:30`, `-00:09:21` (seconds east).
fn push_offset(out: &mut String, offset: i64) {
    let total = offset.abs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    out.push(if offset >= 0 { '+' } else { '-' });
    let hours_text = format!("{hours:02}");
    out.push_str(&hours_text);
    if seconds != 0 {
        push_digits(out, minutes, 2, ':');
        push_digits(out, seconds, 2, ':');
    } else if minutes != 0 {
        push_digits(out, minutes, 2, ':');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::datetime::{parse_date, parse_timestamp, parse_timestamptz};

    fn settings(style: &str, zone: &str) -> DateSettings {
        DateSettings::reported(style, zone)
    }

    #[test]
    fn every_style_prints_as_postgres_does() {
        let utc = DateSettings::canonical();
        let day = parse_date("2024-11-03", utc).unwrap();
        let bc = parse_date("0044-03-15 BC", utc).unwrap();
        let stamp = parse_timestamp("2024-11-03 09:15:00.25", utc).unwrap();
        let tz = parse_timestamptz("2024-11-03 09:15:00.25+00", utc).unwrap();
        for (style, zone, date, bc_date, timestamp, timestamptz) in [
            (
                "ISO, MDY",
                "Europe/Paris",
                "2024-11-03",
                "0044-03-15 BC",
                "2024-11-03 09:15:00.25",
                "2024-11-03 10:15:00.25+01",
            ),
            (
                "SQL, MDY",
                "Europe/Paris",
                "11/03/2024",
                "03/15/0044 BC",
                "11/03/2024 09:15:00.25",
                "11/03/2024 10:15:00.25 CET",
            ),
            (
                "SQL, DMY",
                "Asia/Kolkata",
                "03/11/2024",
                "15/03/0044 BC",
                "03/11/2024 09:15:00.25",
                "03/11/2024 14:45:00.25 IST",
            ),
            (
                "German, DMY",
                "UTC",
                "03.11.2024",
                "15.03.0044 BC",
                "03.11.2024 09:15:00.25",
                "03.11.2024 09:15:00.25 UTC",
            ),
            (
                "Postgres, MDY",
                "America/New_York",
                "11-03-2024",
                "03-15-0044 BC",
                "Sun Nov 03 09:15:00.25 2024",
                "Sun Nov 03 04:15:00.25 2024 EST",
            ),
            (
                "Postgres, DMY",
                "<+03>-03",
                "03-11-2024",
                "15-03-0044 BC",
                "Sun 03 Nov 09:15:00.25 2024",
                "Sun 03 Nov 12:15:00.25 2024 +03",
            ),
            (
                "ISO, YMD",
                "Asia/Kolkata",
                "2024-11-03",
                "0044-03-15 BC",
                "2024-11-03 09:15:00.25",
                "2024-11-03 14:45:00.25+05:30",
            ),
        ] {
            let s = settings(style, zone);
            assert_eq!(styled_date(day, &s), date, "{style}");
            assert_eq!(styled_date(bc, &s), bc_date, "{style}");
            assert_eq!(styled_timestamp(stamp, &s), timestamp, "{style}");
            assert_eq!(styled_timestamptz(tz, &s), timestamptz, "{style} {zone}");
        }
        let paris_lmt = settings("ISO, MDY", "Europe/Paris");
        let old = parse_timestamptz("1850-01-01 00:00:00+00", utc).unwrap();
        assert_eq!(
            styled_timestamptz(old, &paris_lmt),
            "1850-01-01 00:09:21+00:09:21"
        );
    }
}
