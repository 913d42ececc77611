//! End users: the sqlcommenter comment, the SET statements, and SET / SET LOCAL semantics.

use pgseal::enduser::{
    EndUserCommand, EndUserError, EndUserState, end_user_from_comment, parse_end_user_command,
};

fn set(local: bool, value: &str) -> Option<EndUserCommand> {
    Some(EndUserCommand::Set {
        local,
        value: value.to_owned(),
    })
}

#[test]
fn comments_declare_the_end_user() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "SELECT * FROM patients /* pgseal_user='dr.martin' */",
            Some("dr.martin"),
        ),
        ("/*pgseal_user='dr.martin'*/ SELECT 1", Some("dr.martin")),
        (
            "SELECT 1 /*controller='index',framework='django%3A4.2',pgseal_user='dr%20L%C3%A9a'*/",
            Some("dr Léa"),
        ),
        ("SELECT 1 /* pgseal_user='o\\'brien' */", Some("o'brien")),
        // Two comments agreeing are fine.
        (
            "SELECT /* pgseal_user='a' */ 1 /* pgseal_user='a' */",
            Some("a"),
        ),
        // Not comments: inside a string, a quoted identifier, a line comment's text.
        ("SELECT '/* pgseal_user=''mallory'' */'", None),
        ("SELECT 1 AS \"/* pgseal_user='mallory' */\"", None),
        ("SELECT $$ /* pgseal_user='mallory' */ $$", None),
        ("SELECT 1 -- pgseal_user='mallory'", None),
        // Other keys, empty values, malformed pairs: nothing declared.
        ("SELECT 1 /* user='dr.martin' */", None),
        ("SELECT 1 /* pgseal_user='' */", None),
        ("SELECT 1 /* pgseal_user=dr.martin */", None),
        ("SELECT 1", None),
        // A statement that does not tokenize declares nothing (the analysis refuses it).
        ("SELECT 'x /* pgseal_user='a' */", None),
    ];
    for (sql, want) in cases {
        assert_eq!(
            end_user_from_comment(sql),
            Ok(want.map(str::to_owned)),
            "{sql}"
        );
    }
    assert_eq!(
        end_user_from_comment("SELECT /* pgseal_user='a' */ 1 /* pgseal_user='b' */"),
        Err(EndUserError::Conflicting)
    );
    let long = format!("SELECT 1 /* pgseal_user='{}' */", "x".repeat(300));
    assert!(matches!(
        end_user_from_comment(&long),
        Err(EndUserError::Invalid(_))
    ));
    assert!(matches!(
        end_user_from_comment("SELECT 1 /* pgseal_user='a%0Ab' */"),
        Err(EndUserError::Invalid("contains control characters"))
    ));
}

#[test]
fn set_statements_are_recognised() {
    let cases: &[(&str, Option<EndUserCommand>)] = &[
        ("SET pgseal.end_user = 'dr.martin'", set(false, "dr.martin")),
        (
            "set PGSEAL.END_USER to 'dr.martin';",
            set(false, "dr.martin"),
        ),
        ("SET SESSION pgseal.end_user = 'x'", set(false, "x")),
        ("SET LOCAL pgseal.end_user TO 'x'", set(true, "x")),
        (
            "SET LOCAL pgseal.end_user = E'o\\'brien'",
            set(true, "o'brien"),
        ),
        ("SET pgseal.end_user = DrMartin", set(false, "drmartin")),
        ("SET pgseal.end_user = \"DrMartin\"", set(false, "DrMartin")),
        ("SET pgseal.end_user = 42", set(false, "42")),
        (
            "SET \"pgseal\".\"end_user\" = 'x' /* trailing comment */ ;",
            set(false, "x"),
        ),
        (
            "SET pgseal.end_user = DEFAULT",
            Some(EndUserCommand::Reset { local: false }),
        ),
        (
            "SET LOCAL pgseal.end_user TO default",
            Some(EndUserCommand::Reset { local: true }),
        ),
        (
            "RESET pgseal.end_user",
            Some(EndUserCommand::Reset { local: false }),
        ),
        ("RESET ALL", Some(EndUserCommand::ResetAll)),
        ("discard all;", Some(EndUserCommand::ResetAll)),
        (
            "SELECT set_config('pgseal.end_user', 'dr.martin', false)",
            set(false, "dr.martin"),
        ),
        (
            "select pg_catalog.set_config('PGSEAL.END_USER', 'x', true)",
            set(true, "x"),
        ),
        // Not about pgseal.end_user.
        ("SET search_path = public", None),
        ("SET \"PGSEAL\".end_user = 'x'", None),
        ("SET LOCAL statement_timeout = '1s'", None),
        ("RESET search_path", None),
        ("DISCARD PLANS", None),
        ("SELECT set_config('search_path', 'x', false)", None),
        ("SELECT * FROM end_user", None),
        ("SELECT 'SET pgseal.end_user = 1'", None),
    ];
    for (sql, want) in cases {
        assert_eq!(parse_end_user_command(sql), Ok(want.clone()), "{sql}");
    }
    for bad in [
        "SET pgseal.end_user = 'a', 'b'",
        "SET pgseal.end_user",
        "SELECT set_config('pgseal.end_user', 'x', maybe)",
        "SELECT set_config('pgseal.end_user', 42, false)",
    ] {
        assert!(
            matches!(parse_end_user_command(bad), Err(EndUserError::Invalid(_))),
            "{bad}"
        );
    }
}

#[test]
fn set_lasts_the_session_and_rollback_undoes_it() {
    let mut s = EndUserState::new();
    assert_eq!(s.current(), None);
    assert!(s.on_set(false, Some("a")));
    assert_eq!(s.current(), Some("a"));
    s.on_begin();
    s.on_set(false, Some("b"));
    assert_eq!(s.current(), Some("b"));
    s.on_transaction_end(false);
    assert_eq!(s.current(), Some("a"), "ROLLBACK undoes SET");
    s.on_begin();
    s.on_set(false, Some("c"));
    s.on_transaction_end(true);
    assert_eq!(s.current(), Some("c"), "COMMIT keeps SET");
    assert!(!s.in_transaction());
    // RESET, RESET ALL and an empty value clear it.
    s.on_command(&EndUserCommand::ResetAll);
    assert_eq!(s.current(), None);
    s.on_set(false, Some("d"));
    s.on_set(false, Some(""));
    assert_eq!(s.current(), None);
}

#[test]
fn set_local_lasts_the_transaction() {
    let mut s = EndUserState::new();
    s.on_set(false, Some("app"));
    // Outside a transaction, SET LOCAL does nothing (PostgreSQL warns).
    assert!(!s.on_set(true, Some("x")));
    assert_eq!(s.current(), Some("app"));

    s.on_begin();
    assert!(s.on_command(&EndUserCommand::Set {
        local: true,
        value: "dr.martin".into()
    }));
    assert_eq!(s.current(), Some("dr.martin"));
    s.on_transaction_end(true);
    assert_eq!(s.current(), Some("app"), "SET LOCAL ends with COMMIT");

    s.on_begin();
    s.on_set(true, Some("dr.martin"));
    s.on_transaction_end(false);
    assert_eq!(s.current(), Some("app"), "and with ROLLBACK");

    // SET then SET LOCAL: the local value until the end, then the SET's.
    s.on_begin();
    s.on_set(false, Some("b"));
    s.on_set(true, Some("l"));
    assert_eq!(s.current(), Some("l"));
    s.on_transaction_end(true);
    assert_eq!(s.current(), Some("b"));

    // SET LOCAL then SET: the SET replaces it, and stays after COMMIT.
    s.on_begin();
    s.on_set(true, Some("l"));
    s.on_set(false, Some("c"));
    assert_eq!(s.current(), Some("c"));
    s.on_transaction_end(true);
    assert_eq!(s.current(), Some("c"));

    // A local reset hides the session value for the transaction.
    s.on_begin();
    s.on_command(&EndUserCommand::Reset { local: true });
    assert_eq!(s.current(), None);
    s.on_transaction_end(true);
    assert_eq!(s.current(), Some("c"));

    // A statement's comment wins over the setting.
    assert_eq!(s.for_statement(Some("dr.who")), Some("dr.who"));
    assert_eq!(s.for_statement(None), Some("c"));
}

#[test]
fn savepoints_scope_what_was_set_after_them() {
    let mut s = EndUserState::new();
    s.on_begin();
    s.on_set(false, Some("a"));
    s.on_savepoint("sp1");
    s.on_set(true, Some("b"));
    s.on_savepoint("sp2");
    s.on_set(false, Some("c"));
    assert_eq!(s.current(), Some("c"));
    s.on_rollback_to("sp2");
    assert_eq!(s.current(), Some("b"));
    s.on_rollback_to("sp1");
    assert_eq!(s.current(), Some("a"));
    // The savepoint stays after ROLLBACK TO; RELEASE keeps the values.
    s.on_set(false, Some("d"));
    s.on_rollback_to("sp1");
    assert_eq!(s.current(), Some("a"));
    s.on_set(false, Some("e"));
    s.on_release("sp1");
    s.on_rollback_to("sp1");
    assert_eq!(s.current(), Some("e"), "released: nothing to roll back to");
    s.on_transaction_end(false);
    assert_eq!(s.current(), None);
}
