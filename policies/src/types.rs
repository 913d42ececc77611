//! Plaintext types: the PostgreSQL type an application sees for a sealed column.
//!
//! A sealed column is stored as ciphertext (`text` or `bytea`) or as a token (in its own type),
//! but the policy declares the type of the plaintext, which the proxy reports to clients in
//! `RowDescription` and `ParameterDescription`. This module parses the declared type (the usual
//! PostgreSQL spellings and aliases) and gives its OID, type modifier and canonical name.

use std::fmt;

/// The declared plaintext type of a sealed column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlainType {
    /// `text`.
    Text,
    /// `varchar(n)` (`character varying`); `None` when no length is given.
    Varchar(Option<u32>),
    /// `char(n)` (`character(n)`, blank-padded); `char` alone is `char(1)`.
    Char(u32),
    /// `boolean`.
    Bool,
    /// `smallint` / `int2`.
    Int2,
    /// `integer` / `int4`.
    Int4,
    /// `bigint` / `int8`.
    Int8,
    /// `numeric` / `decimal`, with an optional precision and scale.
    Numeric(Option<(u16, u16)>),
    /// `real` / `float4`.
    Float4,
    /// `double precision` / `float8`.
    Float8,
    /// `date`.
    Date,
    /// `timestamp` (without time zone).
    Timestamp,
    /// `timestamptz` (`timestamp with time zone`).
    Timestamptz,
    /// `uuid`.
    Uuid,
    /// `bytea`.
    Bytea,
    /// `json`.
    Json,
    /// `jsonb`.
    Jsonb,
}

/// Why a declared type was not understood.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TypeError {
    /// A type name this version does not support as a sealed column's plaintext type.
    #[error(
        "unknown or unsupported type {0:?} (expected text, varchar(n), char(n), boolean, int2, \
         int4, int8, numeric, float4, float8, date, timestamp, timestamptz, uuid, bytea, json \
         or jsonb)"
    )]
    Unknown(String),
    /// A length, precision or scale that PostgreSQL would refuse.
    #[error("invalid type modifier in {0:?}")]
    BadModifier(String),
}

/// PostgreSQL's largest length for `varchar(n)` and `char(n)`.
const MAX_CHAR_LENGTH: u32 = 10_485_760;
/// PostgreSQL's largest precision for `numeric(p, s)`.
const MAX_NUMERIC_PRECISION: u16 = 1000;

impl PlainType {
    /// Parses a type as PostgreSQL spells it (case-insensitive, aliases accepted).
    pub fn parse(written: &str) -> Result<Self, TypeError> {
        let normalized = written
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_lowercase()
            .replace(" (", "(")
            .replace("( ", "(")
            .replace(" )", ")")
            .replace(", ", ",")
            .replace(" ,", ",");
        let (base, args) = match normalized.split_once('(') {
            Some((base, rest)) => {
                let Some(inner) = rest.strip_suffix(')') else {
                    return Err(TypeError::Unknown(written.to_owned()));
                };
                let args = inner
                    .split(',')
                    .map(|a| a.parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| TypeError::BadModifier(written.to_owned()))?;
                (base.trim_end().to_owned(), Some(args))
            }
            None => (normalized, None),
        };
        let bad = || TypeError::BadModifier(written.to_owned());
        let one_length = |args: &[u32]| match args {
            [n] if (1..=MAX_CHAR_LENGTH).contains(n) => Ok(*n),
            _ => Err(bad()),
        };
        let ty = match (base.as_str(), args.as_deref()) {
            ("text", None) => PlainType::Text,
            ("varchar" | "character varying", None) => PlainType::Varchar(None),
            ("varchar" | "character varying", Some(args)) => {
                PlainType::Varchar(Some(one_length(args)?))
            }
            ("char" | "character", None) => PlainType::Char(1),
            ("char" | "character", Some(args)) => PlainType::Char(one_length(args)?),
            ("boolean" | "bool", None) => PlainType::Bool,
            ("smallint" | "int2", None) => PlainType::Int2,
            ("integer" | "int" | "int4", None) => PlainType::Int4,
            ("bigint" | "int8", None) => PlainType::Int8,
            ("numeric" | "decimal", None) => PlainType::Numeric(None),
            ("numeric" | "decimal", Some(args)) => {
                let (p, s) = match args {
                    [p] => (*p, 0),
                    [p, s] => (*p, *s),
                    _ => return Err(bad()),
                };
                let p = u16::try_from(p).map_err(|_| bad())?;
                let s = u16::try_from(s).map_err(|_| bad())?;
                if p == 0 || p > MAX_NUMERIC_PRECISION || s > p {
                    return Err(bad());
                }
                PlainType::Numeric(Some((p, s)))
            }
            ("real" | "float4", None) => PlainType::Float4,
            ("double precision" | "float8", None) => PlainType::Float8,
            ("date", None) => PlainType::Date,
            ("timestamp" | "timestamp without time zone", None) => PlainType::Timestamp,
            ("timestamptz" | "timestamp with time zone", None) => PlainType::Timestamptz,
            ("uuid", None) => PlainType::Uuid,
            ("bytea", None) => PlainType::Bytea,
            ("json", None) => PlainType::Json,
            ("jsonb", None) => PlainType::Jsonb,
            _ => return Err(TypeError::Unknown(written.to_owned())),
        };
        Ok(ty)
    }

    /// The type's OID in `pg_type` (stable across PostgreSQL versions for these built-ins).
    pub fn oid(&self) -> u32 {
        match self {
            PlainType::Text => 25,
            PlainType::Varchar(_) => 1043,
            PlainType::Char(_) => 1042,
            PlainType::Bool => 16,
            PlainType::Int2 => 21,
            PlainType::Int4 => 23,
            PlainType::Int8 => 20,
            PlainType::Numeric(_) => 1700,
            PlainType::Float4 => 700,
            PlainType::Float8 => 701,
            PlainType::Date => 1082,
            PlainType::Timestamp => 1114,
            PlainType::Timestamptz => 1184,
            PlainType::Uuid => 2950,
            PlainType::Bytea => 17,
            PlainType::Json => 114,
            PlainType::Jsonb => 3802,
        }
    }

    /// The OID of the array of this type in `pg_type` (`date[]` for `date`).
    pub fn array_oid(&self) -> u32 {
        ARRAY_TYPES
            .iter()
            .find(|(element, _)| *element == self.oid())
            .map_or(TEXT_ARRAY_OID, |(_, array)| *array)
    }

    /// The type modifier PostgreSQL reports for it (`atttypmod`, RowDescription), -1 for none.
    pub fn typmod(&self) -> i32 {
        const VARHDRSZ: i64 = 4;
        let typmod = match self {
            PlainType::Varchar(Some(n)) | PlainType::Char(n) => i64::from(*n) + VARHDRSZ,
            PlainType::Numeric(Some((p, s))) => ((i64::from(*p) << 16) | i64::from(*s)) + VARHDRSZ,
            _ => -1,
        };
        i32::try_from(typmod).unwrap_or(-1)
    }

    /// The type as `format_type()` prints it (`character varying(15)`, `timestamp with time
    /// zone`), to compare with a catalog.
    pub fn sql_name(&self) -> String {
        match self {
            PlainType::Text => "text".into(),
            PlainType::Varchar(None) => "character varying".into(),
            PlainType::Varchar(Some(n)) => format!("character varying({n})"),
            PlainType::Char(n) => format!("character({n})"),
            PlainType::Bool => "boolean".into(),
            PlainType::Int2 => "smallint".into(),
            PlainType::Int4 => "integer".into(),
            PlainType::Int8 => "bigint".into(),
            PlainType::Numeric(None) => "numeric".into(),
            PlainType::Numeric(Some((p, s))) => format!("numeric({p},{s})"),
            PlainType::Float4 => "real".into(),
            PlainType::Float8 => "double precision".into(),
            PlainType::Date => "date".into(),
            PlainType::Timestamp => "timestamp without time zone".into(),
            PlainType::Timestamptz => "timestamp with time zone".into(),
            PlainType::Uuid => "uuid".into(),
            PlainType::Bytea => "bytea".into(),
            PlainType::Json => "json".into(),
            PlainType::Jsonb => "jsonb".into(),
        }
    }

    /// True for `text`, `varchar` and `char`: character strings.
    pub fn is_character(&self) -> bool {
        matches!(
            self,
            PlainType::Text | PlainType::Varchar(_) | PlainType::Char(_)
        )
    }

    /// True for `date`, `timestamp` and `timestamptz`, whose text form starts with an ISO date.
    pub fn is_dated(&self) -> bool {
        matches!(
            self,
            PlainType::Date | PlainType::Timestamp | PlainType::Timestamptz
        )
    }

    /// The largest number of characters a value can hold, for `varchar(n)` and `char(n)`.
    pub fn max_chars(&self) -> Option<u32> {
        match self {
            PlainType::Varchar(n) => *n,
            PlainType::Char(n) => Some(*n),
            _ => None,
        }
    }

    /// Two columns can share a domain (and be joined) when their values compare alike: both
    /// character strings, or the same type otherwise.
    pub fn joins_with(&self, other: &PlainType) -> bool {
        (self.is_character() && other.is_character())
            || std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for PlainType {
    /// The short spelling a policy uses: `varchar(15)`, `timestamptz`, `numeric(10,2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlainType::Text => f.write_str("text"),
            PlainType::Varchar(None) => f.write_str("varchar"),
            PlainType::Varchar(Some(n)) => write!(f, "varchar({n})"),
            PlainType::Char(n) => write!(f, "char({n})"),
            PlainType::Bool => f.write_str("boolean"),
            PlainType::Int2 => f.write_str("int2"),
            PlainType::Int4 => f.write_str("int4"),
            PlainType::Int8 => f.write_str("int8"),
            PlainType::Numeric(None) => f.write_str("numeric"),
            PlainType::Numeric(Some((p, s))) => write!(f, "numeric({p},{s})"),
            PlainType::Float4 => f.write_str("float4"),
            PlainType::Float8 => f.write_str("float8"),
            PlainType::Date => f.write_str("date"),
            PlainType::Timestamp => f.write_str("timestamp"),
            PlainType::Timestamptz => f.write_str("timestamptz"),
            PlainType::Uuid => f.write_str("uuid"),
            PlainType::Bytea => f.write_str("bytea"),
            PlainType::Json => f.write_str("json"),
            PlainType::Jsonb => f.write_str("jsonb"),
        }
    }
}

/// The OID of `text[]`.
const TEXT_ARRAY_OID: u32 = 1009;

/// Each plaintext type's OID with its array type's (stable across PostgreSQL versions).
const ARRAY_TYPES: [(u32, u32); 17] = [
    (25, TEXT_ARRAY_OID),
    (1043, 1015),
    (1042, 1014),
    (16, 1000),
    (21, 1005),
    (23, 1007),
    (20, 1016),
    (1700, 1231),
    (700, 1021),
    (701, 1022),
    (1082, 1182),
    (1114, 1115),
    (1184, 1185),
    (2950, 2951),
    (17, 1001),
    (114, 199),
    (3802, 3807),
];

/// The element type of an array type among the plaintext types' arrays (`date` for
/// `date[]`); `None` for any other OID.
pub fn array_element_oid(array: u32) -> Option<u32> {
    ARRAY_TYPES
        .iter()
        .find(|(_, a)| *a == array)
        .map(|(element, _)| *element)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_and_aliases() {
        let cases = [
            ("text", PlainType::Text),
            ("TEXT", PlainType::Text),
            ("varchar(15)", PlainType::Varchar(Some(15))),
            ("character varying ( 15 )", PlainType::Varchar(Some(15))),
            ("varchar", PlainType::Varchar(None)),
            ("char(15)", PlainType::Char(15)),
            ("character", PlainType::Char(1)),
            ("bool", PlainType::Bool),
            ("integer", PlainType::Int4),
            ("int", PlainType::Int4),
            ("bigint", PlainType::Int8),
            ("smallint", PlainType::Int2),
            ("numeric", PlainType::Numeric(None)),
            ("numeric(10, 2)", PlainType::Numeric(Some((10, 2)))),
            ("decimal(5)", PlainType::Numeric(Some((5, 0)))),
            ("double  precision", PlainType::Float8),
            ("real", PlainType::Float4),
            ("date", PlainType::Date),
            ("timestamp without time zone", PlainType::Timestamp),
            ("timestamp with time zone", PlainType::Timestamptz),
            ("timestamptz", PlainType::Timestamptz),
            ("uuid", PlainType::Uuid),
            ("bytea", PlainType::Bytea),
            ("jsonb", PlainType::Jsonb),
        ];
        for (written, expected) in cases {
            assert_eq!(PlainType::parse(written), Ok(expected), "{written}");
            // The catalog spelling and the short spelling both parse back to the same type.
            assert_eq!(PlainType::parse(&expected.sql_name()), Ok(expected));
            assert_eq!(PlainType::parse(&expected.to_string()), Ok(expected));
        }
    }

    #[test]
    fn unknown_types_and_bad_modifiers() {
        assert_eq!(
            PlainType::parse("money"),
            Err(TypeError::Unknown("money".into()))
        );
        assert_eq!(
            PlainType::parse("text(3)"),
            Err(TypeError::Unknown("text(3)".into()))
        );
        assert_eq!(
            PlainType::parse("varchar(15"),
            Err(TypeError::Unknown("varchar(15".into()))
        );
        for bad in [
            "varchar(0)",
            "varchar(x)",
            "char(1,2)",
            "numeric(2,3)",
            "numeric(0)",
        ] {
            assert_eq!(
                PlainType::parse(bad),
                Err(TypeError::BadModifier(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn oids_and_modifiers_match_postgresql() {
        assert_eq!(PlainType::Varchar(Some(15)).typmod(), 19);
        assert_eq!(PlainType::Char(1).typmod(), 5);
        assert_eq!(
            PlainType::Numeric(Some((10, 2))).typmod(),
            (10 << 16 | 2) + 4
        );
        assert_eq!(PlainType::Text.typmod(), -1);
        assert_eq!(PlainType::Date.oid(), 1082);
        assert_eq!(PlainType::Timestamptz.oid(), 1184);
    }

    #[test]
    fn families() {
        assert!(PlainType::Text.joins_with(&PlainType::Varchar(Some(15))));
        assert!(PlainType::Int8.joins_with(&PlainType::Int8));
        assert!(!PlainType::Int8.joins_with(&PlainType::Int4));
        assert!(PlainType::Timestamptz.is_dated());
        assert!(!PlainType::Text.is_dated());
        assert_eq!(PlainType::Char(15).max_chars(), Some(15));
    }
}
