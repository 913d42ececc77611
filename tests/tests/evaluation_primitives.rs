//! Differential test of the evaluation primitives (`pgseal::evaluate`), PostgreSQL being the
//! oracle. In databases of three kinds — ICU `fr-FR`, libc `C` and libc `C.utf8` — about three
//! hundred tricky names (French accents and ligatures, case variants, hyphens, apostrophes,
//! spaces, particles, digits, the empty string, German, Scandinavian, Greek, Cyrillic, CJK,
//! decomposed accents…) plus generated ones go to the server and to pgseal:
//!
//! - `ORDER BY` of the whole list, against a sort by [`TextOrder::compare`];
//! - `<` and `=` of every ordered pair;
//! - `lower()` and `upper()` of each;
//! - `LIKE` and `ILIKE` of each against a hundred patterns (prefixes, infixes, `_` on
//!   multibyte characters, case and accent variants, escapes, `ESCAPE ''`, `ESCAPE '#'`, an
//!   invalid escape, patterns ending in the escape character) where an error's SQLSTATE must
//!   be the same;
//! - `<` and `=` of typed values (numeric, float8, real, integers, dates, timestamps, uuid,
//!   bytea, boolean, `char(n)`), and across numeric types as PostgreSQL casts them.
//!
//! Two sweeps cover the repertoire: `lower()` and `upper()` of every code point of the Basic
//! Multilingual Plane, and the order of every Latin, Greek, Cyrillic, punctuation and currency
//! character followed by `a`, `b`, `à` and `A` (which shows differences at each level).
//!
//! Values with a character [`TextOrder::first_unverified`] names (where the server's ICU and
//! pgseal's newer CLDR data are known to differ) are left out of the order and case checks,
//! as pgseal's callers leave them out of evaluation; the test counts them. `LIKE` is checked on
//! every value. The [`TextOrder`] of each database is built from its own `pg_database` row, as
//! pgseal does. Every mismatch is collected and all are printed at once.

use std::cmp::Ordering;

use pgseal::evaluate::collation::TextOrder;
use pgseal::evaluate::like::{Escape, PatternError, ilike, like};
use pgseal::evaluate::scalar::{self, Scalar};
use pgseal::protect::date_settings::DateSettings;
use pgseal::protect::values::{Format, canonical_from_text, canonical_from_wire};
use pgseal_policies::PlainType;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_postgres::Client;

/// Names people are written with, chosen for what collations and case mappings disagree on.
const NAMES: &[&str] = &[
    // Accents.
    "Émile",
    "émile",
    "Emile",
    "EMILE",
    "Éloïse",
    "Eloise",
    "Hélène",
    "Helene",
    "HÉLÈNE",
    "Gérard",
    "Gerard",
    "Gérald",
    "Gêne",
    "gène",
    "gêne",
    "Genet",
    "Génet",
    "côte",
    "cote",
    "côté",
    "coté",
    "Côte",
    "COTE",
    "Noël",
    "Noel",
    "Zoé",
    "Zoe",
    "Zoë",
    "Chloé",
    "Loïc",
    "Loic",
    "Anaïs",
    "Anais",
    "François",
    "Francois",
    "FRANÇOIS",
    "Françoise",
    "Jérôme",
    "Jerome",
    "Benoît",
    "Benoit",
    "Thérèse",
    "Therese",
    "Léa",
    "Lea",
    "Léo",
    "Leo",
    "Éric",
    "Eric",
    "Ève",
    "Eve",
    "Maël",
    "Mael",
    "Raphaël",
    "Raphael",
    "Ségolène",
    "Cécile",
    "Cecile",
    "Aurélie",
    "Hervé",
    "Herve",
    "André",
    "Andre",
    "Andrée",
    "Agnès",
    "Agnes",
    "Inès",
    "Ines",
    "Joël",
    "Joel",
    "Océane",
    "Rémi",
    "Remi",
    "Rémy",
    "Sébastien",
    "Stéphane",
    "Stephane",
    "Théo",
    "Theo",
    "Valérie",
    "Yaël",
    "Héloïse",
    "Lefèvre",
    "Lefebvre",
    "Lefèbvre",
    "Garçon",
    "Garcon",
    "Alençon",
    "Besançon",
    "Où",
    "ou",
    "Août",
    "Aout",
    "Île",
    "ile",
    "Ile",
    "Ïle",
    "Ùrsula",
    // Ligatures.
    "Œuvre",
    "oeuvre",
    "Oeuvre",
    "cœur",
    "coeur",
    "Cœur",
    "Lætitia",
    "Laetitia",
    "LÆTITIA",
    "Cæcilia",
    "sœur",
    "soeur",
    "Œdipe",
    "Oedipe",
    "ﬁlon",
    "filon",
    "ﬀ",
    // Case variants.
    "DUPONT",
    "Dupont",
    "dupont",
    "DuPont",
    "Du Pont",
    "du Pont",
    "Dupond",
    "DUPOND",
    "Dupont-Aignan",
    "Dupontel",
    "Dupuis",
    "Durand",
    "DURAND",
    "durand",
    "Martin",
    "MARTIN",
    "martin",
    "Bernard",
    "Bernardin",
    "Petit",
    "PETIT",
    "Petitjean",
    "Petit-Jean",
    "Petit Jean",
    "Garnier",
    "Grenier",
    "Pelletier",
    "Mercier",
    "Olivier",
    "OLIVIER",
    "Xavier",
    "Poirier",
    // Hyphens.
    "Jean-Pierre",
    "Jean Pierre",
    "Jeanpierre",
    "JEAN-PIERRE",
    "jean-pierre",
    "Jean-Paul",
    "Marie-Ève",
    "Marie-Eve",
    "Marie Ève",
    "Anne-Sophie",
    "Anne Sophie",
    "Annesophie",
    "Saint-Étienne",
    "Saint-Etienne",
    "St-Étienne",
    "Saint Étienne",
    // Apostrophes, straight and typographic.
    "D'Artagnan",
    "d'Artagnan",
    "D’Artagnan",
    "d’Artagnan",
    "DArtagnan",
    "Dartagnan",
    "O'Neil",
    "O’Neil",
    "ONeil",
    "L'Huillier",
    "Lhuillier",
    "N'Diaye",
    "Ndiaye",
    "N’Diaye",
    "D'Alembert",
    "Dalembert",
    // Spaces and particles.
    "Le Gall",
    "Legall",
    "LE GALL",
    "Le Goff",
    "Legoff",
    "Le Bihan",
    "Lebihan",
    "La Fontaine",
    "Lafontaine",
    "Van der Berg",
    "Vanderberg",
    "van der Berg",
    "de la Tour",
    "De La Tour",
    "Delatour",
    "de La Tour",
    "de Latour",
    "de la Fontaine",
    "du Bellay",
    "Du Bellay",
    "Dubellay",
    "de Saint-Exupéry",
    "d'Estaing",
    "des Cars",
    "Descars",
    // Digits.
    "Louis XIV",
    "Louis 14",
    "Henri 4",
    "Henri IV",
    "Agent 007",
    "007",
    "7",
    "10",
    "9",
    "Pierre2",
    "Pierre10",
    "Pierre9",
    "2e étage",
    "1er",
    // Empty and blank.
    "",
    " ",
    "  ",
    " Dupont",
    "Dupont ",
    // German.
    "Strauß",
    "Strauss",
    "STRAUSS",
    "Straus",
    "Weiß",
    "Weiss",
    "weiß",
    "Groß",
    "Gross",
    "Großmann",
    "Müller",
    "Mueller",
    "Muller",
    "MÜLLER",
    "Müll",
    "Schön",
    "Schon",
    "Schoen",
    "Götz",
    "Goetz",
    "ẞ",
    "ß",
    // Scandinavian.
    "Ångström",
    "Angstrom",
    "Åsa",
    "Asa",
    "Øresund",
    "Oresund",
    "Søren",
    "Soren",
    "Bjørn",
    "Björn",
    "Bjorn",
    "Ærø",
    "Aaron",
    // Other scripts and letters with special case rules.
    "Σωκράτης",
    "ΣΩΚΡΑΤΗΣ",
    "Όμηρος",
    "ΟΔΥΣΣΕΥΣ",
    "Иванов",
    "ИВАНОВ",
    "иванов",
    "Пётр",
    "Петр",
    "محمد",
    "李",
    "王",
    "田中",
    "ǅemal",
    "ǄEMAL",
    "İstanbul",
    "ıstanbul",
    "ISTANBUL",
    "Ĳssel",
    "ĳssel",
    "Łukasz",
    "Lukasz",
    "Đorđe",
    "Dorde",
    "Çelik",
    "Şahin",
    "Nguyễn",
    "Nguyen",
    "Trần",
    "ŉ",
    "Ω",
    "Ω",
    "µ",
    "μ",
    "e\u{301}",
    "é",
    "E\u{301}cole",
    // Characters that are wildcards or escapes in patterns.
    "%",
    "_",
    "100%",
    "50% off",
    "a_b",
    "a\\b",
    "back\\slash",
    "x#y",
    "#",
    "\\",
    "-",
    "'",
    "a",
    "A",
    "b",
    "B",
];

/// LIKE patterns, with their `ESCAPE` clause (`None`: no clause).
const PATTERNS: &[(&str, Option<&str>)] = &[
    ("dup%", None),
    ("Dup%", None),
    ("DUP%", None),
    ("%ont", None),
    ("%ier%", None),
    ("%IER", None),
    ("%er%", None),
    ("_", None),
    ("__", None),
    ("___%", None),
    ("%", None),
    ("", None),
    ("%%", None),
    ("_%_", None),
    ("d_p%", None),
    ("%-%", None),
    ("%'%", None),
    ("%’%", None),
    ("% %", None),
    ("de la %", None),
    ("%de la%", None),
    ("le gall", None),
    ("Le Gall", None),
    ("Le_Gall", None),
    ("%é%", None),
    ("%É%", None),
    ("%e%", None),
    ("%è%", None),
    ("%ç%", None),
    ("%Ç%", None),
    ("%œ%", None),
    ("%Œ%", None),
    ("%oe%", None),
    ("%ss%", None),
    ("%ß%", None),
    ("%SS%", None),
    ("%ẞ%", None),
    ("%ø%", None),
    ("%Ø%", None),
    ("%σ%", None),
    ("%ς", None),
    ("%Σ", None),
    ("i%", None),
    ("İ%", None),
    ("%i%", None),
    ("%ı%", None),
    ("jean-%", None),
    ("Jean_Pierre", None),
    ("%Éric%", None),
    ("%eric%", None),
    ("%ERIC", None),
    ("hélène", None),
    ("HÉLÈNE", None),
    ("%ÆTITIA", None),
    ("%æ%", None),
    ("%ǆ%", None),
    ("ǅ%", None),
    ("%ﬁ%", None),
    ("%fi%", None),
    ("%µ%", None),
    ("%Μ%", None),
    ("_\u{301}%", None),
    ("e%", None),
    ("%\\%%", None),
    ("%\\_%", None),
    ("%\\\\%", None),
    ("a\\b", None),
    ("a\\\\b", None),
    ("\\a%", None),
    ("%\\", None),
    ("D\\", None),
    ("%t\\", None),
    ("d'%", None),
    ("%__", None),
    ("_%__%_", None),
    ("100#%", Some("#")),
    ("%#%%", Some("#")),
    ("%#_%", Some("#")),
    ("a#", Some("#")),
    ("%##%", Some("#")),
    ("x#y", Some("#")),
    ("%#\\%", Some("#")),
    ("a\\b", Some("#")),
    ("%\\%", Some("")),
    ("a\\b", Some("")),
    ("%\\", Some("")),
    ("50%", Some("")),
    ("%%", Some("é")),
    ("%é%", Some("é")),
    ("é%", Some("é")),
    ("%é", Some("é")),
    ("%", Some("ab")),
    ("%é", Some("%")),
    ("_%", Some("_")),
    ("%x", Some("x")),
    ("%D%", Some("D")),
    ("a\\b", Some("\\")),
];

/// How many names and patterns are generated on top of the fixed ones.
const GENERATED_NAMES: usize = 100;
const GENERATED_PATTERNS: usize = 40;

/// Characters generated names are made of.
const ALPHABET: &[char] = &[
    'a', 'b', 'c', 'd', 'e', 'l', 'n', 'o', 'r', 's', 't', 'u', 'A', 'B', 'D', 'E', 'L', 'O', 'S',
    'é', 'è', 'ê', 'ë', 'à', 'â', 'ç', 'ô', 'î', 'ï', 'ù', 'û', 'É', 'È', 'Ç', 'Ô', 'œ', 'Œ', 'æ',
    'ß', 'ø', 'å', 'Å', ' ', '-', '\'', '’', '0', '1', '9', '_', '%', '\\',
];

fn generated_names(rng: &mut StdRng) -> Vec<String> {
    (0..GENERATED_NAMES)
        .map(|_| {
            let length = rng.random_range(1..12);
            (0..length)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect()
        })
        .collect()
}

/// Patterns made from names: characters replaced by `_` or `%`, case swapped, `%` around.
fn generated_patterns(rng: &mut StdRng, names: &[String]) -> Vec<(String, Option<String>)> {
    (0..GENERATED_PATTERNS)
        .map(|_| {
            let name = &names[rng.random_range(0..names.len())];
            let mut pattern = String::new();
            if rng.random_bool(0.3) {
                pattern.push('%');
            }
            for c in name.chars() {
                match rng.random_range(0..20) {
                    0 | 1 => pattern.push('_'),
                    2 => pattern.push('%'),
                    3 => {}
                    4 | 5 => pattern.extend(c.to_uppercase()),
                    6 => pattern.extend(c.to_lowercase()),
                    _ => pattern.push(c),
                }
            }
            if rng.random_bool(0.3) {
                pattern.push('%');
            }
            let escape = match rng.random_range(0..6) {
                0 => Some(String::new()),
                1 => Some("#".to_string()),
                _ => None,
            };
            (pattern, escape)
        })
        .collect()
}

/// The databases compared, as `CREATE DATABASE` options.
const DATABASES: &[(&str, &str)] = &[
    (
        "eval_icu_fr",
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'fr-FR' LOCALE 'C'",
    ),
    ("eval_c", "TEMPLATE template0 LOCALE 'C'"),
    ("eval_c_utf8", "TEMPLATE template0 LOCALE 'C.utf8'"),
];

/// More ICU locales, for order and case only: tailorings (Swedish å ä ö after z, Turkish
/// dotted and dotless i), and `-u-` keywords (numeric order, secondary strength, upper case
/// first).
const MORE_ICU_LOCALES: &[&str] = &[
    "sv-SE",
    "tr-TR",
    "de_DE",
    "en-US-u-kn-true",
    "und-u-ks-level2",
    "fr-u-kf-upper",
];

/// Helpers in the session's temporary schema: LIKE and ILIKE, and any expression, with the
/// error's SQLSTATE as the answer instead of an aborted query.
const HELPERS: &str = r#"
CREATE FUNCTION pg_temp.try_like(v text, p text, e text, folded bool) RETURNS text AS $$
BEGIN
    IF e IS NULL THEN
        IF folded THEN RETURN (v ILIKE p)::text; END IF;
        RETURN (v LIKE p)::text;
    END IF;
    IF folded THEN RETURN (v ILIKE p ESCAPE e)::text; END IF;
    RETURN (v LIKE p ESCAPE e)::text;
EXCEPTION WHEN others THEN
    RETURN 'error ' || SQLSTATE;
END
$$ LANGUAGE plpgsql;
CREATE FUNCTION pg_temp.try_eval(query text, a text, b text) RETURNS text AS $$
DECLARE
    answer text;
BEGIN
    EXECUTE query INTO answer USING a, b;
    RETURN answer;
EXCEPTION WHEN others THEN
    RETURN 'error ' || SQLSTATE;
END
$$ LANGUAGE plpgsql;
"#;

fn ordering_name(ordering: Ordering) -> &'static str {
    match ordering {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// pgseal's answer in the form `try_like` gives the server's.
fn like_answer(result: Result<bool, PatternError>) -> String {
    match result {
        Ok(matched) => matched.to_string(),
        Err(e) => format!("error {}", e.sqlstate()),
    }
}

/// `ORDER BY`, `<` and `=` of every pair (with `pairs`; the same order already implies their
/// `<`), `lower()` and `upper()` of the names.
async fn check_order_and_case(
    client: &Client,
    database: &str,
    order: &TextOrder,
    names: &[String],
    pairs: bool,
    mismatches: &mut Vec<String>,
) {
    let verified: Vec<String> = names
        .iter()
        .filter(|n| order.first_unverified(n).is_none())
        .cloned()
        .collect();
    let unverified = |s: &str| order.first_unverified(s).is_some();
    // ORDER BY of the whole list.
    let rows = client
        .query(
            "SELECT v FROM unnest($1::text[]) v ORDER BY v",
            &[&verified],
        )
        .await
        .expect("ORDER BY");
    let server: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut ours = verified.clone();
    ours.sort_by(|a, b| order.compare(a, b));
    if server != ours {
        let at = server.iter().zip(&ours).position(|(s, o)| s != o);
        mismatches.push(format!(
            "{database}: ORDER BY differs from position {at:?}: server {:?}, pgseal {:?}",
            at.map(|i| &server[i..(i + 5).min(server.len())]),
            at.map(|i| &ours[i..(i + 5).min(ours.len())]),
        ));
    }

    // `<` and `=` of every ordered pair.
    let rows = if pairs {
        client
            .query(
                "SELECT a.i, b.i, a.v < b.v, a.v = b.v \
                 FROM unnest($1::text[]) WITH ORDINALITY a(v, i), \
                      unnest($1::text[]) WITH ORDINALITY b(v, i)",
                &[&names],
            )
            .await
            .expect("pairs")
    } else {
        Vec::new()
    };
    for row in &rows {
        let (i, j): (i64, i64) = (row.get(0), row.get(1));
        let (lt, eq): (bool, bool) = (row.get(2), row.get(3));
        let (a, b) = (&names[i as usize - 1], &names[j as usize - 1]);
        if unverified(a) || unverified(b) {
            continue;
        }
        let ordering = order.compare(a, b);
        if (ordering == Ordering::Less) != lt || (ordering == Ordering::Equal) != eq {
            mismatches.push(format!(
                "{database}: {a:?} vs {b:?}: server < {lt}, = {eq}; pgseal {}",
                ordering_name(ordering)
            ));
        }
    }

    // lower() and upper().
    let rows = client
        .query(
            "SELECT lower(v), upper(v) FROM unnest($1::text[]) WITH ORDINALITY n(v, i) ORDER BY i",
            &[&names],
        )
        .await
        .expect("lower and upper");
    for (row, name) in rows.iter().zip(names) {
        if unverified(name) {
            continue;
        }
        let (lower, upper): (String, String) = (row.get(0), row.get(1));
        if order.lower(name) != lower {
            mismatches.push(format!(
                "{database}: lower({name:?}): server {lower:?}, pgseal {:?}",
                order.lower(name)
            ));
        }
        if order.upper(name) != upper {
            mismatches.push(format!(
                "{database}: upper({name:?}): server {upper:?}, pgseal {:?}",
                order.upper(name)
            ));
        }
    }
}

/// `LIKE` and `ILIKE` of every name against every pattern.
async fn check_like(
    client: &Client,
    database: &str,
    order: &TextOrder,
    names: &[String],
    patterns: &[(String, Option<String>)],
    mismatches: &mut Vec<String>,
) {
    let unverified = |s: &str| order.first_unverified(s).is_some();
    let texts: Vec<&str> = patterns.iter().map(|(p, _)| p.as_str()).collect();
    let escapes: Vec<Option<&str>> = patterns.iter().map(|(_, e)| e.as_deref()).collect();
    let rows = client
        .query(
            "SELECT n.i, p.i, pg_temp.try_like(n.v, p.pat, p.esc, false), \
                    pg_temp.try_like(n.v, p.pat, p.esc, true) \
             FROM unnest($1::text[]) WITH ORDINALITY n(v, i), \
                  unnest($2::text[], $3::text[]) WITH ORDINALITY p(pat, esc, i)",
            &[&names, &texts, &escapes],
        )
        .await
        .expect("LIKE");
    for row in &rows {
        let (i, j): (i64, i64) = (row.get(0), row.get(1));
        let (server_like, server_ilike): (String, String) = (row.get(2), row.get(3));
        let name = &names[i as usize - 1];
        let (pattern, escape_clause) = &patterns[j as usize - 1];
        let escape = match escape_clause {
            None => Ok(Escape::Backslash),
            Some(clause) => Escape::from_clause(clause),
        };
        let ours_like = like_answer(escape.clone().and_then(|e| like(name, pattern, e)));
        let ours_ilike = like_answer(escape.and_then(|e| ilike(name, pattern, e, order)));
        let clause = escape_clause
            .as_ref()
            .map(|e| format!(" ESCAPE {e:?}"))
            .unwrap_or_default();
        if ours_like != server_like {
            mismatches.push(format!(
                "{database}: {name:?} LIKE {pattern:?}{clause}: server {server_like}, pgseal {ours_like}"
            ));
        }
        if ours_ilike != server_ilike && !unverified(name) && !unverified(pattern) {
            mismatches.push(format!(
                "{database}: {name:?} ILIKE {pattern:?}{clause}: server {server_ilike}, pgseal {ours_ilike}"
            ));
        }
    }
}

/// `lower()` and `upper()` of every code point of the Basic Multilingual Plane but NUL and the
/// surrogates, and the order of Latin, Greek, Cyrillic, punctuation and currency characters
/// each followed by `a`, `b`, `à` and `A`.
async fn check_repertoire(
    client: &Client,
    database: &str,
    order: &TextOrder,
    mismatches: &mut Vec<String>,
) -> usize {
    let characters: Vec<String> = (1u32..0x10000)
        .filter_map(char::from_u32)
        .filter(|c| order.first_unverified(&c.to_string()).is_none())
        .map(String::from)
        .collect();
    let rows = client
        .query(
            "SELECT lower(v), upper(v) FROM unnest($1::text[]) WITH ORDINALITY n(v, i) ORDER BY i",
            &[&characters],
        )
        .await
        .expect("lower and upper of the repertoire");
    for (row, c) in rows.iter().zip(&characters) {
        let (lower, upper): (String, String) = (row.get(0), row.get(1));
        for (what, server, ours) in [
            ("lower", &lower, order.lower(c)),
            ("upper", &upper, order.upper(c)),
        ] {
            if *server != ours {
                mismatches.push(format!(
                    "{database}: {what}(U+{:04X}): server {server:?}, pgseal {ours:?}",
                    c.chars().next().map_or(0, u32::from)
                ));
            }
        }
    }
    let probes: Vec<String> = (0x20u32..0x530)
        .chain(0x1E00..0x1F00)
        .chain(0x2000..0x2070)
        .chain(0x20A0..0x20D0)
        .filter_map(char::from_u32)
        .filter(|c| order.first_unverified(&c.to_string()).is_none())
        .flat_map(|c| ["a", "b", "à", "A"].map(|suffix| format!("{c}{suffix}")))
        .collect();
    let rows = client
        .query("SELECT v FROM unnest($1::text[]) v ORDER BY v", &[&probes])
        .await
        .expect("ORDER BY of the probes");
    let server: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let mut ours = probes.clone();
    ours.sort_by(|a, b| order.compare(a, b));
    for (at, (s, o)) in server.iter().zip(&ours).enumerate() {
        if s != o {
            mismatches.push(format!(
                "{database}: probes ordered differently from position {at}: server {:?}, pgseal {:?}",
                &server[at..(at + 6).min(server.len())],
                &ours[at..(at + 6).min(ours.len())]
            ));
            break;
        }
    }
    characters.len()
}

/// Values of one type, written as SQL input text, and the PlainType pgseal reads them as.
struct Typed {
    sql: &'static str,
    ty: PlainType,
    inputs: &'static [&'static str],
}

const NUMERICS: &[&str] = &[
    "0",
    "-0",
    "0.000",
    "1",
    "1.0",
    "1.00",
    "-1",
    "0.1",
    "0.10",
    "1e3",
    "1000",
    "1e-3",
    "0.001",
    "-0.001",
    "2.5",
    "-2.5",
    "9.999",
    "10",
    "123456789012345678901234567890",
    "123456789012345678901234567890.5",
    "0.000000000000000000001",
    "99999999999999999999.99999",
    "1.5e300",
    "-1.5e300",
    "1e400",
    "1e-400",
    "9223372036854775807",
    "9223372036854775808",
    "NaN",
    "Infinity",
    "-Infinity",
];

const FLOAT8S: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.1",
    "0.30000000000000004",
    "2.5",
    "3.14",
    "1e15",
    "1e16",
    "1e-310",
    "5e-324",
    "1.7976931348623157e308",
    "-1.7976931348623157e308",
    "9223372036854775807",
    "Infinity",
    "-Infinity",
    "NaN",
];

const FLOAT4S: &[&str] = &[
    "0",
    "-0",
    "0.1",
    "1.5",
    "2.5",
    "3.4e38",
    "-3.4e38",
    "1e-45",
    "Infinity",
    "-Infinity",
    "NaN",
];

const INTEGERS: &[&str] = &[
    "-9223372036854775808",
    "-1",
    "0",
    "1",
    "2",
    "10",
    "1000",
    "9223372036854775807",
];

const DATES: &[&str] = &[
    "-infinity",
    "infinity",
    "4714-11-24 BC",
    "0044-03-15 BC",
    "0001-12-31 BC",
    "0001-01-01",
    "1970-01-01",
    "1999-12-31",
    "2000-01-01",
    "2024-02-29",
    "5874897-12-31",
];

const TIMESTAMPS: &[&str] = &[
    "-infinity",
    "infinity",
    "4714-11-24 00:00:00 BC",
    "0001-01-01 00:00:00 BC",
    "0001-01-01 00:00:00",
    "1999-12-31 23:59:59.999999",
    "2000-01-01 00:00:00",
    "2000-01-01 00:00:00.000001",
    "2024-01-01 12:00",
    "294276-12-31 23:59:59.999999",
];

const TIMESTAMPTZS: &[&str] = &[
    "-infinity",
    "infinity",
    "2024-01-01 10:00:00+02",
    "2024-01-01 08:00:00Z",
    "2024-01-01 08:00:00.5+00",
    "1999-12-31 23:00:00-01",
    "2000-01-01 00:00:00 UTC",
    "0044-03-15 12:00:00+00 BC",
];

const UUIDS: &[&str] = &[
    "00000000-0000-0000-0000-000000000000",
    "00000000-0000-0000-0000-00000000000f",
    "0000000f-0000-0000-0000-000000000000",
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "7fffffff-ffff-ffff-ffff-ffffffffffff",
    "80000000-0000-0000-0000-000000000000",
];

const BYTEAS: &[&str] = &[
    "\\x", "\\x00", "\\x0000", "\\x01", "\\x7f", "\\x80", "\\xff", "\\xff00", "\\x61", "\\x6162",
];

const BOOLS: &[&str] = &["t", "f", "true", "no"];

const CHARS: &[&str] = &[
    "", " ", "ab", "ab  ", "ab c", "Ab", "é", "É", "e", "f", "a b",
];

fn typed_lists() -> Vec<Typed> {
    vec![
        Typed {
            sql: "numeric",
            ty: PlainType::Numeric(None),
            inputs: NUMERICS,
        },
        Typed {
            sql: "float8",
            ty: PlainType::Float8,
            inputs: FLOAT8S,
        },
        Typed {
            sql: "float4",
            ty: PlainType::Float4,
            inputs: FLOAT4S,
        },
        Typed {
            sql: "int8",
            ty: PlainType::Int8,
            inputs: INTEGERS,
        },
        Typed {
            sql: "date",
            ty: PlainType::Date,
            inputs: DATES,
        },
        Typed {
            sql: "timestamp",
            ty: PlainType::Timestamp,
            inputs: TIMESTAMPS,
        },
        Typed {
            sql: "timestamptz",
            ty: PlainType::Timestamptz,
            inputs: TIMESTAMPTZS,
        },
        Typed {
            sql: "uuid",
            ty: PlainType::Uuid,
            inputs: UUIDS,
        },
        Typed {
            sql: "bytea",
            ty: PlainType::Bytea,
            inputs: BYTEAS,
        },
        Typed {
            sql: "bool",
            ty: PlainType::Bool,
            inputs: BOOLS,
        },
        Typed {
            sql: "char(5)",
            ty: PlainType::Char(5),
            inputs: CHARS,
        },
    ]
}

/// pgseal's value for an input, or `None` when the input is out of the type's range (the
/// server then refuses it too, and the pair is expected to fail).
fn scalar_of(ty: &PlainType, input: &str) -> Option<Scalar> {
    let canonical = if *ty == PlainType::Bytea {
        canonical_from_wire(
            ty,
            Format::Text,
            input.as_bytes(),
            DateSettings::canonical(),
        )
        .ok()?
    } else {
        // The server runs in the canonical settings (ISO, MDY, UTC).
        canonical_from_text(ty, input, DateSettings::canonical())
            .ok()?
            .into_bytes()
    };
    Some(scalar::parse(ty, &canonical).expect("canonical plaintext parses"))
}

/// Compares every value of `left` with every value of `right` on the server (`<` and `=`
/// after casting each side to its type, errors as SQLSTATEs) and with [`scalar::compare`].
async fn check_typed(
    client: &Client,
    database: &str,
    order: &TextOrder,
    left: &Typed,
    right: &Typed,
    mismatches: &mut Vec<String>,
) -> usize {
    let query = format!(
        "SELECT ($1::{l} < $2::{r})::text || ' ' || ($1::{l} = $2::{r})::text",
        l = left.sql,
        r = right.sql
    );
    let rows = client
        .query(
            "SELECT a.i, b.i, pg_temp.try_eval($3, a.v, b.v) \
             FROM unnest($1::text[]) WITH ORDINALITY a(v, i), \
                  unnest($2::text[]) WITH ORDINALITY b(v, i)",
            &[&left.inputs, &right.inputs, &query],
        )
        .await
        .expect("typed pairs");
    for row in &rows {
        let (i, j): (i64, i64) = (row.get(0), row.get(1));
        let server: String = row.get(2);
        let (a, b) = (left.inputs[i as usize - 1], right.inputs[j as usize - 1]);
        let ours = match (scalar_of(&left.ty, a), scalar_of(&right.ty, b)) {
            (Some(x), Some(y)) => match scalar::compare(&x, &y, order) {
                Some(ordering) => {
                    let equal = scalar::equal(&x, &y);
                    let by_compare = ordering == Ordering::Equal;
                    if equal != Some(by_compare) {
                        mismatches.push(format!(
                            "{database}: {a:?}::{} vs {b:?}::{}: equal() {equal:?} but compare() {}",
                            left.sql,
                            right.sql,
                            ordering_name(ordering)
                        ));
                    }
                    format!("{} {}", ordering == Ordering::Less, equal == Some(true))
                }
                None => "not compared".to_string(),
            },
            _ => "input refused".to_string(),
        };
        let agree = if server.starts_with("error") {
            ours == "not compared" || ours == "input refused"
        } else {
            ours == server
        };
        if !agree {
            mismatches.push(format!(
                "{database}: {a:?}::{} vs {b:?}::{}: server {server}, pgseal {ours}",
                left.sql, right.sql
            ));
        }
    }
    rows.len()
}

#[tokio::test]
async fn evaluation_primitives_agree_with_postgres() {
    let cluster = pgseal_tests::cluster();
    let mut rng = StdRng::seed_from_u64(0x5ea1_0001);
    let mut names: Vec<String> = NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(generated_names(&mut rng));
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    let mut patterns: Vec<(String, Option<String>)> = PATTERNS
        .iter()
        .map(|(p, e)| (p.to_string(), e.map(str::to_string)))
        .collect();
    patterns.extend(generated_patterns(&mut rng, &names));

    let mut mismatches = Vec::new();
    let mut checked = Vec::new();
    let mut typed_pairs = 0;
    for (database, options) in DATABASES {
        cluster
            .run_sql("postgres", &format!("CREATE DATABASE {database} {options}"))
            .unwrap_or_else(|e| panic!("creating {database}: {e}"));
        let client = cluster.connect(database).await;
        client
            .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY';")
            .await
            .expect("settings");
        client.batch_execute(HELPERS).await.expect("helpers");
        let row = client
            .query_one(
                "SELECT datlocprovider::text, datcollate, datctype, daticulocale \
                 FROM pg_database WHERE datname = current_database()",
                &[],
            )
            .await
            .expect("pg_database");
        let (provider, collate, ctype, icu): (String, String, String, Option<String>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let order = TextOrder::from_catalog(&provider, &collate, &ctype, icu.as_deref())
            .unwrap_or_else(|e| panic!("{database}: {e}"));
        let unverified = names
            .iter()
            .filter(|n| order.first_unverified(n).is_some())
            .count();
        check_order_and_case(&client, database, &order, &names, true, &mut mismatches).await;
        check_like(
            &client,
            database,
            &order,
            &names,
            &patterns,
            &mut mismatches,
        )
        .await;
        let swept = check_repertoire(&client, database, &order, &mut mismatches).await;
        checked.push(format!(
            "{database} ({}): {unverified} names left out as unverified, {swept} code points swept",
            order.describe()
        ));

        let lists = typed_lists();
        // char(n) compares under the database's collation: in every database.
        let chars = lists.iter().find(|t| t.sql == "char(5)").expect("char(5)");
        typed_pairs += check_typed(&client, database, &order, chars, chars, &mut mismatches).await;
        if *database != "eval_c" {
            continue;
        }
        for typed in &lists {
            if typed.sql != "char(5)" {
                typed_pairs +=
                    check_typed(&client, database, &order, typed, typed, &mut mismatches).await;
            }
        }
        // Across numeric types, as PostgreSQL casts them.
        let find = |sql: &str| lists.iter().find(|t| t.sql == sql).expect("listed type");
        for (left, right) in [
            ("int8", "numeric"),
            ("numeric", "int8"),
            ("numeric", "float8"),
            ("float8", "numeric"),
            ("int8", "float8"),
            ("float4", "float8"),
            ("float4", "numeric"),
        ] {
            typed_pairs += check_typed(
                &client,
                database,
                &order,
                find(left),
                find(right),
                &mut mismatches,
            )
            .await;
        }
    }
    for (n, locale) in MORE_ICU_LOCALES.iter().enumerate() {
        let database = format!("eval_icu_{n}");
        cluster
            .run_sql(
                "postgres",
                &format!(
                    "CREATE DATABASE {database} TEMPLATE template0 LOCALE_PROVIDER icu \
                     ICU_LOCALE '{locale}' LOCALE 'C'"
                ),
            )
            .unwrap_or_else(|e| panic!("creating {database} ({locale}): {e}"));
        let client = cluster.connect(&database).await;
        let order = TextOrder::from_catalog("i", "C", "C", Some(locale))
            .unwrap_or_else(|e| panic!("{locale}: {e}"));
        let name = format!("{database} ({})", order.describe());
        check_order_and_case(&client, &name, &order, &names, false, &mut mismatches).await;
        checked.push(name);
    }
    eprintln!(
        "{} names, {} patterns, {typed_pairs} pairs of typed values; {}",
        names.len(),
        patterns.len(),
        checked.join("; ")
    );
    let shown = 300;
    assert!(
        mismatches.is_empty(),
        "{} mismatches with PostgreSQL{}:\n{}",
        mismatches.len(),
        if mismatches.len() > shown {
            format!(" (first {shown})")
        } else {
            String::new()
        },
        mismatches
            .iter()
            .take(shown)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `unaccent` as pgseal applies it, with the rules its catalog query reads from the database's
/// dictionary, against the server's `unaccent()` for every code point with a rule (and for
/// whole names): the probed ranges must cover every rule of PostgreSQL's `unaccent.rules`.
#[tokio::test]
async fn unaccent_rules_agree_with_the_server() {
    let cluster = pgseal_tests::cluster();
    let database = cluster.create_database("unaccent_rules");
    cluster
        .run_sql(&database, "CREATE EXTENSION unaccent")
        .expect("the unaccent extension (postgresql-contrib)");
    let client = cluster.connect(&database).await;
    let policy = pgseal_policies::CompiledPolicy::from_toml(
        "hospital.toml",
        &std::fs::read_to_string(pgseal_tests::hospital::examples_dir().join("hospital.toml"))
            .unwrap(),
    )
    .unwrap();
    // The catalog query as a session sends it, its rows read as the backend reads them.
    let rows = pgseal_tests::hospital::simple_rows(
        &client
            .simple_query(&pgseal::protect::catalog::query(&policy, true))
            .await
            .expect("the catalog query"),
    );
    let catalog = pgseal::protect::catalog::build(&policy, &rows, 1);
    let rules = catalog.unaccent().expect("the dictionary's rules");
    let server: Vec<(i32, String)> = client
        .query(
            "SELECT cp, unaccent(chr(cp)) FROM generate_series(1, 1114111) cp \
             WHERE cp NOT BETWEEN 55296 AND 57343 AND unaccent(chr(cp)) <> chr(cp)",
            &[],
        )
        .await
        .expect("the server's unaccent over every code point")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(server.len() > 1000, "{} rules on the server", server.len());
    let mut mismatches = Vec::new();
    for (cp, expected) in &server {
        let c = char::from_u32(*cp as u32).unwrap().to_string();
        let ours = rules.apply(&c);
        if ours != expected.as_str() {
            mismatches.push(format!("U+{cp:04X}: server {expected:?}, pgseal {ours:?}"));
        }
    }
    assert_eq!(
        rules.len(),
        server.len(),
        "rules pgseal read vs characters the server maps"
    );
    for name in NAMES {
        let expected: String = client
            .query_one("SELECT unaccent($1::text)", &[name])
            .await
            .unwrap()
            .get(0);
        if rules.apply(name) != expected.as_str() {
            mismatches.push(format!(
                "{name:?}: server {expected:?}, pgseal {:?}",
                rules.apply(name)
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

/// A value in its wire bytes, whatever its type (binary results).
struct Wire(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for Wire {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Wire(raw.to_vec()))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// Arrays of records as the server writes them, in text and in binary, read back by
/// `pgseal::evaluate::composite` (how pgseal reads a subquery's rows): text with every
/// character the two formats quote or escape, the empty string, NULLs, and `bytea` holding
/// every byte, in the server's hex and escape outputs.
#[tokio::test]
async fn arrays_of_records_read_as_the_server_writes_them() {
    use pgseal::evaluate::composite::{array_elements, record_fields};
    let cluster = pgseal_tests::cluster();
    let database = cluster.create_database("composites");
    let client = cluster.connect(&database).await;
    let texts: Vec<Option<String>> = [
        Some("plain"),
        Some(""),
        Some("NULL"),
        Some("a,b"),
        Some("(paren)"),
        Some("{brace}"),
        Some("quote\"d"),
        Some("back\\slash"),
        Some(" spaced "),
        Some("tab\tnew\nline"),
        Some("\"\"\\\\,,(){}"),
        Some("Éloïse N’Diaye"),
        None,
    ]
    .iter()
    .map(|t| t.map(str::to_string))
    .collect();
    let all_bytes: Vec<u8> = (0..=255).collect();
    let byteas: Vec<Option<Vec<u8>>> = vec![
        Some(all_bytes.clone()),
        Some(Vec::new()),
        None,
        Some(b"\\x00\"".to_vec()),
    ];
    client
        .batch_execute("CREATE TABLE t (n int, v text, b bytea, f boolean)")
        .await
        .unwrap();
    let rows = texts.len().max(byteas.len());
    for n in 0..rows {
        let v = texts[n % texts.len()].clone();
        let b = byteas[n % byteas.len()].clone();
        let f = (n % 3 != 2).then_some(n % 2 == 0);
        client
            .execute(
                "INSERT INTO t VALUES ($1, $2, $3, $4)",
                &[&(n as i32), &v, &b, &f],
            )
            .await
            .unwrap();
    }
    let expected: Vec<Vec<Option<Vec<u8>>>> = (0..rows)
        .map(|n| {
            vec![
                texts[n % texts.len()].clone().map(String::into_bytes),
                byteas[n % byteas.len()].clone(),
                (n % 3 != 2)
                    .then_some(n % 2 == 0)
                    .map(|f| vec![u8::from(f)]),
            ]
        })
        .collect();
    let sql = "SELECT ARRAY(SELECT ROW(v, b, f) FROM t ORDER BY n)";
    // Binary: each field in its type's binary form.
    let binary: Wire = client.query_one(sql, &[]).await.unwrap().get(0);
    let elements = array_elements(&binary.0, Format::Binary).expect("a binary array");
    let read: Vec<Vec<Option<Vec<u8>>>> = elements
        .iter()
        .map(|e| record_fields(e.as_deref().unwrap(), Format::Binary).unwrap())
        .collect();
    assert_eq!(read, expected);
    // Text, with bytea in both of the server's outputs.
    for output in ["hex", "escape"] {
        client
            .batch_execute(&format!("SET bytea_output = {output}"))
            .await
            .unwrap();
        let messages = client.simple_query(sql).await.unwrap();
        let text = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap();
        let elements = array_elements(text.as_bytes(), Format::Text).expect("a text array");
        assert_eq!(elements.len(), rows);
        for (n, element) in elements.iter().enumerate() {
            let fields = record_fields(element.as_deref().unwrap(), Format::Text).unwrap();
            assert_eq!(fields.len(), 3);
            assert_eq!(fields[0], expected[n][0], "text field of row {n}");
            // bytea and boolean fields: the server's own text output of each value.
            let (b, f): (Option<String>, Option<String>) = {
                let row = client
                    .simple_query(&format!("SELECT b, f FROM t WHERE n = {n}"))
                    .await
                    .unwrap();
                match row.iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        Some((r.get(0).map(str::to_string), r.get(1).map(str::to_string)))
                    }
                    _ => None,
                }) {
                    Some(pair) => pair,
                    None => panic!("row {n}"),
                }
            };
            assert_eq!(
                fields[1],
                b.map(String::into_bytes),
                "bytea field of row {n} ({output})"
            );
            assert_eq!(
                fields[2],
                f.map(String::into_bytes),
                "boolean field of row {n}"
            );
        }
    }
}
