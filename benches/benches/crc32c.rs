//! CRC32C digest throughput (RFC 7143 §7.8) through rtgt-pdu's digest
//! functions, which use the `crc32c` crate's SSE4.2 path on x86-64.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use rtgt_pdu::{DataDigest, crc32c, data_digest};

fn crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [512usize, 4096, 65536] {
        let buf: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("crc32c", size), &buf, |b, buf| {
            b.iter(|| crc32c(black_box(buf)));
        });
        g.bench_with_input(
            BenchmarkId::new("data_digest_incremental_4k_chunks", size),
            &buf,
            |b, buf| {
                b.iter(|| {
                    let mut d = DataDigest::new();
                    for chunk in black_box(buf).chunks(4096) {
                        d.update(chunk);
                    }
                    d.finish()
                });
            },
        );
    }
    let odd: Vec<u8> = vec![0xa5; 4095];
    g.throughput(Throughput::Bytes(4095));
    g.bench_function("data_digest_padded/4095", |b| {
        b.iter(|| data_digest(black_box(&odd)));
    });
    g.finish();
}

/// The generated group function stays private to this bench.
mod group {
    criterion::criterion_group!(benches, super::crc);
}
criterion_main!(group::benches);
