//! Dates and instants as the generator needs them, and as PostgreSQL receives them.
//!
//! [`Date`] is a day of the proleptic Gregorian calendar; [`Timestamp`] an instant to the
//! second. Both travel to PostgreSQL as typed parameters in binary (`date`: days since
//! 2000-01-01; `timestamptz`: microseconds since 2000-01-01 00:00 UTC), which is what an
//! application's driver sends and what pgseal seals at Bind.
//!
//! Generated data never depends on today's date: ages and visits are computed against
//! [`REFERENCE_DAY`], so a seed gives the same patients whenever it is run.

use std::error::Error;
use std::fmt;

use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// The day ages and visits are counted to: patients are generated as of this day.
pub const REFERENCE_DAY: Date = Date {
    year: 2024,
    month: 12,
    day: 31,
};

/// Days from 1970-01-01 (the civil epoch used below) to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;

/// A calendar day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

/// The day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Date {
    /// The date, when it exists (`2023-02-29` does not).
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        (1..=12).contains(&month).then_some(())?;
        (day >= 1 && day <= days_in_month(year, month)).then_some(Date { year, month, day })
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(self) -> u8 {
        self.month
    }

    /// The day of the month, 1–31.
    pub fn day(self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (negative before).
    pub fn days_since_unix_epoch(self) -> i64 {
        // Counting from 1 March of a year that starts a 400-year era, leap days fall at the end
        // of each year, so a day's offset in its year is a linear formula of its month.
        let year = i64::from(self.year) - i64::from(self.month <= 2);
        let era = year.div_euclid(400);
        let year_of_era = year - era * 400;
        let month_from_march = (i64::from(self.month) + 9) % 12;
        let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(self.day) - 1;
        let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        era * 146_097 + day_of_era - 719_468
    }

    /// The date `days` days after 1970-01-01.
    pub fn from_days_since_unix_epoch(days: i64) -> Date {
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        Date {
            year: year as i32,
            month: month as u8,
            day: day as u8,
        }
    }

    /// The day of the week.
    pub fn weekday(self) -> Weekday {
        // 1970-01-01 was a Thursday.
        match self.days_since_unix_epoch().rem_euclid(7) {
            0 => Weekday::Thursday,
            1 => Weekday::Friday,
            2 => Weekday::Saturday,
            3 => Weekday::Sunday,
            4 => Weekday::Monday,
            5 => Weekday::Tuesday,
            _ => Weekday::Wednesday,
        }
    }

    /// Whole years from this date to `later` (an age); 0 when `later` is earlier.
    pub fn years_until(self, later: Date) -> u32 {
        let mut years = later.year - self.year;
        if (later.month, later.day) < (self.month, self.day) {
            years -= 1;
        }
        years.max(0) as u32
    }

    /// The instant of `hour:minute` local time on this day, in a zone `offset_minutes` east
    /// of UTC.
    pub fn at(self, hour: u8, minute: u8, offset_minutes: i32) -> Timestamp {
        let seconds =
            self.days_since_unix_epoch() * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60
                - i64::from(offset_minutes) * 60;
        Timestamp {
            unix_seconds: seconds,
        }
    }
}

impl fmt::Display for Date {
    /// ISO 8601: `1985-03-07`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Whether `year` is a leap year of the Gregorian calendar.
pub fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days of `month` (1–12) in `year`; 0 for a month out of range.
pub fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// The last Sunday of `month` in `year`.
fn last_sunday(year: i32, month: u8) -> Date {
    let last = Date {
        year,
        month,
        day: days_in_month(year, month),
    };
    let days = last.days_since_unix_epoch();
    // Days since Thursday 1970-01-01, shifted so that Sunday is 0.
    let back = (days - 3).rem_euclid(7);
    Date::from_days_since_unix_epoch(days - back)
}

/// Minutes east of UTC of French metropolitan time (Europe/Paris) during the day on `date`:
/// 120 from the last Sunday of March to the day before the last Sunday of October, else 60.
///
/// Exact for daytime hours, which is all the generator uses (the change happens at night).
pub fn paris_offset_minutes(date: Date) -> i32 {
    let summer = date >= last_sunday(date.year, 3) && date < last_sunday(date.year, 10);
    if summer { 120 } else { 60 }
}

/// An instant, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    unix_seconds: i64,
}

impl Timestamp {
    /// Seconds since 1970-01-01 00:00 UTC.
    pub fn unix_seconds(self) -> i64 {
        self.unix_seconds
    }

    /// The UTC day of this instant.
    pub fn utc_date(self) -> Date {
        Date::from_days_since_unix_epoch(self.unix_seconds.div_euclid(86_400))
    }
}

impl fmt::Display for Timestamp {
    /// ISO 8601 in UTC, as PostgreSQL prints a `timestamptz` with `TimeZone = UTC`:
    /// `2023-05-04 12:30:00+00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let second_of_day = self.unix_seconds.rem_euclid(86_400);
        write!(
            f,
            "{} {:02}:{:02}:{:02}+00",
            self.utc_date(),
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60
        )
    }
}

impl ToSql for Date {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let days = self.days_since_unix_epoch() - PG_EPOCH_DAYS;
        let days = i32::try_from(days).map_err(|_| format!("date {self} out of range"))?;
        out.put_i32(days);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }

    to_sql_checked!();
}

impl ToSql for Timestamp {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let micros = (self.unix_seconds - PG_EPOCH_DAYS * 86_400)
            .checked_mul(1_000_000)
            .ok_or_else(|| format!("timestamp {self} out of range"))?;
        out.put_i64(micros);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMPTZ
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip_and_match_known_dates() {
        let epoch = Date::new(1970, 1, 1).unwrap();
        assert_eq!(epoch.days_since_unix_epoch(), 0);
        assert_eq!(
            Date::new(2000, 1, 1).unwrap().days_since_unix_epoch(),
            PG_EPOCH_DAYS
        );
        assert_eq!(Date::new(1969, 12, 31).unwrap().days_since_unix_epoch(), -1);
        assert_eq!(
            Date::new(2024, 2, 29).unwrap().days_since_unix_epoch(),
            19_782
        );
        for days in -40_000..40_000 {
            let date = Date::from_days_since_unix_epoch(days);
            assert_eq!(date.days_since_unix_epoch(), days, "{date}");
            assert!(Date::new(date.year(), date.month(), date.day()).is_some());
        }
    }

    #[test]
    fn invalid_dates_are_refused() {
        assert!(Date::new(2023, 2, 29).is_none());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
        assert!(Date::new(2024, 13, 1).is_none());
        assert!(Date::new(2024, 4, 31).is_none());
        assert!(Date::new(2024, 1, 0).is_none());
    }

    #[test]
    fn weekdays_ages_and_display() {
        assert_eq!(Date::new(2024, 12, 31).unwrap().weekday(), Weekday::Tuesday);
        assert_eq!(Date::new(1970, 1, 1).unwrap().weekday(), Weekday::Thursday);
        assert_eq!(Date::new(2000, 1, 2).unwrap().weekday(), Weekday::Sunday);
        let birth = Date::new(1985, 3, 7).unwrap();
        assert_eq!(birth.to_string(), "1985-03-07");
        assert_eq!(birth.years_until(Date::new(2024, 3, 6).unwrap()), 38);
        assert_eq!(birth.years_until(Date::new(2024, 3, 7).unwrap()), 39);
        assert_eq!(birth.years_until(Date::new(1980, 1, 1).unwrap()), 0);
    }

    #[test]
    fn paris_time_follows_summer_time() {
        // 2024: summer time from Sunday 31 March to Sunday 27 October.
        assert_eq!(last_sunday(2024, 3), Date::new(2024, 3, 31).unwrap());
        assert_eq!(last_sunday(2024, 10), Date::new(2024, 10, 27).unwrap());
        assert_eq!(paris_offset_minutes(Date::new(2024, 3, 30).unwrap()), 60);
        assert_eq!(paris_offset_minutes(Date::new(2024, 3, 31).unwrap()), 120);
        assert_eq!(paris_offset_minutes(Date::new(2024, 10, 26).unwrap()), 120);
        assert_eq!(paris_offset_minutes(Date::new(2024, 10, 27).unwrap()), 60);
        let visit = Date::new(2024, 7, 1).unwrap().at(9, 30, 120);
        assert_eq!(visit.to_string(), "2024-07-01 07:30:00+00");
    }

    #[test]
    fn binary_encodings_count_from_2000() {
        let mut out = BytesMut::new();
        Date::new(2000, 1, 2)
            .unwrap()
            .to_sql(&Type::DATE, &mut out)
            .unwrap();
        assert_eq!(&out[..], &1i32.to_be_bytes());
        out.clear();
        Date::new(2000, 1, 1)
            .unwrap()
            .at(0, 1, 0)
            .to_sql(&Type::TIMESTAMPTZ, &mut out)
            .unwrap();
        assert_eq!(&out[..], &60_000_000i64.to_be_bytes());
        assert!(<Date as ToSql>::accepts(&Type::DATE));
        assert!(!<Date as ToSql>::accepts(&Type::TEXT));
        assert!(<Timestamp as ToSql>::accepts(&Type::TIMESTAMPTZ));
    }
}
