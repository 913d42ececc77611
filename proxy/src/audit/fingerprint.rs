//! Statement fingerprints: the statement's shape without any literal value, for the audit trail.
//!
//! The text is tokenized with the SQL analysis's tokenizer (PostgreSQL dialect) and rebuilt
//! token by token: every literal (strings of every kind, numbers, inline COPY data) becomes `?`,
//! comments go, unquoted words are lower-cased (PostgreSQL folds them), quoted identifiers and
//! `$n` parameters stay, spacing is normalised, and a list of literals `(?, ?, ?)` becomes
//! `(?...)` so a query's fingerprint does not depend on how many values it was given. What is
//! kept is a whitelist — words, parameters, and operators made only of punctuation other than
//! quotes and `$` — so a token kind the tokenizer may add later becomes `?`, never its text.
//! A statement that does not tokenize gets the fingerprint `<untokenizable>`. Fingerprints
//! longer than 4 KiB are cut.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::tokenizer::{Token, Tokenizer};

/// The longest fingerprint text kept, in bytes.
pub const MAX_FINGERPRINT_LEN: usize = 4096;

/// A statement's fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint {
    /// The normalised text, literals replaced by `?`.
    pub text: String,
    /// 16 hex digits: FNV-1a (64 bits) of the text, stable across versions, to group by.
    pub id: String,
}

impl Fingerprint {
    /// The fingerprint of one statement's text.
    pub fn of(sql: &str) -> Fingerprint {
        let text = normalize(sql).unwrap_or_else(|| "<untokenizable>".to_owned());
        let id = format!("{:016x}", fnv1a(text.as_bytes()));
        Fingerprint { text, id }
    }
}

/// FNV-1a, 64 bits: a stable, non-cryptographic hash (fingerprint ids, names cut to fit).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// True for operator text made only of punctuation that cannot open a literal.
fn is_operator_text(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_punctuation() && !matches!(c, '\'' | '"' | '$' | '`'))
}

fn normalize(sql: &str) -> Option<String> {
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut parts: Vec<String> = Vec::new();
    for token in tokens {
        let part = match &token {
            Token::Whitespace(_) | Token::EOF => continue,
            Token::Word(w) if w.quote_style.is_none() => w.value.to_lowercase(),
            Token::Word(w) if w.quote_style == Some('"') => {
                format!("\"{}\"", w.value.replace('"', "\"\""))
            }
            Token::Placeholder(p) if is_placeholder(p) => p.clone(),
            Token::Comma => ",".to_owned(),
            Token::LParen => "(".to_owned(),
            Token::RParen => ")".to_owned(),
            Token::Period => ".".to_owned(),
            Token::SemiColon => ";".to_owned(),
            Token::DoubleColon => "::".to_owned(),
            other => {
                let text = other.to_string();
                if is_operator_text(&text) {
                    text
                } else {
                    "?".to_owned()
                }
            }
        };
        // (?, ?, ?) → (?...)
        if part == "?" {
            let n = parts.len();
            if n >= 2 && parts[n - 1] == "," && (parts[n - 2] == "?" || parts[n - 2] == "?...") {
                parts.pop();
                parts.pop();
                parts.push("?...".to_owned());
                continue;
            }
        }
        parts.push(part);
    }
    let mut out = String::with_capacity(sql.len().min(MAX_FINGERPRINT_LEN));
    let mut previous: Option<&str> = None;
    for part in &parts {
        let glue = !matches!(
            (previous, part.as_str()),
            (None, _) | (_, "," | ")" | "." | ";" | "::") | (Some("(" | "." | "::"), _)
        );
        if glue {
            out.push(' ');
        }
        out.push_str(part);
        previous = Some(part);
        if out.len() > MAX_FINGERPRINT_LEN {
            let mut cut = MAX_FINGERPRINT_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    Some(out)
}

/// `$1`, `$2`…, `?`: positional parameters (not `$name`-like literals).
fn is_placeholder(p: &str) -> bool {
    p == "?"
        || p.strip_prefix('$')
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(sql: &str) -> String {
        Fingerprint::of(sql).text
    }

    #[test]
    fn literals_never_survive() {
        let cases = [
            (
                "SELECT nom, prenom FROM patients WHERE nir = '185057800608491' AND age > 42",
                "select nom, prenom from patients where nir = ? and age > ?",
            ),
            (
                "select * from \"Dossiers\" where id in (1, 2, 3) -- secret 'x'",
                "select * from \"Dossiers\" where id in (?...)",
            ),
            (
                "INSERT INTO t (a, b) VALUES (E'l\\'ami', $$dollar secret$$), (x'0A', -5.5)",
                "insert into t (a, b) values (?...), (?, - ?)",
            ),
            (
                "UPDATE t SET a = $1 /* pgseal_user='dr.martin' */ WHERE b = $2::text",
                "update t set a = $1 where b = $2::text",
            ),
            ("SELECT U&'d\\0061t\\+000061'", "select ?"),
            (
                "SELECT date '2020-01-01', interval '1 day'",
                "select date ?, interval ?",
            ),
            ("select 'unterminated", "<untokenizable>"),
        ];
        for (sql, want) in cases {
            assert_eq!(text(sql), want, "{sql}");
        }
        let secret_bits = [
            "185057800608491",
            "42",
            "secret",
            "l'ami",
            "dr.martin",
            "2020",
        ];
        for (sql, _) in cases {
            let t = text(sql);
            for bit in secret_bits {
                assert!(!t.contains(bit), "{bit} in {t}");
            }
        }
    }

    #[test]
    fn same_shape_same_id() {
        let a = Fingerprint::of("SELECT * FROM patients WHERE id = 1");
        let b = Fingerprint::of("select *\n  from   PATIENTS where id=2");
        assert_eq!(a, b);
        assert_eq!(a.id.len(), 16);
        assert_ne!(
            a.id,
            Fingerprint::of("select * from patients where id = $1").id
        );
    }

    #[test]
    fn long_statements_are_cut() {
        let sql = format!("select {}", vec!["a"; 5000].join(" + "));
        let t = text(&sql);
        assert!(t.len() <= MAX_FINGERPRINT_LEN + '…'.len_utf8());
        assert!(t.ends_with('…'));
    }
}
