//! The two session settings that change what a date or a time means and how it prints:
//! `DateStyle` (the output style, and whether `01/02/2024` is the 2nd of January or the 1st of
//! February) and `TimeZone` (the offset of a `timestamptz` written without one, and the offset
//! and abbreviation it prints with). A protected session follows them from the server's
//! ParameterStatus messages, as PostgreSQL reports them.
//!
//! Zones are read from the system's time zone database (`/usr/share/zoneinfo`, the one Debian's
//! PostgreSQL uses), or from the copy built into pgseal where the system has none. A local time
//! that a transition skips or repeats takes the later instant, as PostgreSQL's
//! `DetermineTimeZoneOffset` does.

use jiff::tz::{AmbiguousOffset, TimeZone};

/// Seconds in 400 Gregorian years: the calendar, weekdays and POSIX zone rules repeat after it.
const SECONDS_PER_400_YEARS: i64 = 146_097 * 86_400;
/// Seconds from 1970-01-01 to 2000-01-01.
const UNIX_TO_POSTGRES_SECONDS: i64 = 946_684_800;
/// Years within which the zone database answers directly; times outside are moved by whole
/// 400-year cycles into it (before the first transition a zone keeps its first offset, after
/// the last it follows its POSIX rule, which repeats with the calendar).
const DIRECT_YEARS: std::ops::RangeInclusive<i64> = -9000..=9000;

/// The zone database's names of UTC (and of zones that are UTC by another name).
const UTC_NAMES: &[&str] = &[
    "UTC",
    "Etc/UTC",
    "UCT",
    "Etc/UCT",
    "Universal",
    "Etc/Universal",
    "Zulu",
    "Etc/Zulu",
    "GMT",
    "Etc/GMT",
    "GMT0",
    "Etc/GMT0",
    "GMT+0",
    "Etc/GMT+0",
    "GMT-0",
    "Etc/GMT-0",
    "Greenwich",
    "Etc/Greenwich",
];

/// How a date written with numbers only is read: the setting's second part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateOrder {
    /// Month, day, year (PostgreSQL's default).
    Mdy,
    /// Day, month, year (what `initdb` sets for a French locale).
    Dmy,
    /// Year, month, day.
    Ymd,
}

/// How dates and times print: the setting's first part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DateStyle {
    /// `2024-11-03 10:15:00+01`.
    Iso,
    /// `11/03/2024 10:15:00 CET` (day first under DMY).
    Sql,
    /// `Sun Nov 03 10:15:00 2024 CET`.
    Postgres,
    /// `03.11.2024 10:15:00 CET`.
    German,
}

/// A session's `DateStyle` and `TimeZone`, as far as pgseal knows them.
#[derive(Clone, Debug)]
pub struct DateSettings {
    /// `None` while unknown: input whose meaning depends on the order is refused.
    order: Option<DateOrder>,
    style: DateStyle,
    /// `None` while unknown, or when pgseal cannot resolve the session's zone: a `timestamptz`
    /// without an offset is refused, and values print in UTC.
    zone: Option<SessionZone>,
    /// The server has changed them without reporting it yet (a SET in the same pipeline, whose
    /// ParameterStatus comes only with ReadyForQuery): text output of dates and times is
    /// refused rather than printed in the old settings.
    stale: bool,
}

#[derive(Clone, Debug)]
struct SessionZone {
    zone: TimeZone,
    /// Offset zero at every instant, and printed `+00` in ISO: canonical text prints as is.
    utc: bool,
}

/// A zone's offset at one instant, and the abbreviation PostgreSQL prints for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneAt {
    /// Seconds east of UTC.
    pub offset: i64,
    /// `CET`, `LMT`, `+03`…
    pub abbreviation: String,
}

impl Default for DateSettings {
    /// Unknown settings (see [`DateSettings::unknown`]): nothing is assumed.
    fn default() -> Self {
        DateSettings::unknown()
    }
}

impl DateSettings {
    /// Settings not known (yet, or while a change is under way): what depends on them is
    /// refused on input, and values print as stored (ISO, UTC).
    pub fn unknown() -> Self {
        DateSettings {
            order: None,
            style: DateStyle::Iso,
            zone: None,
            stale: false,
        }
    }

    /// The settings a server reports as `DateStyle` and `TimeZone` (as ParameterStatus
    /// gives them).
    pub fn reported(date_style: &str, time_zone: &str) -> Self {
        let mut settings = DateSettings::unknown();
        settings.apply("DateStyle", date_style);
        settings.apply("TimeZone", time_zone);
        settings
    }

    /// Settings the server has just changed without reporting the new ones: unknown on input,
    /// and dates and times are not printed in text (see [`DateSettings::is_stale`]).
    pub fn stale() -> Self {
        DateSettings {
            stale: true,
            ..DateSettings::unknown()
        }
    }

    /// Whether the server has changed the settings without reporting them yet.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// PostgreSQL's defaults, in which canonical forms are written: ISO, MDY, UTC.
    fn iso_utc() -> Self {
        DateSettings {
            order: Some(DateOrder::Mdy),
            style: DateStyle::Iso,
            zone: Some(SessionZone {
                zone: TimeZone::UTC,
                utc: true,
            }),
            stale: false,
        }
    }

    /// Follows one ParameterStatus: `DateStyle` and `TimeZone` change these settings, other
    /// parameters are ignored. A value pgseal cannot read makes that setting unknown.
    pub fn apply(&mut self, name: &str, value: &str) {
        match name {
            "DateStyle" => match parse_date_style(value) {
                Some((style, order)) => {
                    self.style = style;
                    self.order = Some(order);
                }
                None => {
                    self.style = DateStyle::Iso;
                    self.order = None;
                }
            },
            "TimeZone" => self.zone = resolve_zone(value),
            _ => {}
        }
    }

    /// The settings canonical forms are written in (ISO, MDY, UTC), shared.
    pub fn canonical() -> &'static DateSettings {
        static CANONICAL: std::sync::LazyLock<DateSettings> =
            std::sync::LazyLock::new(DateSettings::iso_utc);
        &CANONICAL
    }

    /// The order numeric dates are read in, when known.
    pub fn order(&self) -> Option<DateOrder> {
        self.order
    }

    /// The output style.
    pub fn style(&self) -> DateStyle {
        self.style
    }

    /// Whether the session prints dates and times exactly as pgseal stores them (ISO in UTC):
    /// text results then go out as stored.
    pub fn prints_canonical(&self) -> bool {
        self.style == DateStyle::Iso && self.zone.as_ref().is_some_and(|z| z.utc)
    }

    /// Whether the session's zone is known.
    pub fn knows_zone(&self) -> bool {
        self.zone.is_some()
    }

    /// The session zone's offset for a local time (microseconds since 2000-01-01 00:00, as
    /// written), in seconds west of UTC as PostgreSQL keeps it; `None` when the zone is unknown.
    pub fn offset_west_at_local(&self, local_micros: i64) -> Option<i64> {
        self.zone
            .as_ref()
            .map(|z| offset_west_at_local(&z.zone, local_micros))
    }

    /// The session zone at a UTC instant (microseconds since 2000-01-01 00:00); `None` when the
    /// zone is unknown.
    pub fn zone_at(&self, utc_micros: i64) -> Option<ZoneAt> {
        self.zone.as_ref().map(|z| zone_at(&z.zone, utc_micros))
    }
}

/// Reads PostgreSQL's reported `DateStyle` (`ISO, MDY`, `SQL, DMY`, `German, DMY`…).
fn parse_date_style(value: &str) -> Option<(DateStyle, DateOrder)> {
    let mut style = None;
    let mut order = None;
    for part in value.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match part.as_str() {
            "iso" => style = Some(DateStyle::Iso),
            "sql" => style = Some(DateStyle::Sql),
            "postgres" => style = Some(DateStyle::Postgres),
            "german" => style = Some(DateStyle::German),
            "mdy" | "us" | "noneuropean" => order = Some(DateOrder::Mdy),
            "dmy" | "euro" | "european" => order = Some(DateOrder::Dmy),
            "ymd" => order = Some(DateOrder::Ymd),
            _ => return None,
        }
    }
    Some((style?, order?))
}

/// The zone a reported `TimeZone` names: a name of the zone database (`Europe/Paris`, `UTC`),
/// or a POSIX specification (`<+03>-03`, which PostgreSQL reports for `SET TIME ZONE 3`).
fn resolve_zone(value: &str) -> Option<SessionZone> {
    let zone = TimeZone::get(value)
        .or_else(|_| TimeZone::posix(value))
        .ok()
        .or_else(|| bracketed_fixed_zone(value))?;
    if zone.is_unknown() {
        return None;
    }
    // A zone at zero all year round, whose offset ISO prints as `+00` like the canonical form.
    let utc = zone
        .to_fixed_offset()
        .is_ok_and(|o| o == jiff::tz::Offset::UTC)
        || zone
            .iana_name()
            .is_some_and(|name| UTC_NAMES.iter().any(|utc| utc.eq_ignore_ascii_case(name)));
    Some(SessionZone { zone, utc })
}

/// PostgreSQL's name for a zone set by an interval (`SET TIME ZONE INTERVAL '+05:30'`):
/// `<+05:30>-05:30`, a POSIX offset (hours west) after a bracketed abbreviation that POSIX
/// itself would not accept (it has a colon).
fn bracketed_fixed_zone(value: &str) -> Option<TimeZone> {
    let rest = value.strip_prefix('<')?;
    let (_, offset) = rest.split_once('>')?;
    let (sign, digits) = match offset.as_bytes().first()? {
        b'-' => (1, &offset[1..]),
        b'+' => (-1, &offset[1..]),
        _ => (-1, offset),
    };
    let mut seconds = 0i32;
    let mut parts = 0;
    for (part, unit) in digits.split(':').zip([3600, 60, 1]) {
        if part.is_empty() || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        seconds += part.parse::<i32>().ok()? * unit;
        parts += 1;
    }
    if parts == 0 || digits.split(':').count() > 3 {
        return None;
    }
    jiff::tz::Offset::from_seconds(sign * seconds)
        .ok()
        .map(TimeZone::fixed)
}

/// A zone of the database named in a value (`2024-03-31 02:30 Europe/Paris`), looked up
/// without regard to case as PostgreSQL does.
pub fn named_zone(name: &str) -> Option<TimeZone> {
    TimeZone::get(name).ok().filter(|z| !z.is_unknown())
}

/// Seconds west of UTC of `zone` for a local time: a skipped time takes the offset before the
/// transition and a repeated one the offset after it (the later instant either way), as
/// PostgreSQL's `DetermineTimeZoneOffset` decides.
pub fn offset_west_at_local(zone: &TimeZone, local_micros: i64) -> i64 {
    let seconds = local_micros.div_euclid(1_000_000) + UNIX_TO_POSTGRES_SECONDS;
    let (seconds, _) = into_direct_range(seconds);
    let Ok(naive) = jiff::Timestamp::from_second(seconds) else {
        return 0;
    };
    // The local time as a civil date-time: read the UTC clock of the same seconds.
    let civil = TimeZone::UTC.to_datetime(naive);
    let offset = match zone.to_ambiguous_timestamp(civil).offset() {
        AmbiguousOffset::Unambiguous { offset } => offset,
        AmbiguousOffset::Gap { before, .. } => before,
        AmbiguousOffset::Fold { after, .. } => after,
    };
    -i64::from(offset.seconds())
}

/// `zone`'s offset and abbreviation at a UTC instant.
pub fn zone_at(zone: &TimeZone, utc_micros: i64) -> ZoneAt {
    let seconds = utc_micros.div_euclid(1_000_000) + UNIX_TO_POSTGRES_SECONDS;
    let (seconds, _) = into_direct_range(seconds);
    match jiff::Timestamp::from_second(seconds) {
        Ok(at) => {
            let info = zone.to_offset_info(at);
            ZoneAt {
                offset: i64::from(info.offset().seconds()),
                abbreviation: info.abbreviation().to_string(),
            }
        }
        Err(_) => ZoneAt {
            offset: 0,
            abbreviation: "UTC".into(),
        },
    }
}

/// Unix seconds moved by whole 400-year cycles into the years the database answers for, and
/// the number of cycles moved.
fn into_direct_range(seconds: i64) -> (i64, i64) {
    let year = 1970 + seconds.div_euclid(31_556_952);
    let cycles = if year > *DIRECT_YEARS.end() {
        (year - DIRECT_YEARS.end()) / 400 + 1
    } else if year < *DIRECT_YEARS.start() {
        -((DIRECT_YEARS.start() - year) / 400 + 1)
    } else {
        0
    };
    (seconds - cycles * SECONDS_PER_400_YEARS, cycles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(style: &str, zone: &str) -> DateSettings {
        DateSettings::reported(style, zone)
    }

    #[test]
    fn reported_settings_are_read() {
        let s = settings("SQL, DMY", "Europe/Paris");
        assert_eq!(
            (s.style(), s.order()),
            (DateStyle::Sql, Some(DateOrder::Dmy))
        );
        assert!(s.knows_zone() && !s.prints_canonical());
        assert!(settings("ISO, MDY", "Etc/UTC").prints_canonical());
        assert!(settings("ISO, YMD", "UTC").prints_canonical());
        let unreadable = settings("Klingon", "Nowhere/Atlantis");
        assert_eq!(unreadable.order(), None);
        assert!(!unreadable.knows_zone() && !unreadable.prints_canonical());
        assert!(settings("ISO, MDY", "<+03>-03").knows_zone());
    }

    #[test]
    fn local_times_take_the_later_instant_around_transitions() {
        let paris = named_zone("europe/paris").expect("Europe/Paris in the zone database");
        let local = |y: i16, m: i8, d: i8, h: i64, mi: i64| {
            let days = jiff::civil::date(y, m, d)
                .since(jiff::civil::date(2000, 1, 1))
                .unwrap()
                .get_days();
            (i64::from(days) * 86_400 + h * 3600 + mi * 60) * 1_000_000
        };
        assert_eq!(
            offset_west_at_local(&paris, local(2024, 1, 15, 10, 0)),
            -3600
        );
        assert_eq!(
            offset_west_at_local(&paris, local(2024, 7, 15, 10, 0)),
            -7200
        );
        // 02:30 on 31 March 2024 does not exist: the offset before the jump (+01).
        assert_eq!(
            offset_west_at_local(&paris, local(2024, 3, 31, 2, 30)),
            -3600
        );
        // 02:30 on 27 October 2024 happens twice: the offset after the return (+01).
        assert_eq!(
            offset_west_at_local(&paris, local(2024, 10, 27, 2, 30)),
            -3600
        );
        // Far years follow the zone's rule; early ones its first (local mean) time.
        assert_eq!(
            offset_west_at_local(&paris, local(9999, 7, 1, 12, 0)),
            -7200
        );
        let cycles = 495 * SECONDS_PER_400_YEARS * 1_000_000;
        let far = zone_at(&paris, local(2024, 7, 1, 12, 0) + cycles);
        assert_eq!((far.offset, far.abbreviation.as_str()), (7200, "CEST"));
        assert_eq!(zone_at(&paris, local(1800, 1, 1, 0, 0)).abbreviation, "LMT");
    }
}
