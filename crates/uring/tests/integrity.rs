//! Data integrity under concurrency, FUA/flush, punch/zero, allocation map, EOF — for both
//! backends (io_uring and the thread-pool fallback), buffered and O_DIRECT.

mod common;

use std::sync::Arc;

use common::{engines, modes, open_store, open_store_with, read_stamp, stamp};
use rtgt_scsi::{AllocationExtent, BackendError, BlockBackend, Provisioning};
use rtgt_uring::{Completion, Op, StoreConfig, SubmitPolicy};

const BS: usize = 4096;

/// A small deterministic generator (xorshift) so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn concurrent_sync_io_keeps_every_stamp() {
    const BLOCKS: u64 = 2048;
    const THREADS: u64 = 8;
    for engine in engines() {
        for (direct, dir) in modes() {
            let store = Arc::new(open_store(
                dir.path(),
                "sync.img",
                BLOCKS * BS as u64,
                engine,
                direct,
            ));
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let store = Arc::clone(&store);
                    std::thread::spawn(move || {
                        // Each thread owns the blocks with lba % THREADS == t.
                        let mut generation = vec![0u64; (BLOCKS / THREADS) as usize];
                        let mut rng = Rng(0x9E37_79B9 + t);
                        let mut buf = vec![0u8; BS];
                        for step in 0..600u64 {
                            let slot = rng.below(BLOCKS / THREADS);
                            let lba = slot * THREADS + t;
                            if rng.below(3) == 0 {
                                store.read_at(lba * BS as u64, &mut buf).expect("read");
                                assert_eq!(
                                    read_stamp(&buf, lba),
                                    Some(generation[slot as usize]),
                                    "lba {lba}"
                                );
                            } else {
                                generation[slot as usize] = step + 1;
                                stamp(&mut buf, lba, step + 1);
                                store
                                    .write_at(lba * BS as u64, &buf, step % 7 == 0)
                                    .expect("write");
                            }
                        }
                        generation
                    })
                })
                .collect();
            let gens: Vec<Vec<u64>> = handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect();
            store.flush().expect("flush");
            let mut buf = vec![0u8; BS];
            for lba in 0..BLOCKS {
                store.read_at(lba * BS as u64, &mut buf).expect("read");
                let want = gens[(lba % THREADS) as usize][(lba / THREADS) as usize];
                assert_eq!(
                    read_stamp(&buf, lba),
                    Some(want),
                    "{engine:?} direct={direct} lba {lba}"
                );
            }
            let stats = store.stats();
            assert!(stats.fua_writes > 0 && stats.writes > stats.fua_writes);
            assert_eq!(stats.errors, 0);
        }
    }
}

#[test]
fn queue_with_many_in_flight_random_io_verifies() {
    for engine in engines() {
        for (direct, dir) in modes() {
            for submit in [
                SubmitPolicy::Auto,
                SubmitPolicy::Immediate,
                SubmitPolicy::AtWait,
            ] {
                let name = format!("async-{submit:?}.img");
                let store = open_store_with(
                    dir.path(),
                    &name,
                    RANDOM_BLOCKS * BS as u64,
                    engine,
                    direct,
                    |cfg| cfg.submit = submit,
                );
                random_io_verifies(&store, &format!("{engine:?} direct={direct} {submit:?}"));
            }
        }
    }
}

const RANDOM_BLOCKS: u64 = 4096;

/// Thousands of random stamped reads and writes, many in flight, each read checked against
/// the last completed write; then everything checked again through the synchronous path.
fn random_io_verifies(store: &rtgt_uring::Store, what: &str) {
    const BLOCKS: u64 = RANDOM_BLOCKS;
    let mut q = store.queue().expect("queue");
    let depth = q.capacity();
    let mut generation = vec![0u64; BLOCKS as usize];
    let mut busy = vec![false; BLOCKS as usize];
    let mut pending_gen = vec![0u64; BLOCKS as usize];
    let mut rng = Rng(42);
    let mut free_bufs: Vec<_> = (0..depth).map(|_| q.alloc_buf(BS)).collect();
    let mut done: Vec<Completion> = Vec::new();
    let mut issued = 0u64;
    let mut max_in_flight = 0;
    let total = 6000u64;
    let mut completed = 0u64;
    while completed < total {
        while issued < total && q.in_flight() < depth {
            let lba = rng.below(BLOCKS);
            if busy[lba as usize] {
                continue;
            }
            let Some(mut buf) = free_bufs.pop() else {
                break;
            };
            busy[lba as usize] = true;
            let is_write = rng.below(2) == 0;
            let ud = lba << 1 | u64::from(is_write);
            let op = if is_write {
                issued += 1;
                pending_gen[lba as usize] = issued;
                stamp(buf.as_mut_slice(), lba, issued);
                Op::Write {
                    offset: lba * BS as u64,
                    buf,
                    fua: issued % 11 == 0,
                }
            } else {
                issued += 1;
                Op::Read {
                    offset: lba * BS as u64,
                    buf,
                }
            };
            q.push(op, ud).expect("room");
        }
        max_in_flight = max_in_flight.max(q.in_flight());
        done.clear();
        q.wait(1, &mut done).expect("wait");
        for c in done.drain(..) {
            completed += 1;
            let lba = c.user_data >> 1;
            let buf = c.buf.expect("buffer back");
            assert_eq!(c.result, Ok(BS), "{what} lba {lba}");
            if c.user_data & 1 == 1 {
                generation[lba as usize] = pending_gen[lba as usize];
            } else {
                assert_eq!(
                    read_stamp(buf.as_slice(), lba),
                    Some(generation[lba as usize]),
                    "{what} lba {lba}"
                );
            }
            busy[lba as usize] = false;
            free_bufs.push(buf);
        }
    }
    assert!(
        max_in_flight > depth / 2,
        "{what}: queue kept {max_in_flight} of {depth} in flight"
    );
    // Flush through the queue, then verify everything with the synchronous path.
    q.push(Op::Flush, 7).expect("room");
    done.clear();
    q.wait(1, &mut done).expect("flush");
    assert_eq!(done[0].result, Ok(0));
    let mut buf = vec![0u8; BS];
    for lba in 0..BLOCKS {
        store.read_at(lba * BS as u64, &mut buf).expect("read");
        assert_eq!(
            read_stamp(&buf, lba),
            Some(generation[lba as usize]),
            "{what}"
        );
    }
}

#[test]
fn submit_policy_decides_when_pushed_operations_start() {
    for engine in engines() {
        for (direct, dir) in modes() {
            for submit in [
                SubmitPolicy::Auto,
                SubmitPolicy::Immediate,
                SubmitPolicy::AtWait,
            ] {
                let what = format!("{engine:?} direct={direct} {submit:?}");
                let name = format!("submit-{submit:?}.img");
                let store = open_store_with(dir.path(), &name, 1 << 20, engine, direct, |cfg| {
                    cfg.submit = submit;
                });
                // What the store tells an engine that submits its operations on its own ring.
                assert_eq!(
                    store.submits_immediately(),
                    submit.immediate(direct),
                    "{what}"
                );
                let mut q = store.queue().expect("queue");
                let mut buf = q.alloc_buf(BS);
                stamp(buf.as_mut_slice(), 9, 3);
                q.push(
                    Op::Write {
                        offset: 9 * BS as u64,
                        buf,
                        fua: false,
                    },
                    1,
                )
                .expect("room");
                let started = submit.immediate(direct);
                assert_eq!(q.unsubmitted(), usize::from(!started), "{what}");
                q.submit().expect("submit");
                assert_eq!(q.unsubmitted(), 0, "{what}");
                let mut done = Vec::new();
                q.wait(1, &mut done).expect("wait");
                assert_eq!(done.len(), 1, "{what}");
                assert_eq!(done[0].result, Ok(BS), "{what}");
                let mut back = vec![0u8; BS];
                store.read_at(9 * BS as u64, &mut back).expect("read");
                assert_eq!(read_stamp(&back, 9), Some(3), "{what}");
            }
        }
    }
}

#[test]
fn unaligned_buffers_bounce_under_o_direct_only() {
    for engine in engines() {
        for (direct, dir) in modes() {
            let store = open_store(dir.path(), "bounce.img", 1 << 20, engine, direct);
            let mut backing = vec![0u8; 3 * BS + 1];
            let unaligned = if backing.as_ptr() as usize % 512 == 0 {
                &mut backing[1..=2 * BS]
            } else {
                &mut backing[..2 * BS]
            };
            for (i, b) in unaligned.iter_mut().enumerate() {
                *b = (i % 251) as u8;
            }
            store
                .write_at(8 * BS as u64, unaligned, false)
                .expect("write");
            let mut back = vec![0u8; 2 * BS + 1];
            let back_unaligned = if back.as_ptr() as usize % 512 == 0 {
                &mut back[1..]
            } else {
                &mut back[..2 * BS]
            };
            store.read_at(8 * BS as u64, back_unaligned).expect("read");
            assert!(
                back_unaligned
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i % 251) as u8)
            );
            // Sub-block offset and length: read-modify-write under O_DIRECT.
            store
                .write_at(8 * BS as u64 + 100, &[0xEE; 300], false)
                .expect("rmw write");
            let mut block = vec![0u8; BS];
            store.read_at(8 * BS as u64, &mut block).expect("read");
            assert!(block[100..400].iter().all(|&b| b == 0xEE));
            assert!(
                block[..100]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == (i % 251) as u8)
            );
            assert!(
                block[400..]
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == ((i + 400) % 251) as u8)
            );
            let bounced = store.stats().bounced_ios;
            if direct {
                assert!(bounced >= 3, "{engine:?}: {bounced} bounces");
            } else {
                assert_eq!(bounced, 0, "buffered I/O never bounces");
            }
        }
    }
}

#[test]
fn fua_write_through_and_flush_paths() {
    for engine in engines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(dir.path(), "fua.img", 1 << 20, engine, false);
        assert!(
            store.capabilities().write_cache_enabled,
            "write-back mode reports WCE=1"
        );
        let data = vec![0x5Au8; 8192];
        store.write_at(0, &data, true).expect("fua write");
        store.flush().expect("flush");
        let mut q = store.queue().expect("queue");
        let mut buf = q.alloc_buf(4096);
        buf.as_mut_slice().fill(0x6B);
        q.push(
            Op::Write {
                offset: 8192,
                buf,
                fua: true,
            },
            1,
        )
        .expect("room");
        q.push(Op::Flush, 2).expect("room");
        let mut done = Vec::new();
        while done.len() < 2 {
            q.wait(2, &mut done).expect("wait");
        }
        assert!(done.iter().all(|c| c.result.is_ok()));
        let stats = store.stats();
        assert_eq!(stats.fua_writes, 2);
        assert_eq!(stats.flushes, 2);
        let mut back = vec![0u8; 12288];
        store.read_at(0, &mut back).expect("read");
        assert!(back[..8192].iter().all(|&b| b == 0x5A) && back[8192..].iter().all(|&b| b == 0x6B));

        // Write-through: O_DSYNC, WCE=0, same data path.
        let mut cfg = StoreConfig {
            engine,
            ..StoreConfig::default()
        };
        cfg.backing.write_through = true;
        let wt = rtgt_uring::Store::open(dir.path().join("fua.img"), &cfg).expect("open wt");
        assert!(!wt.capabilities().write_cache_enabled);
        wt.write_at(4096, &[1u8; 4096], false).expect("write");
        wt.read_at(0, &mut back[..8192]).expect("read");
        assert!(
            back[..4096].iter().all(|&b| b == 0x5A) && back[4096..8192].iter().all(|&b| b == 1)
        );
    }
}

#[test]
fn punch_and_zero_read_back_zeros() {
    for engine in engines() {
        for (direct, dir) in modes() {
            let store = open_store(dir.path(), "punch.img", 4 << 20, engine, direct);
            let caps = store.capabilities();
            assert!(caps.supports_unmap && caps.unmap_reads_zeroes && caps.supports_write_zeroes);
            let data = vec![0xC3u8; 4 << 20];
            store.write_at(0, &data, false).expect("fill");
            store.flush().expect("flush");
            store.unmap(1 << 20, 1 << 20).expect("unmap");
            store.write_zeroes(3 << 20, 256 << 10).expect("zero");
            let mut back = vec![0xFFu8; 4 << 20];
            store.read_at(0, &mut back).expect("read");
            let zero = |r: std::ops::Range<usize>| back[r].iter().all(|&b| b == 0);
            let filled = |r: std::ops::Range<usize>| back[r].iter().all(|&b| b == 0xC3);
            assert!(filled(0..1 << 20) && zero(1 << 20..2 << 20) && filled(2 << 20..3 << 20));
            assert!(
                zero(3 << 20..(3 << 20) + (256 << 10)) && filled((3 << 20) + (256 << 10)..4 << 20)
            );
            let hole = store.allocation(1 << 20, 4 << 20).expect("allocation");
            assert_eq!(
                hole,
                AllocationExtent {
                    status: Provisioning::Deallocated,
                    len: 1 << 20
                },
                "{engine:?}"
            );
            let mapped = store.allocation(0, 4 << 20).expect("allocation");
            assert_eq!(
                mapped,
                AllocationExtent {
                    status: Provisioning::Mapped,
                    len: 1 << 20
                }
            );

            // The same through a queue.
            let mut q = store.queue().expect("queue");
            q.push(
                Op::Unmap {
                    offset: 0,
                    len: 4096,
                },
                1,
            )
            .expect("room");
            q.push(
                Op::WriteZeroes {
                    offset: 8192,
                    len: 4096,
                },
                2,
            )
            .expect("room");
            q.push(
                Op::Unmap {
                    offset: 4 << 20,
                    len: 4096,
                },
                3,
            )
            .expect("room");
            let mut done = Vec::new();
            while done.len() < 3 {
                q.wait(3, &mut done).expect("wait");
            }
            done.sort_by_key(|c| c.user_data);
            assert_eq!(done[0].result, Ok(4096));
            assert_eq!(done[1].result, Ok(4096));
            assert!(
                matches!(done[2].result, Err(BackendError::Other(_))),
                "beyond the end"
            );
            store.read_at(0, &mut back[..12288]).expect("read");
            assert!(
                back[..4096].iter().all(|&b| b == 0) && back[4096..8192].iter().all(|&b| b == 0xC3)
            );
            assert!(back[8192..12288].iter().all(|&b| b == 0));
            assert_eq!(store.stats().unmaps, 2);
        }
    }
}

#[test]
fn allocation_map_of_a_sparse_file() {
    for engine in engines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open_store(dir.path(), "sparse.img", 16 << 20, engine, false);
        // Data islands at 2 MiB (64 KiB) and 9 MiB..10 MiB.
        store
            .write_at(2 << 20, &vec![1u8; 64 << 10], false)
            .expect("write");
        store
            .write_at(9 << 20, &vec![2u8; 1 << 20], false)
            .expect("write");
        store.flush().expect("flush");
        let mut map = Vec::new();
        let mut offset = 0;
        while offset < 16 << 20 {
            let ext = store
                .allocation(offset, (16 << 20) - offset)
                .expect("allocation");
            assert!(ext.len >= 512 && ext.len % 512 == 0);
            map.push((offset, ext.status, ext.len));
            offset += ext.len;
        }
        let d = Provisioning::Deallocated;
        let m = Provisioning::Mapped;
        assert_eq!(
            map,
            vec![
                (0, d, 2 << 20),
                (2 << 20, m, 64 << 10),
                ((2 << 20) + (64 << 10), d, (7 << 20) - (64 << 10)),
                (9 << 20, m, 1 << 20),
                (10 << 20, d, 6 << 20),
            ],
            "{engine:?}"
        );
        assert!(matches!(
            store.allocation(16 << 20, 512),
            Err(BackendError::Other(_))
        ));
    }
}

#[test]
fn short_read_at_eof_zero_fills_inside_the_lu() {
    for engine in engines() {
        for (direct, dir) in modes() {
            let store = open_store(dir.path(), "eof.img", 1 << 20, engine, direct);
            store
                .write_at(0, &vec![9u8; 64 << 10], false)
                .expect("write");
            store.flush().expect("flush");
            // Somebody truncates the file behind the store's back, mid-block.
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("eof.img"))
                .expect("open");
            file.set_len(10_000).expect("truncate");
            let mut buf = vec![0xFFu8; 16384];
            store.read_at(0, &mut buf).expect("sync read across EOF");
            assert!(buf[..10_000].iter().all(|&b| b == 9) && buf[10_000..].iter().all(|&b| b == 0));
            store
                .read_at(512 << 10, &mut buf)
                .expect("sync read past EOF");
            assert!(buf.iter().all(|&b| b == 0));

            let mut q = store.queue().expect("queue");
            let mut qbuf = q.alloc_buf(8192);
            qbuf.as_mut_slice().fill(0xFF);
            q.push(
                Op::Read {
                    offset: 8192,
                    buf: qbuf,
                },
                5,
            )
            .expect("room");
            let mut done = Vec::new();
            q.wait(1, &mut done).expect("wait");
            assert_eq!(done[0].result, Ok(8192));
            let back = done[0].buf.as_ref().expect("buf");
            assert!(back.as_slice()[..10_000 - 8192].iter().all(|&b| b == 9));
            assert!(back.as_slice()[10_000 - 8192..].iter().all(|&b| b == 0));
            assert!(
                store.stats().eof_zero_fills >= 3,
                "{engine:?} direct={direct}"
            );
            // Past the LU's end is an error, not zeros.
            assert!(matches!(
                store.read_at(1 << 20, &mut buf[..512]),
                Err(BackendError::Other(_))
            ));
        }
    }
}

#[test]
fn read_only_store_refuses_writes() {
    for engine in engines() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ro.img"), vec![3u8; 65536]).expect("write");
        let mut cfg = StoreConfig {
            engine,
            ..StoreConfig::default()
        };
        cfg.backing.read_only = true;
        let store = rtgt_uring::Store::open(dir.path().join("ro.img"), &cfg).expect("open");
        assert!(store.capabilities().read_only);
        assert_eq!(
            store.write_at(0, &[0u8; 512], false),
            Err(BackendError::WriteProtected)
        );
        assert_eq!(store.unmap(0, 512), Err(BackendError::WriteProtected));
        let mut q = store.queue().expect("queue");
        let buf = q.alloc_buf(512);
        q.push(
            Op::Write {
                offset: 0,
                buf,
                fua: false,
            },
            1,
        )
        .expect("room");
        let mut done = Vec::new();
        q.wait(1, &mut done).expect("wait");
        assert_eq!(done[0].result, Err(BackendError::WriteProtected));
        assert!(done[0].buf.is_some(), "the buffer comes back even on error");
        let mut back = [0u8; 512];
        store.read_at(512, &mut back).expect("read");
        assert_eq!(back, [3u8; 512]);
    }
}

#[test]
fn queue_full_hands_the_operation_back() {
    for engine in engines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = StoreConfig {
            engine,
            ..StoreConfig::default()
        };
        cfg.queue_depth = 2;
        cfg.backing.create = true;
        cfg.backing.size = Some(1 << 20);
        let store = rtgt_uring::Store::open(dir.path().join("qf.img"), &cfg).expect("open");
        let mut q = store.queue().expect("queue");
        assert_eq!(q.capacity(), 2);
        q.push(Op::Flush, 1).expect("room");
        q.push(Op::Flush, 2).expect("room");
        let back = q.push(Op::Flush, 3).expect_err("full");
        assert!(matches!(back.0, Op::Flush));
        let mut done = Vec::new();
        while done.len() < 2 {
            q.wait(2, &mut done).expect("wait");
        }
        q.push(Op::Flush, 3).expect("room again");
        q.wait(1, &mut done).expect("wait");
        assert_eq!(done.len(), 3);
    }
}

#[test]
fn registered_buffers_round_trip_on_the_uring_queue() {
    if !engines().contains(&rtgt_uring::EngineSelect::Uring) {
        return;
    }
    for (direct, dir) in modes() {
        let store = open_store(
            dir.path(),
            "fixed.img",
            1 << 20,
            rtgt_uring::EngineSelect::Uring,
            direct,
        );
        let Ok(rtgt_uring::IoQueue::Uring(mut q)) = store.queue() else {
            // The environment forced the fallback.
            return;
        };
        let mut bufs = q.register_buffers(4, BS).expect("register");
        assert!(q.register_buffers(1, BS).is_err(), "once per queue");
        assert_eq!(
            bufs.iter()
                .map(rtgt_uring::AlignedBuf::fixed_index)
                .collect::<Vec<_>>(),
            vec![Some(0), Some(1), Some(2), Some(3)]
        );
        for (i, buf) in bufs.iter_mut().enumerate() {
            stamp(buf.as_mut_slice(), i as u64, 5);
        }
        for (i, buf) in bufs.drain(..).enumerate() {
            q.push(
                Op::Write {
                    offset: i as u64 * BS as u64,
                    buf,
                    fua: i == 0,
                },
                i as u64,
            )
            .expect("room");
        }
        let mut done = Vec::new();
        while done.len() < 4 {
            q.wait(4, &mut done).expect("wait");
        }
        let mut bufs: Vec<_> = done
            .drain(..)
            .map(|c| {
                assert_eq!(c.result, Ok(BS));
                let mut b = c.buf.expect("buf");
                b.as_mut_slice().fill(0);
                b
            })
            .collect();
        // Read back in reverse order into the same registered buffers.
        for (i, buf) in bufs.drain(..).enumerate() {
            q.push(
                Op::Read {
                    offset: (3 - i as u64) * BS as u64,
                    buf,
                },
                3 - i as u64,
            )
            .expect("room");
        }
        while done.len() < 4 {
            q.wait(4, &mut done).expect("wait");
        }
        for c in done {
            assert_eq!(
                read_stamp(c.buf.expect("buf").as_slice(), c.user_data),
                Some(5),
                "direct={direct}"
            );
        }
        assert_eq!(
            store.stats().bounced_ios,
            0,
            "registered buffers are aligned"
        );
    }
}

#[test]
fn ring_setup_flags_are_applied_or_dropped_gracefully() {
    if !engines().contains(&rtgt_uring::EngineSelect::Uring) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let variants = [
        rtgt_uring::RingOptions {
            single_issuer: true,
            defer_taskrun: true,
            ..Default::default()
        },
        rtgt_uring::RingOptions {
            sqpoll_idle_ms: Some(50),
            sqpoll_cpu: Some(0),
            ..Default::default()
        },
    ];
    for (i, ring) in variants.into_iter().enumerate() {
        let mut cfg = StoreConfig {
            engine: rtgt_uring::EngineSelect::Uring,
            ring,
            ..StoreConfig::default()
        };
        cfg.backing.create = true;
        cfg.backing.size = Some(1 << 20);
        let store =
            rtgt_uring::Store::open(dir.path().join(format!("flags{i}.img")), &cfg).expect("open");
        let Ok(rtgt_uring::IoQueue::Uring(mut q)) = store.queue() else {
            return;
        };
        let applied = q.applied_flags();
        println!("variant {i}: {applied:?}");
        assert!(!applied.defer_taskrun || applied.single_issuer);
        for n in 0..16u64 {
            let mut buf = q.alloc_buf(BS);
            stamp(buf.as_mut_slice(), n, 9);
            q.push(
                Op::Write {
                    offset: n * BS as u64,
                    buf,
                    fua: false,
                },
                n,
            )
            .expect("room");
        }
        let mut done = Vec::new();
        while done.len() < 16 {
            q.wait(1, &mut done).expect("wait");
        }
        assert!(done.iter().all(|c| c.result == Ok(BS)));
        let mut block = vec![0u8; BS];
        store.read_at(15 * BS as u64, &mut block).expect("read");
        assert_eq!(read_stamp(&block, 15), Some(9));
    }
}
