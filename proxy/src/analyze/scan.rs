//! A forgiving identifier scan, for text pgseal cannot analyse: which sealed tables (and
//! sealed column names) does it mention?
//!
//! It is its own small lexer so that it never fails: unterminated quotes or comments run to
//! the end of the text. It skips comments, folds unquoted identifiers the way PostgreSQL does
//! (ASCII lower-case), keeps double-quoted ones exactly, joins dotted names, and also scans the
//! contents of string literals (single-quoted, `E'…'`, dollar-quoted), a few levels deep,
//! because function bodies and `EXECUTE '…'` hide SQL there. That can over-report (a string
//! that merely contains a table's name): the scan is used to refuse, so erring that way is the
//! safe side.

use pgseal_policies::CompiledPolicy;

use super::names::fold_str;
use super::plan::TableRef;

/// How deep string literals are re-scanned as SQL.
const MAX_STRING_DEPTH: usize = 4;

/// The sealed tables a text mentions, in order of first mention.
///
/// A dotted name mentions sealed table `s.t` when one of its parts is `t` and it is either the
/// first part (`t`, `t.col`) or preceded by `s` (`s.t`, `s.t.col`, `db.s.t`).
pub(crate) fn sealed_tables_in(text: &str, policy: &CompiledPolicy) -> Vec<TableRef> {
    let mut found: Vec<TableRef> = Vec::new();
    for name in dotted_names(text) {
        for (i, part) in name.iter().enumerate() {
            for table in policy.tables() {
                if &table.table != part {
                    continue;
                }
                let qualified_ok = i == 0 || name[i - 1] == table.schema;
                let table_ref = TableRef {
                    schema: table.schema.clone(),
                    table: table.table.clone(),
                };
                if qualified_ok && !found.contains(&table_ref) {
                    found.push(table_ref);
                }
            }
        }
    }
    found
}

/// True when the text mentions, as an identifier, the name of a sealed column or table of the
/// policy.
pub(crate) fn mentions_sealed(text: &str, policy: &CompiledPolicy) -> bool {
    !sealed_tables_in(text, policy).is_empty()
        || dotted_names(text)
            .iter()
            .flatten()
            .any(|part| policy.columns().iter().any(|column| &column.column == part))
}

/// Every dotted identifier chain of the text (each part folded), strings' contents included.
pub(crate) fn dotted_names(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    scan(text, 0, &mut out);
    out
}

fn scan(text: &str, depth: usize, out: &mut Vec<Vec<String>>) {
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
    };
    let mut chain: Vec<String> = Vec::new();
    let mut after_dot = false;
    while let Some(item) = lexer.next_item() {
        match item {
            Item::Ident(name) => {
                if !after_dot && !chain.is_empty() {
                    out.push(std::mem::take(&mut chain));
                }
                chain.push(name);
                after_dot = false;
            }
            Item::Dot => after_dot = !chain.is_empty(),
            Item::Str(contents) => {
                flush(&mut chain, out);
                after_dot = false;
                if depth < MAX_STRING_DEPTH {
                    scan(&contents, depth + 1, out);
                }
            }
            Item::Other | Item::Semicolon => {
                flush(&mut chain, out);
                after_dot = false;
            }
        }
    }
    flush(&mut chain, out);
}

/// The words of each statement of a text, folded, in order: keywords and names (each part of
/// a dotted name), and the words inside its string literals (a `DO` body, `set_config`'s
/// arguments). Comments are skipped; statements split at the `;` outside strings.
pub(crate) fn statement_words(text: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut lexer = Lexer {
        chars: &chars,
        pos: 0,
    };
    let mut statements = vec![Vec::new()];
    while let Some(item) = lexer.next_item() {
        let Some(current) = statements.last_mut() else {
            break;
        };
        match item {
            Item::Ident(name) => current.push(name),
            Item::Str(contents) => {
                current.extend(dotted_names(&contents).into_iter().flatten());
            }
            Item::Semicolon if !current.is_empty() => statements.push(Vec::new()),
            Item::Dot | Item::Other | Item::Semicolon => {}
        }
    }
    statements.retain(|words| !words.is_empty());
    statements
}

fn flush(chain: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if !chain.is_empty() {
        out.push(std::mem::take(chain));
    }
}

/// What the lexer yields.
enum Item {
    /// An identifier or keyword, folded.
    Ident(String),
    /// A `.`.
    Dot,
    /// A string literal's contents.
    Str(String),
    /// A `;` (between statements).
    Semicolon,
    /// Anything else (punctuation, numbers, operators).
    Other,
}

struct Lexer<'c> {
    chars: &'c [char],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn next_item(&mut self) -> Option<Item> {
        loop {
            let c = self.peek(0)?;
            match c {
                c if c.is_whitespace() => self.pos += 1,
                '-' if self.peek(1) == Some('-') => self.skip_line_comment(),
                '/' if self.peek(1) == Some('*') => self.skip_block_comment(),
                _ => break,
            }
        }
        let c = self.peek(0)?;
        let item = match c {
            '.' => {
                self.pos += 1;
                Item::Dot
            }
            '"' => Item::Ident(self.quoted_identifier()),
            '\'' => Item::Str(self.single_quoted(false)),
            'e' | 'E' if self.peek(1) == Some('\'') => {
                self.pos += 1;
                Item::Str(self.single_quoted(true))
            }
            '$' if self.dollar_tag().is_some() => Item::Str(self.dollar_quoted()),
            c if c.is_alphabetic() || c == '_' => Item::Ident(self.word()),
            c if c.is_ascii_digit() || c == '$' => {
                // Numbers and `$1`: the whole run, so `1e5` or `$12` never yield an identifier.
                self.pos += 1;
                while let Some(c) = self.peek(0) {
                    if c.is_alphanumeric() || c == '_' || c == '$' || c == '.' {
                        self.pos += 1;
                    } else {
                        break;
                    }
                }
                Item::Other
            }
            ';' => {
                self.pos += 1;
                Item::Semicolon
            }
            _ => {
                self.pos += 1;
                Item::Other
            }
        };
        Some(item)
    }

    fn skip_line_comment(&mut self) {
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == '\n' {
                break;
            }
        }
    }

    fn skip_block_comment(&mut self) {
        // PostgreSQL block comments nest.
        let mut depth = 0usize;
        while let Some(c) = self.peek(0) {
            if c == '/' && self.peek(1) == Some('*') {
                depth += 1;
                self.pos += 2;
            } else if c == '*' && self.peek(1) == Some('/') {
                self.pos += 2;
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return;
                }
            } else {
                self.pos += 1;
            }
        }
    }

    fn word(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            if c.is_alphanumeric() || c == '_' || c == '$' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        fold_str(&name)
    }

    fn quoted_identifier(&mut self) -> String {
        self.pos += 1;
        let mut name = String::new();
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            if c == '"' {
                if self.peek(0) == Some('"') {
                    name.push('"');
                    self.pos += 1;
                } else {
                    break;
                }
            } else {
                name.push(c);
            }
        }
        super::names::truncate_identifier(name)
    }

    fn single_quoted(&mut self, backslash_escapes: bool) -> String {
        self.pos += 1;
        let mut contents = String::new();
        while let Some(c) = self.peek(0) {
            self.pos += 1;
            match c {
                '\'' if self.peek(0) == Some('\'') => {
                    contents.push('\'');
                    self.pos += 1;
                }
                '\'' => break,
                '\\' if backslash_escapes => {
                    if let Some(next) = self.peek(0) {
                        contents.push(next);
                        self.pos += 1;
                    }
                }
                c => contents.push(c),
            }
        }
        contents
    }

    /// The `$tag$` opening a dollar-quoted string at the current position, if it is one.
    fn dollar_tag(&self) -> Option<usize> {
        let mut len = 1;
        loop {
            match self.peek(len)? {
                '$' => return Some(len + 1),
                c if (c.is_alphabetic() || c == '_') || (len > 1 && c.is_ascii_digit()) => len += 1,
                _ => return None,
            }
        }
    }

    fn dollar_quoted(&mut self) -> String {
        let Some(tag_len) = self.dollar_tag() else {
            return String::new();
        };
        let tag: Vec<char> = self.chars[self.pos..self.pos + tag_len].to_vec();
        self.pos += tag_len;
        let mut contents = String::new();
        while self.pos < self.chars.len() {
            if self.chars[self.pos..].starts_with(&tag) {
                self.pos += tag_len;
                return contents;
            }
            contents.push(self.chars[self.pos]);
            self.pos += 1;
        }
        contents
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_fold_and_join() {
        let names =
            dotted_names(r#"SELECT P.Nir, "Patients".x FROM public . Patients -- patients2"#);
        assert_eq!(
            names,
            vec![
                vec!["select".to_string()],
                vec!["p".into(), "nir".into()],
                vec!["Patients".into(), "x".into()],
                vec!["from".into()],
                vec!["public".into(), "patients".into()],
            ]
        );
    }

    #[test]
    fn strings_and_bodies_are_scanned() {
        let names = dotted_names("DO $body$ BEGIN EXECUTE 'DELETE FROM patients'; END $body$");
        assert!(names.contains(&vec!["patients".to_string()]));
        let names = dotted_names("select E'it\\'s', $1, 1e5, $$x$$, lower(nir)");
        assert!(names.contains(&vec!["it".to_string()]));
        assert!(names.contains(&vec!["nir".to_string()]));
        assert!(!names.iter().flatten().any(|n| n == "e5"));
    }

    #[test]
    fn never_fails_on_unterminated_input() {
        for text in ["'abc", "\"abc", "/* abc", "$a$ abc", "E'\\", "$", "\"\"\""] {
            let _ = dotted_names(text);
        }
    }
}
