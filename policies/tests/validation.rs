//! Every validation error, with its exact message and position.

use pgseal_policies::CompiledPolicy;

/// The problems a policy text is refused with, as `pgseal policy check` prints them.
fn problems(src: &str) -> Vec<String> {
    match CompiledPolicy::from_toml("t.toml", src) {
        Ok(_) => panic!("policy accepted:\n{src}"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

/// A sealed column section, to build cases on.
const NIR: &str = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
mask = "nir"
"#;

#[test]
fn toml_syntax_errors_point_at_the_problem() {
    assert_eq!(
        problems("version = 1\nversion = 1\n"),
        ["t.toml:2:1: invalid TOML: duplicate key version"]
    );
    assert_eq!(
        problems("[columns\nmode = 1\n"),
        ["t.toml:1:9: invalid TOML: unclosed table, expected `]`"]
    );
    // The same sealed column written twice, exactly: TOML itself refuses it.
    let twice = format!("{NIR}{NIR}");
    assert_eq!(
        problems(&twice)[0],
        "t.toml:7:10: invalid TOML: duplicate key \"public.patients.nir\""
    );
}

#[test]
fn unknown_keys_everywhere() {
    let src = r#"
versions = 1

[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
masque = "nir"

[default]
vue = "ciphertext"

[default.budget]
rate = "1/minute"
per_week = 10

[classes.app]
roles = ["ehr_app"]
member = "x"

[classes.app.views]
"public.patients.nir" = { view = "masked", rule = "nir" }
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:1: unknown key `versions` in the policy's top level; expected one of: \
             version, columns, default, classes, trusted_functions, databases",
            "t.toml:7:1: unknown key `masque` in [columns.\"public.patients.nir\"]; expected one \
             of: mode, type, domain, mask, migrating, search",
            "t.toml:10:1: unknown key `vue` in [default]; expected one of: view, budget",
            "t.toml:14:1: unknown key `per_week` in [default.budget]; expected one of: rate, \
             burst, per_hour, per_day, action, on_cap, counts",
            "t.toml:18:1: unknown key `member` in [classes.app]; expected one of: roles, \
             default, views, budget, end_user_budget, require_end_user, blind_writes, lookups",
            "t.toml:21:44: unknown key `rule` in [classes.app.views] \"public.patients.nir\"; \
             expected one of: view, mask",
        ]
    );
}

#[test]
fn wrong_value_types() {
    let src = r#"
version = "1"
columns = []

[classes.app]
roles = "ehr_app"

[classes.other]
roles = [1]
default = 3
views = "all"

[classes.third]
roles = ["r3"]
budget = { rate = 100, burst = -1, per_day = 1.5, action = true }
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:11: `version` must be an integer, found a string",
            "t.toml:3:11: `columns` must be a table, found an array",
            "t.toml:6:9: `roles` must be an array, found a string",
            "t.toml:9:10: a role must be a string, found an integer",
            "t.toml:10:11: a view must be a string or a table like { view = \"masked\", mask = \
             \"initial\" }, found an integer",
            "t.toml:11:9: `views` must be a table, found a string",
            "t.toml:15:19: `rate` must be a string, found an integer",
            "t.toml:15:32: `burst` must be a number of rows, 0 or more (found -1)",
            "t.toml:15:46: `per_day` must be an integer, found a float",
            "t.toml:15:60: `action` must be a string, found a boolean",
        ]
    );
}

#[test]
fn version_must_be_supported() {
    assert_eq!(
        problems("version = 2\n"),
        ["t.toml:1:11: unsupported policy format version 2 (this pgseal reads version 1)"]
    );
}

#[test]
fn column_names_must_be_schema_table_column() {
    let src = r#"
[columns."patients.nir"]
mode = "randomized"
type = "text"

[columns."public.pa tients.nir"]
mode = "randomized"
type = "text"

[columns.'public."".nir']
mode = "randomized"
type = "text"

[columns."pg_catalog.pg_class.relname"]
mode = "randomized"
type = "text"
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:10: invalid column \"patients.nir\": write it as schema.table.column \
             (expected 3 dot-separated names, found 2)",
            "t.toml:6:10: invalid column \"public.pa tients.nir\": write it as \
             schema.table.column (unexpected character ' ' (quote the name to use it))",
            "t.toml:10:10: invalid column \"public.\\\"\\\".nir\": write it as \
             schema.table.column (a quoted name cannot be empty)",
            "t.toml:14:10: cannot seal pg_catalog.pg_class.relname: pg_catalog is a system \
             schema",
        ]
    );
}

#[test]
fn duplicate_columns_after_folding() {
    let src = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"

[columns."Public.Patients.NIR"]
mode = "deterministic"
type = "text"

[columns.'public.patients."nir"']
mode = "deterministic"
type = "text"

[columns.'public."Patients".nir']
mode = "deterministic"
type = "text"
"#;
    // "Patients" quoted is another table: only the first two duplicates are errors.
    assert_eq!(
        problems(src),
        [
            "t.toml:6:10: duplicate sealed column public.patients.nir (first declared on line 2)",
            "t.toml:10:10: duplicate sealed column public.patients.nir (first declared on line \
             2)",
        ]
    );
}

#[test]
fn column_sections_need_mode_and_type() {
    let src = r#"
[columns."public.a.b"]
domain = "x"

[columns."public.a.c"]
mode = "tokenise-nir"
type = "money"
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:10: [columns.\"public.a.b\"] has no `mode` (one of randomized, \
             deterministic, tokenize-nir, tokenize-digits, tokenize-alnum or pseudonym)",
            "t.toml:2:10: [columns.\"public.a.b\"] has no `type` (the plaintext type the \
             application sees)",
            "t.toml:6:8: unknown mode \"tokenise-nir\" (expected randomized, deterministic, \
             tokenize-nir, tokenize-digits, tokenize-alnum or pseudonym)",
            "t.toml:7:8: unknown or unsupported type \"money\" (expected text, varchar(n), \
             char(n), boolean, int2, int4, int8, numeric, float4, float8, date, timestamp, \
             timestamptz, uuid, bytea, json or jsonb)",
        ]
    );
    assert_eq!(
        problems("[columns.\"public.a.b\"]\nmode = \"randomized\"\ntype = \"varchar(0)\"\n"),
        ["t.toml:3:8: invalid type modifier in \"varchar(0)\""]
    );
}

#[test]
fn modes_that_cannot_fit_their_type() {
    let src = r#"
[columns."public.a.nir_date"]
mode = "tokenize-nir"
type = "date"

[columns."public.a.nir_short"]
mode = "tokenize-nir"
type = "varchar(13)"

[columns."public.a.nir_padded"]
mode = "tokenize-nir"
type = "char(20)"

[columns."public.a.digits_int"]
mode = "tokenize-digits"
type = "int8"

[columns."public.a.alnum_uuid"]
mode = "tokenize-alnum"
type = "uuid"
"#;
    let nir = "a NIR token needs text, varchar(n) with n >= 15, or char(15)";
    let token = "a token is a string of the same length: declare text, varchar(n) or char(n) \
                 (and store it so)";
    assert_eq!(
        problems(src),
        [
            format!("t.toml:2:10: mode tokenize-nir cannot fit type date: {nir}"),
            format!("t.toml:6:10: mode tokenize-nir cannot fit type varchar(13): {nir}"),
            format!("t.toml:10:10: mode tokenize-nir cannot fit type char(20): {nir}"),
            format!("t.toml:14:10: mode tokenize-digits cannot fit type int8: {token}"),
            format!("t.toml:18:10: mode tokenize-alnum cannot fit type uuid: {token}"),
        ]
    );
    // And the ones that fit.
    let fine = r#"
[columns."public.a.n1"]
mode = "tokenize-nir"
type = "char(15)"
[columns."public.a.n2"]
mode = "tokenize-nir"
type = "text"
[columns."public.a.d"]
mode = "tokenize-digits"
type = "varchar(11)"
[columns."public.a.r"]
mode = "randomized"
type = "timestamptz"
[columns."public.a.p"]
mode = "pseudonym"
type = "int8"
"#;
    assert!(CompiledPolicy::from_toml("t.toml", fine).is_ok());
}

#[test]
fn masks_must_parse_and_fit_the_column() {
    let src = r#"
[columns."public.a.born"]
mode = "randomized"
type = "date"
mask = "nir"

[columns."public.a.count"]
mode = "randomized"
type = "int4"
mask = "year"

[columns."public.a.flag"]
mode = "randomized"
type = "boolean"
mask = "keep-last-1"

[columns."public.a.x"]
mode = "randomized"
type = "text"
mask = "hide"

[columns."public.a.y"]
mode = "randomized"
type = "text"
mask = "keep-first-0"

[columns."public.a.z"]
mode = "randomized"
type = "text"
mask = "keep-last-100"
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:10: mask nir does not fit type date",
            "t.toml:7:10: mask year does not fit type int4",
            "t.toml:12:10: mask keep-last-1 does not fit type boolean",
            "t.toml:20:8: unknown mask \"hide\" (expected nir, email, phone, initial, year, \
             year-month, redact, keep-first-N, keep-last-M or keep-first-N-last-M)",
            "t.toml:25:8: mask \"keep-first-0\" keeps nothing: use \"redact\"",
            "t.toml:30:8: mask \"keep-last-100\" keeps more than 64 characters at one end",
        ]
    );
}

#[test]
fn shared_domains_must_join() {
    let src = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
domain = "patient-nir"

[columns."public.lab_results.patient_nir"]
mode = "deterministic"
type = "text"
domain = "patient-nir"

[columns."public.a.id"]
mode = "deterministic"
type = "int8"
domain = "ids"

[columns."public.b.id"]
mode = "deterministic"
type = "text"
domain = "ids"

[columns."public.c.x"]
mode = "deterministic"
type = "text"
domain = "Patient NIR"
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:10:10: domain \"patient-nir\" joins columns of different modes: \
             public.patients.nir is tokenize-nir, public.lab_results.patient_nir is deterministic",
            "t.toml:20:10: domain \"ids\" joins columns of incompatible types: public.a.id is \
             int8, public.b.id is text",
            "t.toml:25:10: invalid domain \"Patient NIR\": use 1 to 63 lower-case letters, \
             digits, '_' and '-'",
        ]
    );
}

#[test]
fn roles_belong_to_one_class() {
    let src = r#"
[classes.app]
roles = ["ehr_app", "EHR_APP"]

[classes.billing]
roles = ["ehr_billing", "ehr_app", '"Mixed"', "Mixed", "bad role", '"unterminated']
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:3:21: role ehr_app is listed twice in class app (first on line 3)",
            "t.toml:6:25: role ehr_app is in two classes, app (line 3) and billing: a role \
             belongs to one class",
            "t.toml:6:56: invalid role \"bad role\": unexpected character ' ' (quote the name \
             to use it)",
            "t.toml:6:68: invalid role \"\\\"unterminated\": unterminated quoted name",
        ]
    );
}

#[test]
fn classes_need_roles_and_a_free_name() {
    let src = r#"
[classes.nobody]
default = "ciphertext"

[classes.empty]
roles = []

[classes.default]
roles = ["x"]

[classes.""]
roles = ["y"]
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:10: class nobody has no roles: list its members in `roles`",
            "t.toml:6:9: class empty has no roles: list its members in `roles`",
            "t.toml:8:10: class name \"default\" is reserved for roles in no class: configure \
             them in [default]",
            "t.toml:11:10: a class name cannot be empty",
        ]
    );
}

#[test]
fn views_that_make_no_sense() {
    let src = r#"
[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"

[columns."public.patients.birth_date"]
mode = "randomized"
type = "date"

[columns."public.cohort.subject"]
mode = "pseudonym"
type = "text"

[classes.app]
roles = ["app"]
default = { view = "masked", mask = "redact" }

[classes.app.views]
"public.patients.ssn" = "plaintext"
"public.patients.nir" = "masked"
"public.patients.birth_date" = { view = "plaintext", mask = "year" }
"public.cohort.subject" = "plaintext"
"public.cohort.Subject" = "masked"
"public.patients.city" = "secret"
"public.patients.email" = { mask = "email" }

[classes.other]
roles = ["other"]
default = "masked"

[classes.other.views]
"public.patients.birth_date" = { view = "masked", mask = "email" }
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:16:11: a class's default view takes no mask: each column's own `mask` \
             applies",
            "t.toml:19:25: class app gives a view of public.patients.ssn, which is not a sealed \
             column",
            "t.toml:20:25: class app sees public.patients.nir masked, but no mask rule applies: \
             write { view = \"masked\", mask = \"...\" } or set `mask` on the column",
            "t.toml:21:32: a mask applies only to the \"masked\" view, not to \"plaintext\" \
             (mask year)",
            "t.toml:22:27: public.cohort.subject is stored in pseudonym mode and cannot be read \
             back, so the view \"plaintext\" makes no sense: use \"pseudonym\"",
            "t.toml:23:27: class app gives two views of public.cohort.subject",
            "t.toml:24:26: unknown view \"secret\" (expected plaintext, masked, pseudonym, \
             ciphertext or denied)",
            "t.toml:25:27: [classes.app.views] \"public.patients.email\" has no `view` (one of \
             plaintext, masked, pseudonym, ciphertext or denied)",
            "t.toml:29:11: class other sees public.patients.nir masked, but no mask rule \
             applies: set `mask` on the column or give it its own view in \
             [classes.other.views]",
            "t.toml:32:32: mask email does not fit public.patients.birth_date (type date)",
        ]
    );
}

#[test]
fn the_default_view_is_never_more_than_ciphertext() {
    for (view, col) in [("plaintext", 8), ("pseudonym", 8), ("masked", 8)] {
        let src = format!("[default]\nview = \"{view}\"\n");
        assert_eq!(
            problems(&src),
            [format!(
                "t.toml:2:{col}: the default view must be \"ciphertext\" or \"denied\": roles \
                 in no class never see more (found \"{view}\")"
            )]
        );
    }
}

#[test]
fn budgets_that_make_no_sense() {
    let src = r#"
[classes.a]
roles = ["a"]

[classes.a.budget]
rate = "0/second"
burst = 0
per_hour = 0
per_day = 0

[classes.b]
roles = ["b"]

[classes.b.budget]
rate = "100 per minute"
per_hour = 5000
per_day = 2000
action = "slow"
on_cap = "throttle"
counts = "some"

[classes.c]
roles = ["c"]

[classes.c.budget]
burst = 10
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:6:8: rate \"0/second\" lets no row through: to forbid a column, give it the \
             view \"denied\"",
            "t.toml:7:9: burst must be at least 1 row",
            "t.toml:8:12: per_hour = 0 lets no row through: to forbid a column, give it the \
             view \"denied\"",
            "t.toml:9:11: per_day = 0 lets no row through: to forbid a column, give it the view \
             \"denied\"",
            "t.toml:15:8: rate \"100 per minute\" is not of the form \"ROWS/UNIT\" with UNIT \
             second, minute or hour",
            "t.toml:16:12: per_hour 5000 is above per_day 2000: the hourly cap could never be \
             reached",
            "t.toml:18:10: unknown action \"slow\" (expected throttle, block or alert)",
            "t.toml:19:10: on_cap = \"throttle\" makes no sense: a cap only frees up as the hour \
             or day rolls on, so use \"block\" or \"alert\"",
            "t.toml:20:10: unknown counts \"some\" (expected \"sealed\" or \"all\")",
            "t.toml:25:1: [classes.c.budget] has no `rate` (for example rate = \"100/minute\")",
        ]
    );
}

#[test]
fn the_default_budget_must_be_the_strictest() {
    let src = r#"
[default.budget]
rate = "10/minute"
per_day = 5000
action = "alert"

[classes.support]
roles = ["ehr_admin"]
budget = { rate = "100/minute", burst = 200, per_day = 2000, action = "throttle" }

[classes.app]
roles = ["ehr_app"]
budget = { rate = "5/minute" }
"#;
    assert_eq!(
        problems(src),
        [
            "t.toml:2:10: the default budget must be the strictest, but it is looser than class \
             support's: per_day 5000 is above 2000",
            "t.toml:2:10: the default budget must be the strictest, but it is looser than class \
             app's: rate 10/minute is above 5/minute",
        ]
    );
}

#[test]
fn every_problem_is_listed_in_file_order() {
    let src = r#"
[classes.late]
roles = ["x"]
default = "nope"

[columns."public.a.b"]
mode = "nope"
type = "text"
"#;
    // Classes come before columns in this file: so do their problems.
    assert_eq!(
        problems(src),
        [
            "t.toml:4:11: unknown view \"nope\" (expected plaintext, masked, pseudonym, \
             ciphertext or denied)",
            "t.toml:7:8: unknown mode \"nope\" (expected randomized, deterministic, \
             tokenize-nir, tokenize-digits, tokenize-alnum or pseudonym)",
        ]
    );
}

#[test]
fn columns_count_characters_not_bytes() {
    // "Élodie" and "é" are multi-byte: the column of `mode` must still be 8 on its line, and
    // the error after them must be placed by characters.
    let src = "# Élodie, é, ü\n[columns.\"public.élèves.nom\"]\nmode = \"x\"\ntype = \"text\"\n";
    assert_eq!(
        problems(src),
        [
            "t.toml:3:8: unknown mode \"x\" (expected randomized, deterministic, tokenize-nir, \
          tokenize-digits, tokenize-alnum or pseudonym)"
        ]
    );
    let src = "[columns.\"public.élèves.nom\"] # é\nmode = \"randomized\"\ntype = \"text\"\nmask = \"x\"\n";
    assert_eq!(
        problems(src),
        [
            "t.toml:4:8: unknown mask \"x\" (expected nir, email, phone, initial, year, \
          year-month, redact, keep-first-N, keep-last-M or keep-first-N-last-M)"
        ]
    );
}

#[test]
fn migrating_is_a_boolean_column_flag() {
    let src = r#"
version = 1

[columns."public.patients.nir"]
mode = "tokenize-nir"
type = "varchar(15)"
migrating = true

[columns."public.patients.email"]
mode = "deterministic"
type = "text"

[columns."public.patients.phone"]
mode = "deterministic"
type = "text"
migrating = "yes"
"#;
    let problems = problems(src);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("`migrating`"), "{problems:?}");
    let valid = src.replace("migrating = \"yes\"", "migrating = false");
    let policy = pgseal_policies::CompiledPolicy::from_toml("t.toml", &valid).unwrap();
    let flags: Vec<bool> = policy.columns().iter().map(|c| c.migrating).collect();
    assert_eq!(flags, [true, false, false]);
}

#[test]
fn databases_are_names_postgresql_keeps_each_once() {
    let long = "d".repeat(64);
    let text = format!(
        "databases = [\"ehr\", \"ehr\", \"\", \"{long}\", 7]\n{NIR}[classes.app]\nroles = [\"app\"]\ndefault = \"plaintext\"\n"
    );
    assert_eq!(
        problems(&text),
        [
            "t.toml:1:21: database \"ehr\" is named twice in `databases`".to_string(),
            "t.toml:1:28: invalid database name \"\"".to_string(),
            format!(
                "t.toml:1:32: database name \"{long}\" is 64 bytes: PostgreSQL keeps 63, so it would name another database"
            ),
            "t.toml:1:100: a database name must be a string, found an integer".to_string(),
        ]
    );
    assert!(problems(&format!("databases = []\n{NIR}"))[0].contains("`databases` is empty"));
    let long_role = format!("{NIR}[classes.app]\nroles = [\"{}\"]\n", "r".repeat(64));
    let found = problems(&long_role);
    assert!(
        found
            .iter()
            .any(|p| p.contains("PostgreSQL truncates names to 63 bytes")),
        "{found:?}"
    );
    let ok = CompiledPolicy::from_toml("t.toml", &format!("databases = [\"ehr\"]\n{NIR}")).unwrap();
    assert_eq!(ok.databases(), ["ehr"]);
}
