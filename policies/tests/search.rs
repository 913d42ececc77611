//! `search = { … }` on a sealed column: how a policy declares search indexes, what the compiled
//! policy holds, and every mistake named where it is written.

use pgseal_policies::{CompiledPolicy, DateBuckets, SearchSpec};

fn problems(src: &str) -> Vec<String> {
    match CompiledPolicy::from_toml("t.toml", src) {
        Ok(_) => panic!("policy accepted:\n{src}"),
        Err(diagnostics) => diagnostics.iter().map(ToString::to_string).collect(),
    }
}

fn column(mode: &str, ty: &str, search: &str) -> String {
    format!(
        "[columns.\"public.patients.c\"]\nmode = \"{mode}\"\ntype = \"{ty}\"\nsearch = {search}\n"
    )
}

#[test]
fn a_column_declares_its_indexes_and_their_bits() {
    let p = CompiledPolicy::from_toml(
        "t.toml",
        &format!(
            "{}\n[columns.\"public.patients.born\"]\nmode = \"randomized\"\ntype = \"date\"\n\
             search = {{ exact = true, date = \"month\", bits = 10 }}\n",
            column(
                "randomized",
                "text",
                "{ prefix = 4, trigram = true, exact = true }"
            )
        ),
    )
    .unwrap();
    let c = p.column(p.column_id("public", "patients", "c").unwrap());
    assert_eq!(
        c.search,
        Some(SearchSpec {
            prefix: 4,
            trigram: true,
            exact: true,
            date: None,
            bits: 12,
        })
    );
    let born = p.column(p.column_id("public", "patients", "born").unwrap());
    let spec = born.search.unwrap();
    assert_eq!((spec.date, spec.bits), (Some(DateBuckets::Month), 10));
    let notes = pgseal_policies::leakage::leakage_notes(&p);
    assert!(
        notes
            .iter()
            .any(|n| n.contains("public.patients.c has search tokens")
                && n.contains("first 1 to 4 characters")
                && n.contains("12 bits")),
        "{notes:?}"
    );
}

#[test]
fn mistakes_are_named_where_they_are_written() {
    for (search, mode, ty, expected) in [
        (
            "{ prefix = 0 }",
            "randomized",
            "text",
            "`prefix` is the longest indexed prefix, 1 to 8",
        ),
        (
            "{ prefix = 9 }",
            "randomized",
            "text",
            "1 to 8 characters (found 9)",
        ),
        (
            "{ trigram = true, bits = 3 }",
            "randomized",
            "text",
            "`bits` keeps 4 to 24 bits",
        ),
        (
            "{ trigram = true, bits = 30 }",
            "randomized",
            "text",
            "(found 30)",
        ),
        (
            "{ date = \"week\" }",
            "randomized",
            "date",
            "unknown date buckets \"week\"",
        ),
        ("{ trigram = \"yes\" }", "randomized", "text", "`trigram`"),
        (
            "{ soundex = true }",
            "randomized",
            "text",
            "unknown key `soundex`",
        ),
        ("{ bits = 10 }", "randomized", "text", "asks for no index"),
        ("\"prefix\"", "randomized", "text", "`search`"),
        (
            "{ prefix = 3 }",
            "randomized",
            "date",
            "`prefix` and `trigram` index characters",
        ),
        (
            "{ date = \"year\" }",
            "randomized",
            "text",
            "`date` buckets need date",
        ),
        (
            "{ exact = true }",
            "deterministic",
            "text",
            "not supported yet",
        ),
        (
            "{ exact = true }",
            "tokenize-nir",
            "varchar(15)",
            "need a randomized column",
        ),
        (
            "{ exact = true }",
            "pseudonym",
            "text",
            "need a randomized column",
        ),
    ] {
        let found = problems(&column(mode, ty, search));
        assert!(
            found
                .iter()
                .any(|p| p.contains(expected) && p.starts_with("t.toml:")),
            "search = {search} on a {mode} {ty}: {found:?}"
        );
    }
}

#[test]
fn columns_of_one_domain_index_alike() {
    let src = "[columns.\"public.a.x\"]\nmode = \"randomized\"\ntype = \"text\"\ndomain = \"names\"\n\
               search = { exact = true }\n\n\
               [columns.\"public.b.y\"]\nmode = \"randomized\"\ntype = \"text\"\ndomain = \"names\"\n";
    let found = problems(src);
    assert!(
        found.iter().any(|p| p.contains("different `search`")),
        "{found:?}"
    );
}

#[test]
fn a_blind_writer_may_not_see_the_tokens_of_what_it_writes() {
    // Writing "Marie" and reading its tokens back, a class could count the rows named Marie.
    let src = format!(
        "{}\n[classes.intake]\nroles = [\"intake\"]\ndefault = \"ciphertext\"\n\
         blind_writes = [\"public.patients.c\"]\n",
        column("randomized", "text", "{ exact = true }")
    );
    let found = problems(&src);
    assert!(
        found
            .iter()
            .any(|p| p.contains("must be \"denied\"") && p.contains("with search tokens")),
        "{found:?}"
    );
    let denied = src.replace("default = \"ciphertext\"", "default = \"denied\"");
    CompiledPolicy::from_toml("t.toml", &denied).expect("a blind writer that sees nothing");
}
