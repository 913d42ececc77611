//! Checking an audit trail: every line's MAC, in order, from the first record to the last.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use pgseal_keys::{AUDIT_MAC_LEN, AuditKey, Keyring};

use super::chain::{self, GENESIS};

/// What an intact trail holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Records checked (every line).
    pub records: u64,
    /// Statement events.
    pub statements: u64,
    /// Keyring events (`keys` records: unwraps at start, `pgseal keys` operations).
    pub key_events: u64,
    /// Runs of the writer (`start` records).
    pub starts: u64,
    /// `gap` records, and the events they say were dropped.
    pub gaps: u64,
    /// Events dropped under back-pressure, as the gap records count them.
    pub dropped: u64,
    /// The last record's sequence number.
    pub last_seq: u64,
    /// The last record's MAC (hex): the chain's head, to compare with a copy kept elsewhere.
    pub head: String,
}

/// Why a trail does not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The key a part of the trail was written with is not in the keyring (retired, or another
    /// keyring): that part cannot be checked.
    #[error(
        "line {line}: written with audit key version {version}, which cannot be used: {reason}"
    )]
    KeyUnavailable {
        /// The start record naming the version.
        line: u64,
        /// The key version.
        version: u32,
        /// Why it cannot be used.
        reason: String,
    },
    /// The trail was altered, cut or damaged: the first bad line and what is wrong with it.
    #[error("line {line}: {problem}")]
    Broken {
        /// The first bad line (1-based; 0 for a file with no line at all).
        line: u64,
        /// What is wrong.
        problem: String,
    },
}

impl VerifyError {
    /// The exit status of `pgseal audit verify`: 1 for a broken trail, 2 when it could not be
    /// checked.
    pub fn exit_code(&self) -> u8 {
        match self {
            VerifyError::Broken { .. } => 1,
            VerifyError::Io { .. } | VerifyError::KeyUnavailable { .. } => 2,
        }
    }
}

/// Verifies the trail in `path` with the audit keys of `keyring`.
pub fn verify_file(path: &Path, keyring: &Keyring) -> Result<VerifyReport, VerifyError> {
    let io = |source| VerifyError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    verify_lines(BufReader::new(file), keyring).map_err(|e| match e {
        VerifyError::Io { source, .. } => io(source),
        other => other,
    })
}

/// Verifies a trail read from `input` (see [`verify_file`]).
pub fn verify_lines(
    mut input: impl BufRead,
    keyring: &Keyring,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::default();
    let mut key: Option<AuditKey> = None;
    let mut previous = GENESIS;
    let mut raw = Vec::new();
    let mut number = 0u64;
    loop {
        raw.clear();
        let read = input
            .read_until(b'\n', &mut raw)
            .map_err(|source| VerifyError::Io {
                path: String::new(),
                source,
            })?;
        if read == 0 {
            break;
        }
        number += 1;
        let broken = |problem: &str| VerifyError::Broken {
            line: number,
            problem: problem.to_owned(),
        };
        let line = std::str::from_utf8(&raw)
            .map_err(|_| broken("not UTF-8 text"))?
            .trim_end_matches('\n');
        let (body, mac) = chain::split(line)
            .ok_or_else(|| broken("does not end with a MAC: not an audit record, or cut short"))?;
        let value: serde_json::Value = serde_json::from_str(&body)
            .ok()
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| broken("is not a JSON audit record"))?;
        let seq = value
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| broken("has no sequence number"))?;
        let kind = value
            .get("type")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| broken("has no record type"))?;

        if kind == "start" {
            let version = value
                .get("key_version")
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| broken("start record without a key version"))?;
            key = Some(keyring.audit_key_version(version).map_err(|e| {
                VerifyError::KeyUnavailable {
                    line: number,
                    version,
                    reason: match e {
                        pgseal_keys::Error::UnusableKeyVersion { reason, .. } => reason.to_owned(),
                        other => other.to_string(),
                    },
                }
            })?);
            let new_chain = value.get("chain").and_then(serde_json::Value::as_str) == Some("new");
            match (new_chain, report.records) {
                (true, 0) => {}
                (true, _) => {
                    return Err(broken(
                        "a new chain starts here: the lines before it do not belong to it (lines \
                         removed or files spliced)",
                    ));
                }
                (false, 0) => {
                    return Err(broken(
                        "the chain continues from a record that is not in the file: lines were \
                         removed from the beginning",
                    ));
                }
                (false, _) => {}
            }
            report.starts += 1;
        }
        let Some(key) = &key else {
            return Err(broken("the trail does not begin with a start record"));
        };
        let expected = report.last_seq + 1;
        if report.records == 0 && seq != 1 {
            return Err(broken(&format!(
                "the first record has sequence number {seq}, not 1: lines were removed from the \
                 beginning"
            )));
        }
        if seq != expected {
            return Err(broken(&format!(
                "sequence number {seq} where {expected} was expected: a line was removed before \
                 it, or lines were reordered"
            )));
        }
        if !key.verify(&[&previous, body.as_bytes()], &mac) {
            return Err(broken(
                "its MAC does not match: the line was edited (or written with another keyring)",
            ));
        }
        match kind {
            "statement" => report.statements += 1,
            "keys" => report.key_events += 1,
            "gap" => {
                report.gaps += 1;
                report.dropped += value
                    .get("dropped")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0);
            }
            _ => {}
        }
        previous = mac;
        report.records += 1;
        report.last_seq = seq;
    }
    if report.records == 0 {
        return Err(VerifyError::Broken {
            line: 0,
            problem: "the file holds no audit record".to_owned(),
        });
    }
    report.head = chain::hex(&previous[..AUDIT_MAC_LEN]);
    Ok(report)
}
