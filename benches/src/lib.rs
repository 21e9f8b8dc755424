//! Criterion benchmarks across the rtgt crates live in `benches/`.
