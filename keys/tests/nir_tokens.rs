//! NIR tokens against an independent, application-style validator: 100,000 random NIRs give
//! valid, distinct NIR tokens that detokenize back.

use std::collections::HashSet;

use pgseal_keys::{Domain, Error, KeyringFile, NirError, Sealer, validate_nir};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use regex::Regex;

/// What a typical application checks: shape by regular expression (the widely used NIR
/// pattern), then the control key with 2A → 19 and 2B → 18. Written independently of the crate.
struct AppValidator {
    shape: Regex,
    calendar_month: Regex,
}

impl AppValidator {
    fn new() -> Self {
        AppValidator {
            shape: Regex::new(
                r"^[1-478][0-9]{2}(0[1-9]|1[0-2]|20|3[0-9]|4[0-2]|[5-9][0-9])((0[1-9]|[1-8][0-9]|9[0-6]|2[AB]|99)(00[1-9]|0[1-9][0-9]|[1-8][0-9]{2}|9[0-8][0-9]|990)|9[78][0-9](0[1-9]|[1-8][0-9]|90))(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})(0[1-9]|[1-8][0-9]|9[0-7])$",
            )
            .unwrap(),
            calendar_month: Regex::new(r"^.{3}(0[1-9]|1[0-2])").unwrap(),
        }
    }

    fn is_valid(&self, nir: &str) -> bool {
        if !self.shape.is_match(nir) {
            return false;
        }
        let body: u64 = nir[..13]
            .replace("2A", "19")
            .replace("2B", "18")
            .parse()
            .unwrap();
        let key: u64 = nir[13..].parse().unwrap();
        key == 97 - body % 97
    }

    fn has_calendar_month(&self, nir: &str) -> bool {
        self.calendar_month.is_match(nir)
    }
}

/// A random well-formed NIR, built field by field (not through the crate).
fn random_nir(rng: &mut StdRng) -> String {
    let sex = *[b'1', b'2', b'3', b'4', b'7', b'8']
        .get(rng.random_range(0..6))
        .unwrap() as char;
    let year = rng.random_range(0..100);
    let month = if rng.random_bool(0.8) {
        rng.random_range(1..=12)
    } else {
        let pseudo: Vec<u32> = std::iter::once(20).chain(30..=42).chain(50..=99).collect();
        pseudo[rng.random_range(0..pseudo.len())]
    };
    let place = match rng.random_range(0..10) {
        0 => format!("2A{:03}", rng.random_range(1..=990)),
        1 => format!("2B{:03}", rng.random_range(1..=990)),
        2 => format!("99{:03}", rng.random_range(1..=990)),
        3 => format!(
            "{}{:02}",
            rng.random_range(970..=989),
            rng.random_range(1..=90)
        ),
        _ => format!(
            "{:02}{:03}",
            rng.random_range(1..=96),
            rng.random_range(1..=990)
        ),
    };
    let body = format!(
        "{sex}{year:02}{month:02}{place}{:03}",
        rng.random_range(1..=999)
    );
    let n: u64 = body
        .replace("2A", "19")
        .replace("2B", "18")
        .parse()
        .unwrap();
    format!("{body}{:02}", 97 - n % 97)
}

fn sealer() -> Sealer {
    KeyringFile::generate()
        .unwrap()
        .into_keyring()
        .sealer(&Domain::column("public", "patients", "nir").unwrap())
}

#[test]
fn hundred_thousand_random_nirs_give_valid_tokens_that_detokenize_back() {
    let app = AppValidator::new();
    let sealer = sealer();
    // Two halves on two threads keep the test quick in debug builds.
    let halves: Vec<Vec<(String, String)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = [0x5EA1_u64, 0x5EA2]
            .into_iter()
            .map(|seed| {
                let (app, sealer) = (&app, &sealer);
                scope.spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed);
                    (0..50_000)
                        .map(|_| {
                            let nir = random_nir(&mut rng);
                            assert!(app.is_valid(&nir), "generator produced {nir}");
                            let token = sealer.tokenize_nir(&nir).unwrap();
                            assert!(app.is_valid(&token), "{nir} -> invalid token {token}");
                            assert_eq!(validate_nir(&token), Ok(()));
                            assert_eq!(token.as_bytes()[0], nir.as_bytes()[0], "sex preserved");
                            assert_eq!(
                                app.has_calendar_month(&token),
                                app.has_calendar_month(&nir)
                            );
                            assert_eq!(sealer.detokenize_nir(&token).unwrap(), nir);
                            (nir, token)
                        })
                        .collect()
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let pairs: Vec<&(String, String)> = halves.iter().flatten().collect();
    assert_eq!(pairs.len(), 100_000);
    let mut inputs = HashSet::new();
    let mut tokens = HashSet::new();
    for (nir, token) in &pairs {
        if inputs.insert(nir) {
            assert!(tokens.insert(token), "two NIRs gave the same token");
        }
    }
    // A permutation of ~10^11 values maps a NIR to itself essentially never.
    let unchanged = pairs.iter().filter(|(nir, token)| nir == token).count();
    assert!(unchanged <= 1, "{unchanged} NIRs tokenized to themselves");
}

#[test]
fn tokens_are_deterministic_per_domain_and_hide_the_fields() {
    let ring = KeyringFile::generate().unwrap().into_keyring();
    let a = ring.sealer(&Domain::column("public", "patients", "nir").unwrap());
    let b = ring.sealer(&Domain::column("public", "staff", "nir").unwrap());
    let nir = "255081416802538";
    assert_eq!(a.tokenize_nir(nir).unwrap(), a.tokenize_nir(nir).unwrap());
    assert_ne!(a.tokenize_nir(nir).unwrap(), b.tokenize_nir(nir).unwrap());
    // Year, month, department and commune all vary across tokens of similar NIRs.
    let mut rng = StdRng::seed_from_u64(7);
    let tokens: Vec<String> = (0..200)
        .map(|_| {
            let body = format!("2550814168{:03}", rng.random_range(1..=999));
            let n: u64 = body.parse().unwrap();
            a.tokenize_nir(&format!("{body}{:02}", 97 - n % 97))
                .unwrap()
        })
        .collect();
    for field in [1..3, 3..5, 5..7, 7..10] {
        let distinct: HashSet<&str> = tokens.iter().map(|t| &t[field.clone()]).collect();
        assert!(distinct.len() > 5, "field {field:?} barely varies");
    }
}

#[test]
fn malformed_nirs_get_a_clear_error_not_a_token() {
    let sealer = sealer();
    for (input, want) in [
        ("2550814168025", NirError::Length(13)),
        ("255081416802539", NirError::ControlKey),
        ("255131416802538", NirError::Month),
        ("955081416802538", NirError::Sex),
        ("2 55 08 14 168 025 38", NirError::Length(21)),
    ] {
        let err = sealer.tokenize_nir(input).unwrap_err();
        assert!(
            matches!(err, Error::InvalidNir(e) if e == want),
            "{input}: {err}"
        );
        assert!(
            !err.to_string().contains("2550814"),
            "error echoes the input: {err}"
        );
        assert!(sealer.detokenize_nir(input).is_err());
    }
}

fn nir_strategy() -> impl Strategy<Value = String> {
    any::<u64>().prop_map(|seed| random_nir(&mut StdRng::seed_from_u64(seed)))
}

proptest! {
    #[test]
    fn nir_tokens_round_trip(nir in nir_strategy()) {
        let sealer = sealer();
        let token = sealer.tokenize_nir(&nir).unwrap();
        prop_assert_eq!(validate_nir(&token), Ok(()));
        prop_assert_eq!(sealer.detokenize_nir(&token).unwrap(), nir);
    }
}
