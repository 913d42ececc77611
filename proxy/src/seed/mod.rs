//! Synthetic French patients for demos, tests and benchmarks: `pgseal seed`.
//!
//! [`seed`] writes patients and their consultations into the hospital schema
//! (`policies/examples/hospital.sql`: `public.patients`, `public.consultations`) over a
//! `tokio_postgres::Client`. Point the client at PostgreSQL to build a plaintext database (for
//! instance one to migrate), or at pgseal to have every sealed column sealed on the way in: the
//! writes are the prepared, parameterized INSERTs an application sends.
//!
//! The data is invented but looks real: first names fitting sex and generation, common last
//! names, NIRs that validate (sex, year and month of birth, birthplace — usually in the
//! department of residence — and a correct control key), real communes with their postal
//! codes, phone numbers with the region's prefix, e-mail addresses at reserved example domains,
//! a general practitioner per patient, and consultations dated in surgery hours with CIM-10
//! codes, notes and prescriptions written in French.
//!
//! It is reproducible: a seed gives the same patients on every run, machine and pgseal build
//! with the same embedded lists (see `random` for how), and never depends on today's date
//! (ages and visits count to [`calendar::REFERENCE_DAY`]).
//!
//! Modules, one job each: `random` (reproducible draws), [`calendar`] (dates, instants, their
//! wire encoding), `names`, `places`, `contact`, [`nir`], `clinical` (conditions, visits,
//! French notes), [`generator`] (assembling a patient), `writer` (the SQL), `data` (the
//! embedded lists).

pub mod calendar;
mod clinical;
mod contact;
pub(crate) mod data;
pub mod generator;
pub(crate) mod names;
pub mod nir;
mod places;
mod random;
mod writer;

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio_postgres::Client;

pub use calendar::{Date, Timestamp};
pub use generator::{Consultation, Generator, Patient};
pub use nir::Sex;

/// The seed used when none is given.
pub const DEFAULT_SEED: u64 = 2024;

/// The batch size used when none is given: patients per INSERT and per transaction.
pub const DEFAULT_BATCH_SIZE: usize = 500;

/// The largest batch: 5,000 patients of 11 parameters fit under PostgreSQL's 65,535.
pub const MAX_BATCH_SIZE: usize = 5_000;

// A full batch must fit in one INSERT.
const _: () = assert!(MAX_BATCH_SIZE <= writer::MAX_PATIENT_ROWS);

/// The most patients one run writes.
pub const MAX_PATIENTS: u64 = 100_000_000;

/// The most consultations one patient gets.
pub const MAX_CONSULTATIONS_PER_PATIENT: u32 = 100;

/// How many consultations each patient gets: a number drawn uniformly in `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsultationRange {
    /// The fewest consultations a patient gets.
    pub min: u32,
    /// The most consultations a patient gets.
    pub max: u32,
}

impl Default for ConsultationRange {
    /// 0 to 5 consultations, 2.5 on average.
    fn default() -> ConsultationRange {
        ConsultationRange { min: 0, max: 5 }
    }
}

impl FromStr for ConsultationRange {
    type Err = String;

    /// `3` (exactly three) or `0-5` (from none to five).
    fn from_str(s: &str) -> Result<ConsultationRange, String> {
        let number = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("{s:?} is not a count (N) or a range (MIN-MAX), e.g. 0-5"))
        };
        let range = match s.split_once('-') {
            Some((min, max)) => ConsultationRange {
                min: number(min)?,
                max: number(max)?,
            },
            None => {
                let n = number(s)?;
                ConsultationRange { min: n, max: n }
            }
        };
        if range.min > range.max {
            return Err(format!("{s:?}: the minimum is above the maximum"));
        }
        if range.max > MAX_CONSULTATIONS_PER_PATIENT {
            return Err(format!(
                "{s:?}: at most {MAX_CONSULTATIONS_PER_PATIENT} consultations per patient"
            ));
        }
        Ok(range)
    }
}

impl fmt::Display for ConsultationRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}-{}", self.min, self.max)
        }
    }
}

/// What to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOptions {
    /// How many patients.
    pub patients: u64,
    /// The seed: the same seed gives the same patients.
    pub seed: u64,
    /// Consultations per patient.
    pub consultations: ConsultationRange,
    /// Patients per INSERT and per transaction (their consultations go in the same one).
    pub batch_size: usize,
}

impl Default for SeedOptions {
    fn default() -> SeedOptions {
        SeedOptions {
            patients: 1000,
            seed: DEFAULT_SEED,
            consultations: ConsultationRange::default(),
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

impl SeedOptions {
    /// Checks the options, saying what is wrong.
    pub fn validate(&self) -> Result<(), SeedError> {
        if self.patients > MAX_PATIENTS {
            return Err(SeedError::Options(format!(
                "at most {MAX_PATIENTS} patients per run"
            )));
        }
        if !(1..=MAX_BATCH_SIZE).contains(&self.batch_size) {
            return Err(SeedError::Options(format!(
                "the batch size must be between 1 and {MAX_BATCH_SIZE}"
            )));
        }
        if self.consultations.min > self.consultations.max
            || self.consultations.max > MAX_CONSULTATIONS_PER_PATIENT
        {
            return Err(SeedError::Options(format!(
                "consultations per patient must be a range within 0-{MAX_CONSULTATIONS_PER_PATIENT}"
            )));
        }
        Ok(())
    }
}

/// What a run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    /// Patients written.
    pub patients: u64,
    /// Consultations written.
    pub consultations: u64,
    /// Time spent, from the schema check to the last commit.
    pub elapsed: Duration,
}

impl SeedReport {
    /// Rows written, patients and consultations together.
    pub fn rows(&self) -> u64 {
        self.patients + self.consultations
    }

    /// Rows written per second.
    pub fn rows_per_second(&self) -> f64 {
        let seconds = self.elapsed.as_secs_f64();
        if seconds > 0.0 {
            self.rows() as f64 / seconds
        } else {
            0.0
        }
    }
}

/// Why seeding failed.
#[derive(Debug, Error)]
pub enum SeedError {
    /// The options are out of range.
    #[error("invalid seed options: {0}")]
    Options(String),
    /// The hospital schema's tables are missing.
    #[error(
        "the database has no table {}: load policies/examples/hospital.sql into it first \
         (psql -v ON_ERROR_STOP=1 -f policies/examples/hospital.sql)",
        .0.join(" nor ")
    )]
    MissingTables(Vec<String>),
    /// A table exists without a column the seeder writes.
    #[error(
        "table public.{table} has no column {}: it does not follow policies/examples/hospital.sql",
        .columns.join(", ")
    )]
    MissingColumns {
        /// The table.
        table: &'static str,
        /// The missing columns.
        columns: Vec<&'static str>,
    },
    /// A NIR of this seed is already in `public.patients`.
    #[error(
        "public.patients already holds patients of this seed ({}): seed an empty database, \
         or choose another --seed",
        describe(.0)
    )]
    AlreadySeeded(tokio_postgres::Error),
    /// The database refused a statement or the connection failed.
    #[error("{during}: {}", describe(.error))]
    Database {
        /// What the seeder was doing.
        during: &'static str,
        /// The error.
        error: tokio_postgres::Error,
    },
    /// An INSERT … RETURNING returned fewer or more ids than rows.
    #[error("inserting {expected} patients returned {returned} ids")]
    UnexpectedIds {
        /// Rows inserted.
        expected: usize,
        /// Ids returned.
        returned: usize,
    },
}

pub use crate::pgerror::describe;

/// Writes `options.patients` synthetic patients and their consultations through `client`.
///
/// Checks first that the hospital schema is there. Writes in batches of
/// `options.batch_size` patients, each batch in its own transaction, and calls
/// `progress(patients_written, patients_total)` before the first batch and after each one.
/// On error, the batches already committed stay; the failing one leaves nothing.
pub async fn seed(
    client: &Client,
    options: &SeedOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<SeedReport, SeedError> {
    options.validate()?;
    let started = Instant::now();
    writer::check_schema(client).await?;
    let mut writer = writer::Writer::new(client);
    let mut generator = Generator::new(options.seed, options.consultations);
    let mut report = SeedReport {
        patients: 0,
        consultations: 0,
        elapsed: Duration::ZERO,
    };
    progress(0, options.patients);
    let mut batch = Vec::with_capacity(options.batch_size);
    while report.patients < options.patients {
        let size = (options.patients - report.patients).min(options.batch_size as u64);
        batch.clear();
        batch.extend(generator.by_ref().take(size as usize));
        report.consultations += writer.write(&batch).await?;
        report.patients += size;
        progress(report.patients, options.patients);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consultation_ranges_parse() {
        assert_eq!(
            "0-5".parse::<ConsultationRange>().unwrap(),
            ConsultationRange { min: 0, max: 5 }
        );
        assert_eq!(
            "3".parse::<ConsultationRange>().unwrap(),
            ConsultationRange { min: 3, max: 3 }
        );
        assert!("5-2".parse::<ConsultationRange>().is_err());
        assert!("x".parse::<ConsultationRange>().is_err());
        assert!("0-1000".parse::<ConsultationRange>().is_err());
        assert_eq!(ConsultationRange::default().to_string(), "0-5");
    }

    #[test]
    fn options_are_checked() {
        assert!(SeedOptions::default().validate().is_ok());
        let zero_batch = SeedOptions {
            batch_size: 0,
            ..SeedOptions::default()
        };
        assert!(matches!(zero_batch.validate(), Err(SeedError::Options(_))));
        let huge_batch = SeedOptions {
            batch_size: MAX_BATCH_SIZE + 1,
            ..SeedOptions::default()
        };
        assert!(huge_batch.validate().is_err());
    }

    #[test]
    fn every_department_has_a_commune_with_a_matching_postal_code() {
        use data::communes::COMMUNES;
        let mut departments: Vec<String> = (1..=95)
            .filter(|&d| d != 20)
            .map(|d| format!("{d:02}"))
            .collect();
        departments.extend(["2A", "2B", "971", "972", "973", "974", "976"].map(String::from));
        for d in &departments {
            assert!(
                COMMUNES.iter().any(|c| places::department(c) == d),
                "no commune in department {d}"
            );
        }
        for c in COMMUNES {
            let department = places::department(c);
            assert_eq!(c.postal_code.len(), 5, "{c:?}");
            assert!(c.postal_code.bytes().all(|b| b.is_ascii_digit()), "{c:?}");
            let expected_prefix = match department {
                "2A" | "2B" => "20",
                d => d,
            };
            assert!(c.postal_code.starts_with(expected_prefix), "{c:?}");
            assert!(c.weight > 0, "{c:?}");
        }
    }
}
