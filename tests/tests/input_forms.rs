//! Differential test of input forms, PostgreSQL being the oracle: for each type a sealed
//! column may declare, dozens of texts (what drivers send, what people type, what PostgreSQL
//! rejects) go both to the server (`SELECT 'text'::type`, its output under the settings of
//! pgseal's canonical forms: DateStyle ISO, TimeZone UTC, default extra_float_digits) and to
//! pgseal's `canonical_from_text`. Dates and times are checked again under other sessions'
//! DateStyle and TimeZone (day-first orders, zones with summer time and half hours, every output
//! style): pgseal reads the settings as the server reports them, and what a client reads in text
//! must be what the server prints. Where the server accepts, pgseal must give the same text and the
//! same binary value (both ways: `wire_from_canonical` of pgseal's canonical form equals the
//! server's binary output, and `canonical_from_wire` of that output equals the canonical
//! form); where it refuses, pgseal must refuse in the same SQLSTATE class. Inputs marked
//! `Refused` are ones PostgreSQL accepts and pgseal refuses on purpose (time-dependent words,
//! zone names, a timestamptz without a zone, hexadecimal floats…): the test checks that
//! pgseal does refuse them. Inputs marked `Layout` are floats whose canonical text keeps
//! pgseal's long-standing fixed notation where PostgreSQL uses an exponent (sealed values hold
//! it): the value (the binary form) must still be equal, and what a client reads in text must
//! be the server's text. For every accepted input, the text a client reads is compared with the
//! server's. Every mismatch is collected and printed at once.

use std::error::Error;

use pgseal::protect::date_settings::DateSettings;
use pgseal::protect::values::{
    Format, canonical_from_text, canonical_from_wire, wire_from_canonical,
};
use pgseal_policies::PlainType;
use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Client, SimpleQueryMessage};

/// What the test expects of one input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// pgseal does what PostgreSQL does.
    Same,
    /// PostgreSQL accepts it; pgseal refuses on purpose.
    Refused,
    /// A float: same value, pgseal's fixed notation where PostgreSQL writes an exponent.
    Layout,
}

use Expect::{Layout, Refused, Same};

/// The inputs of one type and what is expected of each.
type Cases = &'static [(&'static str, Expect)];

/// Any value, as the bytes of its binary form.
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

const DATES: &[(&str, Expect)] = &[
    ("1992-07-01", Same),
    (" 1992-07-01 ", Same),
    ("\t1992-07-01\n", Same),
    // PgJDBC's setDate.
    ("1992-07-01 +00", Same),
    ("1992-07-01 +02:00", Same),
    ("1992-07-01 -0530", Same),
    ("1992-07-01 +053", Same),
    ("1992-07-01 +15:59:59", Same),
    ("1992-07-01Z", Same),
    ("1992-07-01 z", Same),
    ("1992-07-01 UTC", Same),
    ("1992-07-01 gmt", Same),
    ("1992-07-01T10:00", Same),
    ("1992-07-01 10:00:00", Same),
    ("1992-07-01 10:00:00.5 +01", Same),
    ("1992-07-01T10:00:00Z", Same),
    ("1992-07-01 24:00", Same),
    ("19920701", Same),
    ("920701", Same),
    ("07/01/1992", Same),
    ("07-01-1992", Same),
    ("07/01/92", Same),
    ("7/1/92", Same),
    ("1992/07/01", Same),
    ("1992.07.01", Same),
    ("1992.183", Same),
    ("July 1, 1992", Same),
    ("Jul 1 1992", Same),
    ("1 July 1992", Same),
    ("1992-Jul-01", Same),
    ("01-Jul-1992", Same),
    ("Wed Jul 01 1992", Same),
    ("1-jul2-1992", Same),
    ("0044-03-15 BC", Same),
    ("44-03-15 BC", Same),
    ("1992-07-01 BC", Same),
    ("1992-07-01 AD", Same),
    ("4714-11-24 BC", Same),
    ("5874897-12-31", Same),
    ("10000-01-01", Same),
    ("1-1-1", Same),
    ("2000-02-29", Same),
    ("infinity", Same),
    ("-infinity", Same),
    (" INFINITY ", Same),
    ("epoch", Same),
    ("epoch bc", Same),
    ("1992-07-01 allballs", Same),
    ("1992-07-01 infinity", Same),
    ("1900-02-29", Same),
    ("1992-02-30", Same),
    ("1992-13-01", Same),
    ("0000-01-01", Same),
    ("4714-11-23 BC", Same),
    ("5874898-01-01", Same),
    ("92-07-01", Same),
    ("1992-07-01 +16", Same),
    ("1992-07-01 +02.5", Same),
    ("-0044-03-15", Same),
    ("foo", Same),
    ("", Same),
    ("   ", Same),
    ("1992-07-01 foo", Same),
    ("1992-07-01 today", Same),
    ("infinity 1992-07-01", Same),
    ("allballs", Same),
    ("1992-07-01 24:00:01", Same),
    ("1992-07-01 25:00", Same),
    ("1992-07-01 10", Same),
    ("+infinity", Same),
    ("1992-07-01 bc bc", Same),
    ("1992-07-01 1992-07-01", Same),
    ("\u{ff11}992-07-01", Same),
    ("99999999999-01-01", Same),
    ("1992-07-01 Europe/Paris", Same),
    ("1992-07-01 CET", Refused),
    ("1992-07-01 10:00 GMT+1", Refused),
    ("now", Refused),
    ("today", Refused),
    ("tomorrow", Refused),
    ("yesterday", Refused),
    ("J2448805", Refused),
];

const TIMESTAMPS: &[(&str, Expect)] = &[
    // PgJDBC's setTimestamp: the offset is dropped for timestamp without time zone.
    ("2020-01-01 10:00:00+01", Same),
    ("2020-01-01 10:00:00.123456+01", Same),
    ("2020-01-01 10:00:00-08:00", Same),
    ("1992-07-01", Same),
    ("1992-07-01 10:00", Same),
    ("1992-07-01T10:00:00", Same),
    ("1992-07-01 10:00:00.1234565", Same),
    ("1992-07-01 10:00:00.1234575", Same),
    ("1992-07-01 10:00:00.000000499", Same),
    ("1992-07-01 23:59:59.9999995", Same),
    ("1992-07-01 24:00", Same),
    ("1992-07-01 24:00:00", Same),
    ("1992-07-01 10:00:60", Same),
    ("1992-07-01 23:59:60", Same),
    ("1992-07-01 1:2:3", Same),
    ("1992-07-01 10:00.5", Same),
    ("1992-07-01 10:00 PM", Same),
    ("1992-07-01 12:00 AM", Same),
    ("1992-07-01 12:30 pm", Same),
    ("1992-07-01 13:00 PM", Same),
    ("1992-07-01 996060", Same),
    ("1992-07-01 100000-05", Same),
    ("1992-07-01 t10:00", Same),
    ("1992-07-01 t 100000", Same),
    ("1992-07-01 t", Same),
    ("1992-07-01 10:00 +01:30:15", Same),
    ("1992-07-01 10:00:00+1", Same),
    ("1992-07-01 10:00:00 Z", Same),
    ("1992-07-01 10:00 zulu", Same),
    ("1992-07-01 10:00 UTC", Same),
    ("1992-07-01 10:00:00 BC", Same),
    ("1992-07-01 10:00:00 +01 BC", Same),
    ("294276-12-31 23:59:59.999999", Same),
    ("294277-01-01", Same),
    ("4714-11-24 00:00 BC", Same),
    ("4714-11-23 23:59 BC", Same),
    ("infinity", Same),
    ("-infinity", Same),
    ("epoch", Same),
    ("epoch 10:00", Same),
    ("infinity infinity", Same),
    ("allballs", Same),
    ("1992-07-01 allballs", Same),
    ("1992-07-01 10:00 allballs", Same),
    ("1992-07-01 at 10:00", Same),
    ("Wed Jul 01 1992 10:00", Same),
    ("July 1, 1992 10:00:00.5", Same),
    ("1992-07-01 10::00", Same),
    ("1992-07-01 10:00:00.", Same),
    ("1992-07-01 10:00:00.5.5", Same),
    ("1992-07-01 10:00.", Same),
    ("1992-07-01 10:00:.5", Same),
    ("1992-07-01 100000.", Same),
    ("1992-07-01 10:00:00.5.", Same),
    ("1992-07-01 10:60", Same),
    ("1992-07-01 -10:00", Same),
    ("1992-07-01 10:00:00 -15:59", Same),
    ("1992-07-01 10:00:00 +16:00", Same),
    ("1992-07-01 10:00 dst", Same),
    ("", Same),
    ("garbage", Same),
    ("1992-07-01 10:00 +01 dst", Refused),
    ("1992-07-01 10:00 America/New_York", Same),
    ("1992-07-01 10:00 PST", Refused),
    ("now", Refused),
    ("today", Refused),
];

const TIMESTAMPTZ: &[(&str, Expect)] = &[
    ("2024-11-03T10:15:00.250+01:00", Same),
    ("2020-01-01 10:00:00+01", Same),
    ("1992-07-01 +02", Same),
    ("1992-07-01 10:00 -05:30:15", Same),
    ("1992-07-01 10:00 UTC", Same),
    ("1992-07-01 10:00Z", Same),
    ("1992-07-01 10:00:00.9999995+00", Same),
    ("1992-12-31 23:30-01", Same),
    ("0044-03-15 10:00+00 BC", Same),
    ("0001-01-01 00:30+01", Same),
    ("infinity", Same),
    ("-infinity", Same),
    ("epoch", Same),
    ("1992-07-01 allballs", Same),
    ("294276-12-31 23:59:59+00", Same),
    ("294276-12-31 23:00:00-05", Same),
    ("4714-11-24 00:00+00 BC", Same),
    ("4714-11-24 00:00+01 BC", Same),
    ("4714-11-23 23:00-01 BC", Same),
    ("1992-07-01 10:00 +16", Same),
    ("1992-07-01 10:00 +02 +03", Same),
    ("1992-07-01 10:00:00", Same),
    ("1992-07-01", Same),
    ("July 1, 1992 10:00", Same),
    ("now", Refused),
    ("today", Refused),
    ("1992-07-01 10:00 Europe/Paris", Same),
    ("1992-07-01 10:00 CET", Refused),
];

const BOOLS: &[(&str, Expect)] = &[
    ("t", Same),
    ("f", Same),
    ("true", Same),
    ("false", Same),
    ("TRUE", Same),
    ("tr", Same),
    ("tru", Same),
    ("fa", Same),
    ("fal", Same),
    ("y", Same),
    ("ye", Same),
    ("yes", Same),
    ("n", Same),
    ("no", Same),
    ("on", Same),
    ("ON", Same),
    ("of", Same),
    ("off", Same),
    ("OFF", Same),
    ("1", Same),
    ("0", Same),
    (" yes ", Same),
    ("\tf\n", Same),
    ("o", Same),
    ("01", Same),
    ("truex", Same),
    ("yess", Same),
    ("offx", Same),
    ("", Same),
    ("2", Same),
    ("-1", Same),
    ("nope", Same),
    ("t rue", Same),
    ("\u{a0}t", Same),
];

const INT2: &[(&str, Expect)] = &[
    ("0", Same),
    ("42", Same),
    (" +42 ", Same),
    ("-42", Same),
    ("-0", Same),
    ("00012", Same),
    ("\t7\n", Same),
    ("32767", Same),
    ("32768", Same),
    ("-32768", Same),
    ("-32769", Same),
    ("99999999999999999999", Same),
    ("1_000", Same),
    ("0x10", Same),
    ("4 2", Same),
    ("", Same),
    ("+", Same),
    ("-", Same),
    ("1.0", Same),
    ("1e3", Same),
    ("--1", Same),
    ("\u{663}", Same),
];

const INT4: &[(&str, Expect)] = &[
    ("0", Same),
    ("42", Same),
    (" +42 ", Same),
    ("-0", Same),
    ("2147483647", Same),
    ("2147483648", Same),
    ("-2147483648", Same),
    ("-2147483649", Same),
    ("1_000", Same),
    ("0x10", Same),
    ("0o17", Same),
    ("4 2", Same),
    ("", Same),
    ("1.5", Same),
    ("+-1", Same),
    ("\u{a0}42", Same),
];

const INT8: &[(&str, Expect)] = &[
    ("0", Same),
    ("9007199254740993", Same),
    (" -42 ", Same),
    ("+7", Same),
    ("9223372036854775807", Same),
    ("9223372036854775808", Same),
    ("-9223372036854775808", Same),
    ("-9223372036854775809", Same),
    ("1_000", Same),
    ("0x10", Same),
    ("", Same),
    ("1e3", Same),
];

const NUMERICS: &[(&str, Expect)] = &[
    ("0", Same),
    ("0072.50", Same),
    ("-0.0", Same),
    ("1.2e3", Same),
    ("12.5e-3", Same),
    ("1e 5", Same),
    ("1E+03", Same),
    ("1e-3", Same),
    (".5", Same),
    ("5.", Same),
    ("+.5", Same),
    ("-.5", Same),
    (" 1.50 ", Same),
    ("NaN", Same),
    (" nan ", Same),
    ("+nan", Same),
    ("Infinity", Same),
    ("-Infinity", Same),
    ("inf", Same),
    ("+inf", Same),
    ("-inf", Same),
    ("inFINity", Same),
    ("+Infinity", Same),
    ("infinityx", Same),
    ("1_000", Same),
    ("0x10", Same),
    ("1e", Same),
    (".", Same),
    ("", Same),
    ("- 1", Same),
    ("1.2.3", Same),
    ("1e1001", Same),
    ("1e131071", Same),
    ("1e131072", Same),
    ("1e-16383", Same),
    ("1e-16384", Same),
    ("1e2147483647", Same),
    ("0e-5", Same),
    ("-0e5", Same),
    ("00.000", Same),
    ("123456789012345678901234567890.123456789", Same),
    ("-1234.5600", Same),
    ("\u{a0}1", Same),
];

const NUMERIC_5_2: &[(&str, Expect)] = &[
    ("72.456", Same),
    ("2.345", Same),
    ("-9.995", Same),
    ("999.994", Same),
    ("999.995", Same),
    ("12345.6", Same),
    ("-999.994", Same),
    ("NaN", Same),
    ("Infinity", Same),
    ("-inf", Same),
    ("7", Same),
    ("0.001", Same),
    ("-0.004", Same),
    ("1e2", Same),
    ("1e3", Same),
    ("abc", Same),
];

const FLOAT4: &[(&str, Expect)] = &[
    ("0.1", Same),
    ("1.5", Same),
    ("-0", Same),
    ("0", Same),
    (" 2.5 ", Same),
    ("100000", Same),
    ("0.0001", Same),
    ("1e6", Layout),
    ("1234567", Layout),
    ("16777217", Layout),
    ("1e-5", Layout),
    ("3.4028235e38", Layout),
    ("1.4e-45", Layout),
    ("3.5e38", Same),
    ("1e-46", Same),
    ("NaN", Same),
    ("-nan", Same),
    ("inf", Same),
    ("-Infinity", Same),
    ("+inf", Same),
    ("1_000", Same),
    ("", Same),
    ("1e", Same),
    ("abc", Same),
    ("0x10", Refused),
];

const FLOAT8: &[(&str, Expect)] = &[
    ("0.1", Same),
    ("2.5", Same),
    ("-0", Same),
    ("  1.5  ", Same),
    ("1e-4", Same),
    ("0.0001234", Same),
    ("99999999999999.9", Same),
    ("123456789012345.6", Same),
    (".5", Same),
    ("5.", Same),
    ("+.5", Same),
    ("1e15", Layout),
    ("1e16", Layout),
    ("123456789012345678", Layout),
    ("1234567890123456.7", Layout),
    ("1e-5", Layout),
    ("1e20", Layout),
    ("4.9e-324", Layout),
    ("2.5e-310", Layout),
    ("1.7976931348623157e308", Layout),
    ("NaN", Same),
    ("+nan", Same),
    ("-nan", Same),
    ("inf", Same),
    ("-inf", Same),
    ("+inf", Same),
    ("infinity", Same),
    ("+Infinity", Same),
    ("1e400", Same),
    ("1e-400", Same),
    ("1_000", Same),
    ("1e", Same),
    ("", Same),
    (" ", Same),
    ("--1", Same),
    ("infx", Same),
    ("0x10", Refused),
];

/// The server's text output for `input` read as `sql_type`, or its SQLSTATE.
async fn server_text(client: &Client, sql_type: &str, input: &str) -> Result<String, String> {
    let literal = input.replace('\'', "''");
    let sql = format!("SELECT '{literal}'::{sql_type}");
    match client.simple_query(&sql).await {
        Ok(messages) => messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .ok_or_else(|| "no row".to_string()),
        Err(e) => Err(e
            .as_db_error()
            .map(|db| db.code().code().to_string())
            .unwrap_or_else(|| format!("not a server error: {e}"))),
    }
}

/// The server's binary output for `input` read as `sql_type`.
async fn server_binary(client: &Client, sql_type: &str, input: &str) -> Result<Vec<u8>, String> {
    let sql = format!("SELECT $1::text::{sql_type}");
    let row = client
        .query_one(&sql, &[&input])
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, Raw>(0).0)
}

/// Fails with every mismatch when there is one.
fn assert_none_differ(mismatches: &[String], count: usize) {
    assert!(
        mismatches.is_empty(),
        "{} of {count} inputs differ from PostgreSQL:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// The session's DateStyle and TimeZone as pgseal reads them: from what the server reports.
async fn reported_dates(client: &Client) -> DateSettings {
    let mut dates = DateSettings::unknown();
    for name in ["DateStyle", "TimeZone"] {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap();
        dates.apply(name, row.get::<_, &str>(0));
    }
    dates
}

async fn check_type(
    client: &Client,
    sql_type: &str,
    ty: &PlainType,
    inputs: &[(&str, Expect)],
    dates: &DateSettings,
    mismatches: &mut Vec<String>,
) {
    let settings = if dates.prints_canonical() {
        String::new()
    } else {
        format!(" under {dates:?}")
    };
    for &(input, expect) in inputs {
        let mut fail =
            |what: String| mismatches.push(format!("{sql_type} {input:?}{settings}: {what}"));
        let server = server_text(client, sql_type, input).await;
        let pgseal = canonical_from_text(ty, input, dates);
        if let Err(e) = &pgseal {
            let message = e.to_string();
            let trimmed = input.trim();
            if trimmed.len() >= 6
                && !trimmed.bytes().all(|b| b.is_ascii_alphabetic())
                && message.contains(trimmed)
            {
                fail(format!("the error message shows the value: {message}"));
            }
        }
        match (&server, &pgseal, expect) {
            (Err(code), Err(e), _) => {
                if code.get(..2) != e.sqlstate().get(..2) {
                    fail(format!(
                        "server refuses with {code}, pgseal with {} ({e})",
                        e.sqlstate()
                    ));
                }
                if expect != Same {
                    fail(format!(
                        "marked {expect:?} but the server refuses it ({code})"
                    ));
                }
            }
            (Err(code), Ok(canonical), _) => {
                fail(format!(
                    "server refuses ({code}), pgseal accepts as {canonical:?}"
                ));
            }
            (Ok(text), Err(e), Refused) => {
                let _ = (text, e);
            }
            (Ok(text), Err(e), _) => {
                fail(format!("server gives {text:?}, pgseal refuses: {e}"));
            }
            (Ok(text), Ok(canonical), Refused) => {
                fail(format!(
                    "marked Refused, but pgseal accepts as {canonical:?} (server {text:?})"
                ));
            }
            (Ok(text), Ok(canonical), expect) => {
                match expect {
                    // The canonical form is the server's text in ISO and UTC; under other
                    // settings the binary forms and the text a client reads are compared.
                    Same if dates.prints_canonical() && canonical != text => {
                        fail(format!("server gives {text:?}, pgseal {canonical:?}"));
                    }
                    Layout if dates.prints_canonical() && canonical == text => {
                        fail(format!(
                            "marked Layout, but pgseal now gives PostgreSQL's text {text:?}"
                        ));
                    }
                    _ => {}
                }
                // What a client reads in text is PostgreSQL's text, whatever the canonical
                // form's layout.
                match wire_from_canonical(ty, Format::Text, canonical.as_bytes(), dates) {
                    Ok(read) if read == text.as_bytes() => {}
                    Ok(read) => fail(format!(
                        "a client reads {:?}, the server gives {text:?}",
                        String::from_utf8_lossy(&read)
                    )),
                    Err(e) => fail(format!("text output of {canonical:?} fails: {e}")),
                }
                let binary = match server_binary(client, sql_type, input).await {
                    Ok(binary) => binary,
                    Err(e) => {
                        fail(format!("binary query failed: {e}"));
                        continue;
                    }
                };
                // A NaN's sign bit (`-nan`) means nothing to PostgreSQL (every NaN is equal and
                // prints NaN); the canonical form keeps none.
                let both_nan = canonical == "NaN"
                    && matches!(ty, PlainType::Float4 | PlainType::Float8)
                    && binary.len() >= 2
                    && binary[0] & 0x7f == 0x7f;
                match wire_from_canonical(ty, Format::Binary, canonical.as_bytes(), dates) {
                    Ok(ours) if ours == binary || both_nan => {}
                    Ok(ours) => fail(format!("binary output {ours:02x?}, server's {binary:02x?}")),
                    Err(e) => fail(format!("binary output of {canonical:?} fails: {e}")),
                }
                match canonical_from_wire(ty, Format::Binary, &binary, dates) {
                    Ok(back) if back == canonical.as_bytes() => {}
                    Ok(back) => fail(format!(
                        "server's binary reads as {:?}, text as {canonical:?}",
                        String::from_utf8_lossy(&back)
                    )),
                    Err(e) => fail(format!("server's binary is refused: {e}")),
                }
            }
        }
    }
}

#[tokio::test]
async fn input_forms_read_as_postgres_reads_them() {
    let cluster = pgseal_tests::cluster();
    let database = cluster.create_database("input_forms");
    let client = cluster.connect(&database).await;
    // The settings pgseal's canonical forms assume (extra_float_digits left at its default,
    // 1: like 3, which the migrator sets, it gives the shortest exact digits).
    client
        .batch_execute(
            "SET DateStyle = 'ISO, MDY'; SET TimeZone = 'UTC'; SET extra_float_digits = 1; \
             SET IntervalStyle = 'postgres'",
        )
        .await
        .unwrap();
    let types: &[(&str, PlainType, Cases)] = &[
        ("date", PlainType::Date, DATES),
        ("timestamp", PlainType::Timestamp, TIMESTAMPS),
        ("timestamptz", PlainType::Timestamptz, TIMESTAMPTZ),
        ("bool", PlainType::Bool, BOOLS),
        ("int2", PlainType::Int2, INT2),
        ("int4", PlainType::Int4, INT4),
        ("int8", PlainType::Int8, INT8),
        ("numeric", PlainType::Numeric(None), NUMERICS),
        (
            "numeric(5,2)",
            PlainType::Numeric(Some((5, 2))),
            NUMERIC_5_2,
        ),
        ("float4", PlainType::Float4, FLOAT4),
        ("float8", PlainType::Float8, FLOAT8),
    ];
    let dates = reported_dates(&client).await;
    assert!(dates.prints_canonical(), "{dates:?}");
    let mut mismatches = Vec::new();
    let mut count = 0;
    for (sql_type, ty, inputs) in types {
        check_type(&client, sql_type, ty, inputs, &dates, &mut mismatches).await;
        count += inputs.len();
    }
    assert_none_differ(&mismatches, count);
}

/// Dates and times a session with other settings writes: day-first and year-first numbers,
/// local times in zones with summer time (skipped and repeated hours), half-hour and
/// sub-minute offsets, dates before the first transition and after the last.
const SESSION_DATES: &[(&str, Expect)] = &[
    ("01/02/2024", Same),
    ("31/12/1992", Same),
    ("1/2/3", Same),
    ("02-01-2024", Same),
    ("01.02.2024", Same),
    ("24/02/01", Same),
    ("jan 02 03", Same),
    ("02 jan 03", Same),
    ("1 Feb 2024", Same),
    ("2024-02-01", Same),
    ("12/25/2024", Same),
];

const SESSION_TIMES: &[(&str, Expect)] = &[
    ("2024-01-15 10:00", Same),
    ("2024-07-15 10:00:00.123456", Same),
    ("15/07/2024 10:00", Same),
    ("07/15/2024 10:00", Same),
    ("2024-03-31 02:30", Same),
    ("2024-10-27 02:30", Same),
    ("2024-03-10 02:30", Same),
    ("2024-11-03 01:30", Same),
    ("2024-04-07 02:15", Same),
    ("2024-10-06 02:15", Same),
    ("1850-06-01 12:00", Same),
    ("1900-01-01 00:00", Same),
    ("0044-03-15 12:00 BC", Same),
    ("9999-07-01 12:00", Same),
    ("50000-07-01 12:00", Same),
    ("2024-07-15 10:00 Europe/Paris", Same),
    ("2024-07-15 10:00 Asia/Kolkata", Same),
    ("2024-07-15 10:00+02", Same),
    ("infinity", Same),
    ("epoch", Same),
    ("now", Refused),
    ("2024-07-15 10:00 CEST", Refused),
];

#[tokio::test]
async fn dates_and_times_follow_the_session_settings() {
    let cluster = pgseal_tests::cluster();
    let database = cluster.create_database("date_settings");
    let client = cluster.connect(&database).await;
    let mut mismatches = Vec::new();
    let mut count = 0;
    for (style, zone) in [
        ("ISO, DMY", "'Europe/Paris'"),
        ("SQL, DMY", "'Europe/Paris'"),
        ("SQL, MDY", "'America/New_York'"),
        ("Postgres, DMY", "'Australia/Lord_Howe'"),
        ("Postgres, MDY", "'Asia/Kolkata'"),
        ("German, DMY", "'America/St_Johns'"),
        ("ISO, YMD", "INTERVAL '+05:30' HOUR TO MINUTE"),
        ("ISO, MDY", "-7"),
        ("SQL, YMD", "'UTC'"),
    ] {
        client
            .batch_execute(&format!("SET DateStyle = '{style}'; SET TIME ZONE {zone}"))
            .await
            .unwrap();
        let dates = reported_dates(&client).await;
        for (sql_type, ty, inputs) in [
            ("date", PlainType::Date, DATES),
            ("date", PlainType::Date, SESSION_DATES),
            ("timestamp", PlainType::Timestamp, TIMESTAMPS),
            ("timestamp", PlainType::Timestamp, SESSION_TIMES),
            ("timestamptz", PlainType::Timestamptz, TIMESTAMPTZ),
            ("timestamptz", PlainType::Timestamptz, SESSION_TIMES),
        ] {
            check_type(&client, sql_type, &ty, inputs, &dates, &mut mismatches).await;
            count += inputs.len();
        }
    }
    assert_none_differ(&mismatches, count);
}
