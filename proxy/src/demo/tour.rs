//! The text `pgseal demo` prints once it is ready: a `psql` command per role with what that
//! role sees, the direct connection an attacker holding the database would have, queries to
//! try, and where everything is.
//!
//! What it says must stay true of the code: each view comes from the hospital policy, and the
//! export budget line is [`ADMIN_BUDGET`], the one place to update when budgets are enforced.

use std::fmt::Write as _;
use std::net::SocketAddr;

use indicatif::HumanCount;

use super::DemoInfo;
use super::example::DATABASE;
use crate::seed::SeedReport;

/// What `ehr_admin`'s line says of its export budget.
pub const ADMIN_BUDGET: &str =
    "(export budget: 200 rows at once, then 100 a minute, none past 2,000 a day)";

/// The first line of the ready text; whatever follows it is the tour.
pub const READY: &str = "pgseal demo is ready";

/// Each role of the example, with what it sees through pgseal.
const ROLES: [(&str, &str); 3] = [
    ("ehr_app", "the application: every column in plaintext"),
    (
        "ehr_billing",
        "billing: names, NIR, birth date and contacts masked, diagnosis codes in clear,\n\
         \x20              notes and prescriptions denied (SQLSTATE 42501)",
    ),
    (
        "ehr_admin",
        "support/DBA: ciphertext (pgs1:…) and NIR tokens, never plaintext",
    ),
];

/// Queries to try as each role. The lookup, sort and search by name work for the role that
/// sees names in clear (pgseal sorts and searches itself: the database sees only ciphertext;
/// the search by first name is served from its search index, the one by last name reads every
/// patient); ehr_billing (masked) and ehr_admin (ciphertext) are refused them (42501): each
/// would test guesses and un-mask the column.
pub const QUERIES: [&str; 7] = [
    "SELECT id, nir, last_name, first_name, birth_date, email, phone FROM patients ORDER BY id LIMIT 5;",
    "SELECT id, first_name, city FROM patients WHERE last_name = 'Martin' ORDER BY id LIMIT 5;",
    "SELECT id, last_name, first_name, city FROM patients ORDER BY last_name, first_name, id LIMIT 5;",
    "SELECT id, last_name, first_name FROM patients WHERE last_name ILIKE 'mar%' ORDER BY last_name, id LIMIT 5;",
    "SELECT id, last_name, first_name FROM patients WHERE first_name ILIKE 'mar%' ORDER BY first_name, id LIMIT 5;",
    "SELECT diagnosis_code, count(*) FROM consultations GROUP BY diagnosis_code ORDER BY count(*) DESC LIMIT 5;",
    "SELECT patient_id, seen_at, diagnosis_code, notes, prescription FROM consultations ORDER BY id LIMIT 3;",
];

/// `psql "host=… port=… dbname=ehr user=… password=…"`.
pub fn psql(address: SocketAddr, user: &str, password: &str) -> String {
    format!(
        "psql \"host={} port={} dbname={DATABASE} user={user} password={password}\"",
        address.ip(),
        address.port()
    )
}

/// The whole text, from [`READY`] to how to stop.
pub fn render(info: &DemoInfo, report: &SeedReport) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = write_tour(&mut text, info, report);
    text
}

fn write_tour(out: &mut String, info: &DemoInfo, report: &SeedReport) -> std::fmt::Result {
    writeln!(
        out,
        "{READY}: pgseal on {}, protecting database \"{DATABASE}\" ({} synthetic patients, {} consultations).",
        info.pgseal,
        HumanCount(report.patients),
        HumanCount(report.consultations),
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Connect through pgseal as each role (the password is the role's name) and compare:"
    )?;
    for (role, sees) in ROLES {
        writeln!(out)?;
        let budget = if role == "ehr_admin" {
            format!(" {ADMIN_BUDGET}")
        } else {
            String::new()
        };
        writeln!(out, "  {role:<12} {sees}{budget}")?;
        writeln!(out, "  {}", psql(info.pgseal, role, role))?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "What an attacker holding the database gets: PostgreSQL itself, as its superuser,\n\
         bypassing pgseal: every sealed column is a pgs1: envelope or a token."
    )?;
    writeln!(
        out,
        "  {}",
        psql(info.postgres, &info.superuser, &info.superuser_password)
    )?;
    writeln!(out)?;
    writeln!(
        out,
        "Try, as each role (only ehr_app may look patients up, sort or search by name: pgseal\n\
         does it on the plaintext while the database sees ciphertext — the search by first name\n\
         from a search index of truncated keyed tokens, the one by last name reading every\n\
         patient; for a role that does not see names in clear, each would test guesses, so it is\n\
         refused unless the policy grants the lookup):"
    )?;
    for query in QUERIES {
        writeln!(out, "  {query}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "PostgreSQL {} (pid {}) on {}; policy, keyring and data in {}",
        info.postgres_version.as_deref().unwrap_or("?"),
        info.postgres_pid
            .map_or_else(|| "?".to_string(), |pid| pid.to_string()),
        info.postgres,
        info.dir.display(),
    )?;
    writeln!(
        out,
        "Press Ctrl-C to stop: pgseal and PostgreSQL stop and that directory is removed."
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::demo::example::ExampleFiles;

    fn info() -> DemoInfo {
        let dir = PathBuf::from("/tmp/pgseal-demo-x");
        DemoInfo {
            pgseal: "127.0.0.1:6432".parse().unwrap(),
            postgres: "127.0.0.1:41234".parse().unwrap(),
            superuser: "postgres".into(),
            superuser_password: "secret".into(),
            postgres_pid: Some(4242),
            postgres_version: Some("17".into()),
            files: ExampleFiles {
                policy: dir.join("hospital.toml"),
                keyring: dir.join("keyring.toml"),
                schema: dir.join("hospital.sql"),
            },
            dir,
        }
    }

    fn report() -> SeedReport {
        SeedReport {
            patients: 10_000,
            consultations: 25_000,
            elapsed: Duration::from_secs(3),
        }
    }

    #[test]
    fn the_tour_gives_a_command_per_role_and_the_direct_connection() {
        let text = render(&info(), &report());
        assert!(text.starts_with(READY), "{text}");
        assert!(text.contains("10,000 synthetic patients, 25,000 consultations"));
        for role in ["ehr_app", "ehr_billing", "ehr_admin"] {
            let command =
                format!("psql \"host=127.0.0.1 port=6432 dbname=ehr user={role} password={role}\"");
            assert!(text.contains(&command), "{role}: {text}");
        }
        assert!(text.contains(
            "psql \"host=127.0.0.1 port=41234 dbname=ehr user=postgres password=secret\""
        ));
        assert!(text.contains("PostgreSQL 17 (pid 4242) on 127.0.0.1:41234"));
        assert!(text.contains("/tmp/pgseal-demo-x"));
    }

    #[test]
    fn the_budget_note_stands_on_the_admin_line_only() {
        let text = render(&info(), &report());
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(ADMIN_BUDGET)).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(lines[0].contains("ehr_admin"));
        assert!(text.lines().all(|line| line == line.trim_end()), "{text}");
    }

    #[test]
    fn the_suggested_queries_are_planned_for_the_application() {
        let policy = pgseal_policies::CompiledPolicy::from_toml(
            "hospital.toml",
            crate::demo::example::POLICY,
        )
        .expect("the example policy");
        for query in QUERIES {
            let analysis = crate::analyze::analyze(query, &policy).expect("parsed");
            assert_eq!(analysis.first_refusal(), None, "{query}");
        }
    }
}
