//! `pgseal-keys`: turns a root secret into everything pgseal needs to seal a value and open it
//! again — keyring, HKDF derivation, AES-256-GCM-SIV envelopes, FF1 tokens and pseudonyms.
//!
//! It knows nothing of SQL or of the PostgreSQL wire protocol.
