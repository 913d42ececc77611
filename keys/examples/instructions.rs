//! Runs one keys operation a given number of times, for `bench/keys_instructions.sh` to count
//! its instructions under callgrind: instruction counts repeat exactly from run to run, where
//! the 2-core VM's timings drift by a quarter, so they show what a change to the hot path costs.
//!
//! ```text
//! cargo run --release -p pgseal-keys --example instructions -- OPERATION COUNT
//! ```
//!
//! OPERATION: open16, open1k (binary envelopes), armored16, armored1k (`pgs1:` text), seal16,
//! det16 (randomized / deterministic seal of 16 bytes), nir, unnir (NIR token and back).

use pgseal_keys::{Domain, Keyring, Mode, RootKey};

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(operation), Some(count)) = (args.next(), args.next()) else {
        eprintln!("usage: instructions OPERATION COUNT");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("COUNT is a number");
    let key = RootKey::from_bytes([0x5e; 32]).to_base64();
    let ring = Keyring::from_toml_str(&format!(
        "format = 1\n[[version]]\nnumber = 1\nstate = \"active\"\n\
         created = \"2025-01-01T00:00:00Z\"\nkey = \"{}\"\n",
        &*key
    ))
    .expect("a valid keyring");
    let sealer = ring.sealer(&Domain::column("public", "patients", "x").expect("a domain"));
    let (small, large) = ([7u8; 16], [7u8; 1024]);
    let sealed_small = sealer.seal(Mode::Randomized, &small).expect("seal");
    let sealed_large = sealer.seal(Mode::Randomized, &large).expect("seal");
    let (armored_small, armored_large) = (sealed_small.to_armored(), sealed_large.to_armored());
    let mut total = 0usize;
    for _ in 0..count {
        total += match operation.as_str() {
            "open16" => sealer.open(sealed_small.as_bytes()).map(|p| p.len()),
            "open1k" => sealer.open(sealed_large.as_bytes()).map(|p| p.len()),
            "armored16" => sealer.open_armored(&armored_small).map(|p| p.len()),
            "armored1k" => sealer.open_armored(&armored_large).map(|p| p.len()),
            "seal16" => sealer
                .seal(Mode::Randomized, &small)
                .map(|s| s.as_bytes().len()),
            "det16" => sealer
                .seal(Mode::Deterministic, &small)
                .map(|s| s.as_bytes().len()),
            "nir" => sealer.tokenize_nir("185057800608491").map(|t| t.len()),
            "unnir" => sealer.detokenize_nir("104022856519128").map(|t| t.len()),
            other => {
                eprintln!("unknown operation {other}");
                std::process::exit(2);
            }
        }
        .expect("the operation succeeds");
    }
    std::hint::black_box(total);
}
