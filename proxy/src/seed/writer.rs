//! Writing patients to the hospital schema the way an application does: prepared multi-row
//! INSERTs with typed `$n` parameters, one transaction per batch.
//!
//! Parameters go as the application's types — `birth_date` as a `date`, `seen_at` as a
//! `timestamptz`, the rest as text — never as literals and never through COPY, because pgseal
//! seals `$n` parameters at Bind: the same INSERT through pgseal stores ciphertext and tokens.
//! Straight into PostgreSQL, `birth_date` (a `text` column in the hospital schema) receives the
//! date's ISO text through PostgreSQL's assignment cast; each transaction sets
//! `DateStyle = ISO` locally so that text does not depend on the server's settings.
//!
//! Patients are inserted with `RETURNING id`; identity values are drawn in the order of the
//! VALUES rows, so the sorted ids map one to one onto the batch, and consultations are then
//! inserted with those ids.

use std::collections::HashMap;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

use super::SeedError;
use super::generator::{Consultation, Patient};
use super::nir::Sex;

/// The most parameters one PostgreSQL statement can carry.
const MAX_PARAMETERS: usize = 65_535;

/// The columns of `public.patients` the seeder writes, with the parameter type of each.
pub(crate) const PATIENT_COLUMNS: [(&str, Type); 11] = [
    ("nir", Type::VARCHAR),
    ("last_name", Type::TEXT),
    ("first_name", Type::TEXT),
    ("birth_date", Type::DATE),
    ("sex", Type::BPCHAR),
    ("email", Type::TEXT),
    ("phone", Type::TEXT),
    ("address", Type::TEXT),
    ("postal_code", Type::VARCHAR),
    ("city", Type::TEXT),
    ("gp_name", Type::TEXT),
];

/// The columns of `public.consultations` the seeder writes, with the parameter type of each.
pub(crate) const CONSULTATION_COLUMNS: [(&str, Type); 5] = [
    ("patient_id", Type::INT8),
    ("seen_at", Type::TIMESTAMPTZ),
    ("diagnosis_code", Type::TEXT),
    ("notes", Type::TEXT),
    ("prescription", Type::TEXT),
];

/// The most patients one INSERT can carry.
pub(crate) const MAX_PATIENT_ROWS: usize = MAX_PARAMETERS / PATIENT_COLUMNS.len();

/// The most consultations one INSERT carries.
const MAX_CONSULTATION_ROWS: usize = 5_000;

// Both INSERTs stay under PostgreSQL's parameter limit.
const _: () = assert!(MAX_PATIENT_ROWS * PATIENT_COLUMNS.len() <= MAX_PARAMETERS);
const _: () = assert!(MAX_CONSULTATION_ROWS * CONSULTATION_COLUMNS.len() <= MAX_PARAMETERS);

/// Checks that `public.patients` and `public.consultations` exist with every column the
/// seeder writes.
pub(crate) async fn check_schema(client: &Client) -> Result<(), SeedError> {
    let rows = client
        .query(SCHEMA_SQL, &[])
        .await
        .map_err(|error| SeedError::Database {
            during: "reading the database's tables",
            error,
        })?;
    let mut found: HashMap<String, Vec<String>> = HashMap::new();
    for row in rows {
        let table: String = row.get(0);
        let column: Option<String> = row.get(1);
        let columns = found.entry(table).or_default();
        columns.extend(column);
    }
    let tables = [
        ("patients", PATIENT_COLUMNS.map(|(c, _)| c).to_vec()),
        (
            "consultations",
            CONSULTATION_COLUMNS.map(|(c, _)| c).to_vec(),
        ),
    ];
    let missing_tables: Vec<String> = tables
        .iter()
        .filter(|(t, _)| !found.contains_key(*t))
        .map(|(t, _)| format!("public.{t}"))
        .collect();
    if !missing_tables.is_empty() {
        return Err(SeedError::MissingTables(missing_tables));
    }
    for (table, wanted) in tables {
        let have = found.get(table).map(Vec::as_slice).unwrap_or_default();
        let missing: Vec<&str> = wanted
            .into_iter()
            .filter(|c| !have.iter().any(|h| h == c))
            .collect();
        if !missing.is_empty() {
            return Err(SeedError::MissingColumns {
                table,
                columns: missing,
            });
        }
    }
    Ok(())
}

/// Tables named `patients` and `consultations` in schema `public`, with their columns.
const SCHEMA_SQL: &str = "\
SELECT c.relname::text, a.attname::text
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a
       ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
WHERE n.nspname = 'public'
  AND c.relname IN ('patients', 'consultations')
  AND c.relkind IN ('r', 'p')";

/// Writes batches of patients over one connection, preparing each INSERT shape once.
pub(crate) struct Writer<'a> {
    client: &'a Client,
    patient_inserts: HashMap<usize, Statement>,
    consultation_inserts: HashMap<usize, Statement>,
}

impl<'a> Writer<'a> {
    /// A writer over `client`.
    pub(crate) fn new(client: &'a Client) -> Writer<'a> {
        Writer {
            client,
            patient_inserts: HashMap::new(),
            consultation_inserts: HashMap::new(),
        }
    }

    /// Writes `patients` and their consultations in one transaction; returns the number of
    /// consultations written. Nothing of the batch remains after an error.
    pub(crate) async fn write(&mut self, patients: &[Patient]) -> Result<u64, SeedError> {
        if patients.is_empty() {
            return Ok(0);
        }
        self.client
            .batch_execute("BEGIN; SET LOCAL DateStyle = 'ISO, YMD'")
            .await
            .map_err(|error| SeedError::Database {
                during: "starting a transaction",
                error,
            })?;
        match self.write_in_transaction(patients).await {
            Ok(consultations) => {
                self.client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|error| SeedError::Database {
                        during: "committing a batch",
                        error,
                    })?;
                Ok(consultations)
            }
            Err(e) => {
                // The transaction is already failed or the connection gone: the error that
                // matters is the first one.
                let _ = self.client.batch_execute("ROLLBACK").await;
                Err(e)
            }
        }
    }

    async fn write_in_transaction(&mut self, patients: &[Patient]) -> Result<u64, SeedError> {
        let mut ids = Vec::with_capacity(patients.len());
        for chunk in patients.chunks(MAX_PATIENT_ROWS) {
            ids.extend(self.insert_patients(chunk).await?);
        }
        let rows: Vec<(i64, &Consultation)> = patients
            .iter()
            .zip(&ids)
            .flat_map(|(p, &id)| p.consultations.iter().map(move |c| (id, c)))
            .collect();
        for chunk in rows.chunks(MAX_CONSULTATION_ROWS) {
            self.insert_consultations(chunk).await?;
        }
        Ok(rows.len() as u64)
    }

    /// Inserts patients and returns their ids, in the order of `patients`.
    async fn insert_patients(&mut self, patients: &[Patient]) -> Result<Vec<i64>, SeedError> {
        let statement = prepared(
            self.client,
            &mut self.patient_inserts,
            "public.patients",
            &PATIENT_COLUMNS,
            patients.len(),
            Some("id"),
        )
        .await?;
        let mut params: Vec<&(dyn ToSql + Sync)> =
            Vec::with_capacity(patients.len() * PATIENT_COLUMNS.len());
        for p in patients {
            let sex: &(dyn ToSql + Sync) = match p.sex {
                Sex::Male => &"M",
                Sex::Female => &"F",
            };
            params.extend_from_slice(&[
                &p.nir as &(dyn ToSql + Sync),
                &p.last_name,
                &p.first_name,
                &p.birth_date,
                sex,
                &p.email,
                &p.phone,
                &p.address,
                &p.postal_code,
                &p.city,
                &p.gp_name,
            ]);
        }
        let rows = self
            .client
            .query(&statement, &params)
            .await
            .map_err(patient_insert_error)?;
        let mut ids = rows
            .iter()
            .map(|row| row.try_get::<_, i64>(0))
            .collect::<Result<Vec<i64>, _>>()
            .map_err(|error| SeedError::Database {
                during: "reading the new patients' ids",
                error,
            })?;
        if ids.len() != patients.len() {
            return Err(SeedError::UnexpectedIds {
                expected: patients.len(),
                returned: ids.len(),
            });
        }
        ids.sort_unstable();
        Ok(ids)
    }

    async fn insert_consultations(
        &mut self,
        rows: &[(i64, &Consultation)],
    ) -> Result<(), SeedError> {
        let statement = prepared(
            self.client,
            &mut self.consultation_inserts,
            "public.consultations",
            &CONSULTATION_COLUMNS,
            rows.len(),
            None,
        )
        .await?;
        let mut params: Vec<&(dyn ToSql + Sync)> =
            Vec::with_capacity(rows.len() * CONSULTATION_COLUMNS.len());
        for (id, c) in rows {
            params.extend_from_slice(&[
                id as &(dyn ToSql + Sync),
                &c.seen_at,
                &c.diagnosis_code,
                &c.notes,
                &c.prescription,
            ]);
        }
        self.client
            .execute(&statement, &params)
            .await
            .map_err(|error| SeedError::Database {
                during: "inserting consultations",
                error,
            })?;
        Ok(())
    }
}

/// The prepared INSERT of `rows` rows into `table`, from the cache or prepared now.
async fn prepared(
    client: &Client,
    cache: &mut HashMap<usize, Statement>,
    table: &str,
    columns: &[(&str, Type)],
    rows: usize,
    returning: Option<&str>,
) -> Result<Statement, SeedError> {
    if let Some(statement) = cache.get(&rows) {
        return Ok(statement.clone());
    }
    let sql = insert_sql(table, columns, rows, returning);
    let types: Vec<Type> = (0..rows)
        .flat_map(|_| columns.iter().map(|(_, ty)| ty.clone()))
        .collect();
    let statement =
        client
            .prepare_typed(&sql, &types)
            .await
            .map_err(|error| SeedError::Database {
                during: "preparing an INSERT",
                error,
            })?;
    cache.insert(rows, statement.clone());
    Ok(statement)
}

/// `INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4) RETURNING id`.
pub(crate) fn insert_sql(
    table: &str,
    columns: &[(&str, Type)],
    rows: usize,
    returning: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
    let mut sql = format!("INSERT INTO {table} ({}) VALUES ", names.join(", "));
    let mut n = 0;
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..columns.len() {
            n += 1;
            let sep = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{sep}${n}");
        }
        sql.push(')');
    }
    if let Some(returning) = returning {
        let _ = write!(sql, " RETURNING {returning}");
    }
    sql
}

/// A failed patient INSERT: a NIR already present gets its own error.
fn patient_insert_error(error: tokio_postgres::Error) -> SeedError {
    let duplicate_nir = error.as_db_error().is_some_and(|db| {
        db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION
            && db.constraint().is_some_and(|c| c.contains("nir"))
    });
    if duplicate_nir {
        SeedError::AlreadySeeded(error)
    } else {
        SeedError::Database {
            during: "inserting patients",
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statements_number_their_parameters() {
        let sql = insert_sql(
            "public.t",
            &[("a", Type::TEXT), ("b", Type::DATE)],
            2,
            Some("id"),
        );
        assert_eq!(
            sql,
            "INSERT INTO public.t (a, b) VALUES ($1, $2), ($3, $4) RETURNING id"
        );
    }
}
