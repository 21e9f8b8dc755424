//! Read-ahead and write coalescing on the store's synchronous path: interleaved sequential
//! streams, data integrity, cache coherence with writes and UNMAP, both backends.

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{engines, read_stamp, stamp};
use rtgt_scsi::BlockBackend;
use rtgt_uring::{EngineSelect, Store, StoreConfig, StreamsMode};

const REQ: usize = 64 << 10;

fn streams_store(dir: &std::path::Path, size: u64, engine: EngineSelect, direct: bool) -> Store {
    let mut cfg = StoreConfig {
        engine,
        ..StoreConfig::default()
    };
    cfg.backing.create = true;
    cfg.backing.size = Some(size);
    cfg.backing.direct = direct;
    cfg.streams.mode = StreamsMode::On;
    cfg.streams.cache_bytes = 8 << 20;
    cfg.streams.coalesce_window = Duration::from_millis(20);
    let store = Store::open(dir.join("streams.img"), &cfg).expect("open");
    assert!(store.streams_enabled());
    common::expect_kind(&store, engine);
    store
}

fn fill_pattern(store: &Store, size: u64) {
    let mut buf = vec![0u8; 1 << 20];
    for mb in 0..size >> 20 {
        for (i, block) in buf.chunks_mut(4096).enumerate() {
            stamp(block, (mb << 8) + i as u64, 1);
        }
        store.write_at(mb << 20, &buf, false).expect("fill");
    }
}

#[test]
fn interleaved_sequential_readers_hit_the_read_ahead_cache() {
    for engine in engines() {
        for (direct, dir) in common::modes() {
            let size = 32u64 << 20;
            let store = Arc::new(streams_store(dir.path(), size, engine, direct));
            fill_pattern(&store, size);
            // Four streams read their own 8 MiB region in 64 KiB requests, interleaved.
            let barrier = Arc::new(Barrier::new(4));
            let handles: Vec<_> = (0..4u64)
                .map(|s| {
                    let store = Arc::clone(&store);
                    let barrier = Arc::clone(&barrier);
                    std::thread::spawn(move || {
                        barrier.wait();
                        let mut buf = vec![0u8; REQ];
                        let base = s * (8 << 20);
                        for i in 0..(8 << 20) / REQ as u64 {
                            let off = base + i * REQ as u64;
                            store.read_at(off, &mut buf).expect("read");
                            for (j, block) in buf.chunks(4096).enumerate() {
                                assert_eq!(
                                    read_stamp(block, off / 4096 + j as u64),
                                    Some(1),
                                    "at {off}"
                                );
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("reader");
            }
            let st = store.stats();
            // 128 requests per stream; after detection every 1 MiB chunk costs one miss and
            // serves the next 15 requests.
            assert!(st.readahead_chunks >= 4 * 7, "{st:?}");
            assert!(
                st.readahead_hits >= 4 * 100,
                "{engine:?} direct={direct}: {st:?}"
            );
            assert!(st.readahead_hit_rate() > 0.8, "{st:?}");
            println!(
                "{engine:?} direct={direct}: read-ahead hit rate {:.3}",
                st.readahead_hit_rate()
            );
        }
    }
}

#[test]
fn writes_and_unmap_invalidate_cached_chunks() {
    for engine in engines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let size = 8u64 << 20;
        let store = streams_store(dir.path(), size, engine, false);
        fill_pattern(&store, size);
        let mut buf = vec![0u8; REQ];
        for i in 0..8u64 {
            store.read_at(i * REQ as u64, &mut buf).expect("read");
        }
        assert!(
            store.stats().readahead_hits > 0,
            "the stream is being served from the cache"
        );
        // Overwrite a block inside the cached chunk, then read the stream on.
        let mut block = vec![0u8; 4096];
        stamp(&mut block, 130, 2);
        store.write_at(130 * 4096, &block, false).expect("write");
        store.read_at(8 * REQ as u64, &mut buf).expect("read");
        assert_eq!(
            read_stamp(&buf[8192..12288], 130),
            Some(2),
            "the write is visible"
        );
        store.unmap(9 * REQ as u64, 4096).expect("unmap");
        store.read_at(9 * REQ as u64, &mut buf).expect("read");
        assert!(
            buf[..4096].iter().all(|&b| b == 0),
            "unmapped block reads zeros"
        );
        assert_eq!(
            read_stamp(&buf[4096..8192], (9 * REQ as u64) / 4096 + 1),
            Some(1)
        );
    }
}

#[test]
fn queued_sequential_writers_are_coalesced_and_land_intact() {
    for engine in engines() {
        for (direct, dir) in common::modes() {
            let size = 16u64 << 20;
            let store = Arc::new(streams_store(dir.path(), size, engine, direct));
            // One stream with queue depth 8: eight workers take consecutive 16 KiB pieces.
            let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let pieces = size / 16384;
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let store = Arc::clone(&store);
                    let next = Arc::clone(&next);
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 16384];
                        loop {
                            let piece = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            if piece >= pieces {
                                return;
                            }
                            for (j, block) in buf.chunks_mut(4096).enumerate() {
                                stamp(block, piece * 4 + j as u64, 3);
                            }
                            store
                                .write_at(piece * 16384, &buf, piece % 97 == 0)
                                .expect("write");
                            if piece % 251 == 0 {
                                store.flush().expect("flush while batches are open");
                            }
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("writer");
            }
            store.flush().expect("flush");
            let st = store.stats();
            println!(
                "{engine:?} direct={direct}: {} writes, {} in {} batches ({:.1} per batch)",
                st.writes,
                st.coalesced_writes,
                st.coalesced_batches,
                st.writes_per_batch()
            );
            assert!(
                st.coalesced_batches > 0 && st.coalesced_writes > st.coalesced_batches,
                "{engine:?}: {st:?}"
            );
            let mut buf = vec![0u8; 1 << 20];
            for mb in 0..size >> 20 {
                store.read_at(mb << 20, &mut buf).expect("read");
                for (i, block) in buf.chunks(4096).enumerate() {
                    assert_eq!(
                        read_stamp(block, (mb << 8) + i as u64),
                        Some(3),
                        "{engine:?} direct={direct}"
                    );
                }
            }
        }
    }
}
