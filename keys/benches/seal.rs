//! Hot-path costs of `pgseal-keys`: sealing and opening 16-byte and 1 KiB values in each mode,
//! NIR and digit tokens, pseudonyms, and handing out a cached sealer.
//!
//! Run with `cargo bench -p pgseal-keys --bench seal`. Targets per core: AES-GCM-SIV at
//! 1 GB/s or more on 1 KiB values, a 16-byte deterministic seal under 1 µs, a NIR token under
//! 5 µs.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use pgseal_keys::{Domain, KeyringFile, Mode};

fn envelopes(c: &mut Criterion) {
    let ring = KeyringFile::generate().unwrap().into_keyring();
    let sealer = ring.sealer(&Domain::column("public", "patients", "notes").unwrap());
    let mut group = c.benchmark_group("envelope");
    for size in [16usize, 1024] {
        let plaintext: Vec<u8> = (0..size).map(|i| i as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        for (name, mode) in [
            ("randomized", Mode::Randomized),
            ("deterministic", Mode::Deterministic),
        ] {
            group.bench_with_input(
                BenchmarkId::new(format!("seal_{name}"), size),
                &plaintext,
                |b, pt| b.iter(|| sealer.seal(mode, black_box(pt)).unwrap()),
            );
            let sealed = sealer.seal(mode, &plaintext).unwrap();
            group.bench_with_input(
                BenchmarkId::new(format!("open_{name}"), size),
                sealed.as_bytes(),
                |b, env| b.iter(|| sealer.open(black_box(env)).unwrap()),
            );
        }
        let armored = sealer.seal_deterministic(&plaintext).unwrap().to_armored();
        group.bench_with_input(
            BenchmarkId::new("seal_deterministic_armored", size),
            &plaintext,
            |b, pt| {
                b.iter(|| {
                    sealer
                        .seal_deterministic(black_box(pt))
                        .unwrap()
                        .to_armored()
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("open_armored", size),
            armored.as_str(),
            |b, text| b.iter(|| sealer.open_armored(black_box(text)).unwrap()),
        );
    }
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let ring = KeyringFile::generate().unwrap().into_keyring();
    let sealer = ring.sealer(&Domain::column("public", "patients", "nir").unwrap());
    let mut group = c.benchmark_group("token");
    let nir = "255081416802538";
    let token = sealer.tokenize_nir(nir).unwrap();
    group.bench_function("nir_tokenize", |b| {
        b.iter(|| sealer.tokenize_nir(black_box(nir)).unwrap())
    });
    group.bench_function("nir_detokenize", |b| {
        b.iter(|| sealer.detokenize_nir(black_box(&token)).unwrap())
    });
    group.bench_function("digits_16", |b| {
        b.iter(|| {
            sealer
                .tokenize_digits(black_box("4970101234567890"))
                .unwrap()
        })
    });
    group.bench_function("alnum_12", |b| {
        b.iter(|| sealer.tokenize_alnum(black_box("aZ09xYbC12Qr")).unwrap())
    });
    group.bench_function("pseudonym_16", |b| {
        b.iter(|| sealer.pseudonym(black_box(b"1850675123456789")))
    });
    group.finish();
}

fn keyring(c: &mut Criterion) {
    let ring = KeyringFile::generate().unwrap().into_keyring();
    let domain = Domain::column("public", "patients", "nir").unwrap();
    ring.sealer(&domain);
    c.bench_function("keyring/cached_sealer", |b| {
        b.iter(|| ring.sealer(black_box(&domain)))
    });
}

/// The benchmark groups (inside a private module, as `criterion_group!` makes a `pub fn`).
mod groups {
    use super::{envelopes, keyring, tokens};
    criterion::criterion_group!(benches, envelopes, tokens, keyring);
}
criterion_main!(groups::benches);
