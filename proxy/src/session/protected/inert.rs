//! Simple-protocol texts that need nothing of pgseal, remembered by their shape: the text with
//! its numbers masked. Applications inline numbers into the statements they send (`… WHERE
//! id = 4711`), so the exact-text analysis cache misses every time; a text whose shape was
//! already planned in full and found to touch no sealed table is forwarded as it is without
//! being analysed again.
//!
//! Why a number's value cannot matter here: pgseal's analysis finds sealed data by the names a
//! statement uses (tables, columns, functions), never by the value of a number, and the numbers
//! it reads (`ORDER BY 1`, `LIMIT 10`) count only in statements on sealed tables, which are
//! never remembered. A shape keeps every other byte of the text (names, strings, operators,
//! spacing), and texts whose lexing it would have to guess (comments, dollar quotes,
//! backslashes) get no shape at all. What is remembered is also tied to the role class and to
//! the catalog it was checked against (writes through views over sealed tables are refused
//! by the catalog).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use foldhash::SharedSeed;
use foldhash::fast::SeedableRandomState;

use pgseal_policies::ClassId;

use super::accounting::StatementInfo;
use crate::protect::catalog::DatabaseCatalog;

/// How many shapes are kept before the cache starts over (an application sends a bounded set
/// of statement shapes; one that inlines strings gets new shapes without end).
const LIMIT: usize = 4096;

/// How many shapes a session keeps copies of ([`SessionShapes`]); past that, one is dropped
/// for each new one.
const SESSION_LIMIT: usize = 32;

/// The longest shape a session copies: longer ones are answered from the shared map, so that
/// a session's copies stay small (at most some 64 KiB with their statement records) however
/// long the texts its client sends.
const SESSION_SHAPE_MAX: usize = 1024;

/// The byte a masked number becomes: PostgreSQL's protocol cannot carry it in a statement,
/// so a shape is never mistaken for a text.
const MASK: u8 = 0;

/// Longer texts get no shape: the cache would hold too much of them (a long text is usually a
/// batch of rows, whose shape changes with their count anyway).
const MAX_TEXT: usize = 16 * 1024;

/// The shape of a text: each number written outside strings and quoted names replaced by one
/// NUL byte, every other byte kept (the text itself when there is no number, else written into
/// `buf`, which a session reuses). `None` when the text holds what this lexing does not follow
/// exactly: a comment, a dollar sign (dollar quotes, `$n`), a backslash (escape strings,
/// `standard_conforming_strings`), a NUL, an unterminated quote, or more than [`MAX_TEXT`]
/// bytes.
///
/// A number is a run of ASCII digits with no letter, digit, `_`, `$` or non-ASCII byte on
/// either side (so `t1`, `1e5`, `0x1F` and `1_000` stay as they are); `1.5` is two runs.
pub fn shape<'a>(text: &'a [u8], buf: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let bytes = text;
    if bytes.len() > MAX_TEXT {
        return None;
    }
    buf.clear();
    // The masked text, written into `buf` only up to `kept`: what follows is the text's own.
    let mut kept = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Most bytes are none of the ones below: skipped a run at a time.
        while bytes
            .get(i)
            .is_some_and(|&b| CLASS[usize::from(b)] == Class::Plain)
        {
            i += 1;
        }
        let Some(&b) = bytes.get(i) else {
            break;
        };
        match CLASS[usize::from(b)] {
            // Skipped above; kept for the match to name every class.
            Class::Plain => i += 1,
            Class::Refused => return None,
            Class::Dash | Class::Slash => {
                let comment = if b == b'-' { b'-' } else { b'*' };
                if bytes.get(i + 1) == Some(&comment) {
                    return None;
                }
                i += 1;
            }
            Class::Quote => {
                i += 1;
                loop {
                    let c = *bytes.get(i)?;
                    if c == MASK || c == b'\\' {
                        return None;
                    }
                    i += 1;
                    // A doubled quote is one quote character inside.
                    if c == b && bytes.get(i) != Some(&b) {
                        break;
                    }
                    if c == b {
                        i += 1;
                    }
                }
            }
            Class::Digit => {
                let start = i;
                while bytes.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                let before = start.checked_sub(1).and_then(|p| bytes.get(p)).copied();
                let after = bytes.get(i).copied();
                if !before.is_some_and(in_word) && !after.is_some_and(in_word) {
                    if buf.is_empty() {
                        buf.reserve(bytes.len());
                    }
                    buf.extend_from_slice(&bytes[kept..start]);
                    buf.push(MASK);
                    kept = i;
                }
            }
        }
    }
    if kept == 0 {
        return Some(text);
    }
    buf.extend_from_slice(&bytes[kept..]);
    Some(buf)
}

/// What [`shape`] does at a byte.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Skips it.
    Plain,
    /// Refuses the text (NUL, backslash, dollar sign).
    Refused,
    /// Looks at the next byte: `--` starts a comment.
    Dash,
    /// Looks at the next byte: `/*` starts a comment.
    Slash,
    /// Reads a quoted string or name.
    Quote,
    /// Reads a number.
    Digit,
}

/// Each byte's class for [`shape`].
static CLASS: [Class; 256] = {
    let mut class = [Class::Plain; 256];
    class[MASK as usize] = Class::Refused;
    class[b'\\' as usize] = Class::Refused;
    class[b'$' as usize] = Class::Refused;
    class[b'-' as usize] = Class::Dash;
    class[b'/' as usize] = Class::Slash;
    class[b'\'' as usize] = Class::Quote;
    class[b'"' as usize] = Class::Quote;
    let mut digit = b'0';
    while digit <= b'9' {
        class[digit as usize] = Class::Digit;
        digit += 1;
    }
    class
};

/// Whether a byte may be part of a word around a digit (a name, a keyword, a number's
/// exponent or radix prefix).
fn in_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || !b.is_ascii()
}

/// What is known of a shape: its statement record (fingerprint, no sealed table), whether it
/// only reads, and for whom it was checked.
struct Inert {
    statement: Arc<StatementInfo>,
    read_only: bool,
    class: ClassId,
    catalog: Weak<DatabaseCatalog>,
}

impl Inert {
    /// What it tells of its shape for this class and catalog, if it was checked for them.
    /// The catalog is compared by address, without touching its counts: the `Weak` held here
    /// keeps the address from being reused while the entry lives.
    fn known_for(&self, class: ClassId, catalog: &Arc<DatabaseCatalog>) -> Option<Known> {
        (self.class == class && std::ptr::eq(self.catalog.as_ptr(), Arc::as_ptr(catalog))).then(
            || Known {
                statement: Arc::clone(&self.statement),
                read_only: self.read_only,
            },
        )
    }
}

/// One protection's remembered shapes, shared by its sessions.
pub struct InertTexts {
    shapes: Mutex<HashMap<Vec<u8>, Inert, SeedableRandomState>>,
}

impl Default for InertTexts {
    fn default() -> Self {
        InertTexts {
            shapes: Mutex::new(HashMap::with_hasher(shape_hasher())),
        }
    }
}

/// The shape cache's hasher: foldhash (fast on short texts), with both of its seeds drawn from
/// the operating system's random source, since the texts are the clients' and every session of
/// a protection shares the cache.
fn shape_hasher() -> SeedableRandomState {
    static SHARED: OnceLock<&'static SharedSeed> = OnceLock::new();
    // Leaked once per process: foldhash takes its shared seed by `'static` reference.
    let shared = SHARED.get_or_init(|| Box::leak(Box::new(SharedSeed::from_u64(rand::random()))));
    SeedableRandomState::with_seed(rand::random(), shared)
}

/// A remembered text's plan: its statement record and whether it only reads.
pub struct Known {
    /// The statement record (its fingerprint has no literal, so it is the shape's).
    pub statement: Arc<StatementInfo>,
    /// Whether it only reads.
    pub read_only: bool,
}

impl InertTexts {
    /// What is known of a shape for a class and the catalog it is planned against.
    pub fn find(
        &self,
        shape: &[u8],
        class: ClassId,
        catalog: &Arc<DatabaseCatalog>,
    ) -> Option<Known> {
        let shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        shapes.get(shape)?.known_for(class, catalog)
    }

    /// Remembers a shape planned in full that needs nothing of pgseal.
    pub fn remember(
        &self,
        shape: &[u8],
        class: ClassId,
        catalog: &Arc<DatabaseCatalog>,
        known: Known,
    ) {
        let mut shapes = self.shapes.lock().unwrap_or_else(|e| e.into_inner());
        if shapes.len() >= LIMIT {
            shapes.clear();
        }
        shapes.insert(
            shape.to_vec(),
            Inert {
                statement: known.statement,
                read_only: known.read_only,
                class,
                catalog: Arc::downgrade(catalog),
            },
        );
    }
}

/// A session's own copies of the shapes it found in its protection's [`InertTexts`], looked
/// up first. A statement the session repeats then touches nothing another core writes: not
/// the shared map's lock, nor the reference count of a statement record every session of the
/// protection holds (on two cores, those atomics cost more than the lookup itself).
pub struct SessionShapes {
    shapes: HashMap<Vec<u8>, Inert, SeedableRandomState>,
}

impl Default for SessionShapes {
    fn default() -> Self {
        SessionShapes {
            shapes: HashMap::with_hasher(shape_hasher()),
        }
    }
}

impl SessionShapes {
    /// What is known of a shape: from the session's copy, else from the shared cache (and
    /// then copied, statement record included, for the next time).
    pub fn find(
        &mut self,
        shared: &InertTexts,
        shape: &[u8],
        class: ClassId,
        catalog: &Arc<DatabaseCatalog>,
    ) -> Option<Known> {
        if let Some(known) = self
            .shapes
            .get(shape)
            .and_then(|inert| inert.known_for(class, catalog))
        {
            return Some(known);
        }
        let known = shared.find(shape, class, catalog)?;
        if shape.len() > SESSION_SHAPE_MAX {
            return Some(known);
        }
        if self.shapes.len() >= SESSION_LIMIT
            && let Some(any) = self.shapes.keys().next().cloned()
        {
            self.shapes.remove(&any);
        }
        let statement = Arc::new(StatementInfo::clone(&known.statement));
        self.shapes.insert(
            shape.to_vec(),
            Inert {
                statement: Arc::clone(&statement),
                read_only: known.read_only,
                class,
                catalog: Arc::downgrade(catalog),
            },
        );
        Some(Known {
            statement,
            read_only: known.read_only,
        })
    }
}

#[cfg(test)]
mod session_shapes {
    use std::sync::Arc;

    use pgseal_policies::ClassId;

    use super::{InertTexts, Known, SessionShapes};
    use crate::audit::Fingerprint;
    use crate::protect::catalog::DatabaseCatalog;
    use crate::session::protected::accounting::StatementInfo;

    fn statement(text: &str) -> Arc<StatementInfo> {
        Arc::new(StatementInfo {
            sealed: false,
            fingerprint: Fingerprint::of(text),
            tables: Vec::new(),
            columns: Vec::new(),
            end_user: None,
        })
    }

    /// A shape found in the shared cache is answered from the session's own copy afterwards:
    /// the same record, in an allocation no other session counts references to.
    #[test]
    fn a_shape_found_once_is_answered_from_the_sessions_copy() {
        let shared = InertTexts::default();
        let catalog = Arc::new(DatabaseCatalog::default());
        let record = statement("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
        let known = Known {
            statement: Arc::clone(&record),
            read_only: true,
        };
        shared.remember(b"SELECT abalance", ClassId::DEFAULT, &catalog, known);
        let mut session = SessionShapes::default();
        let first = session
            .find(&shared, b"SELECT abalance", ClassId::DEFAULT, &catalog)
            .expect("remembered in the shared cache");
        assert!(first.read_only);
        assert_eq!(first.statement.fingerprint, record.fingerprint);
        assert!(!Arc::ptr_eq(&first.statement, &record), "a copy of its own");
        let again = session
            .find(&shared, b"SELECT abalance", ClassId::DEFAULT, &catalog)
            .expect("in the session's copy");
        assert!(Arc::ptr_eq(&first.statement, &again.statement));
        assert_eq!(
            Arc::strong_count(&record),
            2,
            "the shared record is not held again"
        );
    }

    /// A copy answers only for the catalog it was checked against: under another one (after a
    /// reload), the shape is looked up again, and the shared entry, checked against the old
    /// catalog, does not answer either.
    #[test]
    fn a_copy_does_not_answer_for_another_catalog() {
        let shared = InertTexts::default();
        let catalog = Arc::new(DatabaseCatalog::default());
        let known = Known {
            statement: statement("SELECT 1"),
            read_only: true,
        };
        shared.remember(b"SELECT #", ClassId::DEFAULT, &catalog, known);
        let mut session = SessionShapes::default();
        assert!(
            session
                .find(&shared, b"SELECT #", ClassId::DEFAULT, &catalog)
                .is_some()
        );
        let reloaded = Arc::new(DatabaseCatalog::default());
        assert!(
            session
                .find(&shared, b"SELECT #", ClassId::DEFAULT, &reloaded)
                .is_none()
        );
        assert!(
            session
                .find(
                    &InertTexts::default(),
                    b"SELECT other",
                    ClassId::DEFAULT,
                    &catalog
                )
                .is_none()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::shape;

    /// The shape of a text, owned.
    fn shaped(text: &[u8]) -> Option<Vec<u8>> {
        shape(text, &mut Vec::new()).map(<[u8]>::to_vec)
    }

    fn masked(text: &str) -> String {
        let mut buf = Vec::new();
        let shape = shape(text.as_bytes(), &mut buf).expect("a shape");
        String::from_utf8(shape.to_vec())
            .expect("UTF-8")
            .replace('\0', "#")
    }

    #[test]
    fn numbers_outside_quotes_are_masked() {
        assert_eq!(
            masked("SELECT abalance FROM pgbench_accounts WHERE aid = 71637;"),
            "SELECT abalance FROM pgbench_accounts WHERE aid = #;"
        );
        assert_eq!(
            masked("UPDATE t SET v = v + -4383 WHERE id=3 AND x>2.50"),
            "UPDATE t SET v = v + -# WHERE id=# AND x>#.#"
        );
        assert_eq!(masked("VALUES (1,2),(3)"), "VALUES (#,#),(#)");
        assert_eq!(masked("SELECT 1::int4"), "SELECT #::int4");
    }

    #[test]
    fn digits_in_names_strings_and_words_stay() {
        assert_eq!(masked("SELECT t1.c2 FROM t1"), "SELECT t1.c2 FROM t1");
        assert_eq!(
            masked("SELECT '42', \"7x\" FROM t"),
            "SELECT '42', \"7x\" FROM t"
        );
        assert_eq!(
            masked("SELECT 'it''s 3', \"a\"\"9\""),
            "SELECT 'it''s 3', \"a\"\"9\""
        );
        assert_eq!(
            masked("SELECT 1e5, 0x1F, 1_000, é1"),
            "SELECT 1e5, 0x1F, 1_000, é1"
        );
        assert_eq!(masked("SELECT E'5'"), "SELECT E'5'");
    }

    #[test]
    fn what_this_lexing_does_not_follow_has_no_shape() {
        for text in [
            "SELECT 1 -- comment",
            "SELECT /* c */ 1",
            "SELECT $1",
            "DO $$ BEGIN END $$",
            "SELECT E'\\'' ",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
            "SELECT '\0'",
            "SELECT 1\0",
            &format!("SELECT {}1", " ".repeat(super::MAX_TEXT)),
        ] {
            assert_eq!(shaped(text.as_bytes()), None, "{text}");
        }
    }

    #[test]
    fn a_text_without_numbers_is_its_own_shape() {
        let text = "SELECT name FROM t WHERE code = 'A1'";
        assert!(
            matches!(shape(text.as_bytes(), &mut Vec::new()), Some(s) if std::ptr::eq(s, text.as_bytes()))
        );
    }

    #[test]
    fn equal_shapes_differ_only_in_numbers() {
        assert_eq!(shaped(b"SELECT 1 FROM t"), shaped(b"SELECT 23 FROM t"));
        assert_ne!(shaped(b"SELECT 1 FROM t"), shaped(b"SELECT 1 FROM u"));
        assert_ne!(shaped(b"SELECT '1' FROM t"), shaped(b"SELECT '2' FROM t"));
        assert_ne!(shaped(b"SELECT 1e5"), shaped(b"SELECT 1e6"));
        assert_ne!(shaped(b"SELECT t1"), shaped(b"SELECT t2"));
    }
}
