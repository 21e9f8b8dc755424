//! COMPARE AND WRITE is atomic against every other access to its blocks, from any nexus and
//! thread (SBC-4 §5.3), through the gate protocol of the logical unit.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use rtgt_scsi::{
    AllocationExtent, BackendError, BlockBackend, Capabilities, CommandRequest, DataDirection,
    Dispatch, IoOutcome, LogicalUnit, LuConfig, MemoryBackend, Status, Step,
};

/// Eight blocks straddling the 1 MiB chunk boundary of the memory store.
const LBA: u64 = 2044;
const N: u32 = 8;

fn stamp(v: u64) -> Vec<u8> {
    v.to_be_bytes()
        .iter()
        .copied()
        .cycle()
        .take(N as usize * BS)
        .collect()
}

fn uniform(data: &[u8]) -> Option<u64> {
    let v = u64::from_be_bytes(data[..8].try_into().ok()?);
    (data == stamp(v)).then_some(v)
}

#[test]
fn concurrent_increments_never_lose_an_update() {
    let store = Arc::new(Slow(MemoryBackend::new(BS as u32, BLOCKS).unwrap()));
    let lu = Arc::new(LogicalUnit::new(
        LuConfig::new("iqn.t", 0),
        store.capabilities(),
    ));
    let run = |n: &rtgt_scsi::Nexus, cdb: &[u8], len: u32, dir, out: &[u8]| {
        lu.execute_sync(&*store, n, &CommandRequest::new(cdb, len, dir), out)
    };
    let setup = nexus(99, "setup");
    assert_eq!(
        run(
            &setup,
            &rw16(0x8A, LBA, N),
            N * 512,
            DataDirection::Write,
            &stamp(0)
        )
        .status,
        Status::GOOD
    );
    const THREADS: usize = 4;
    const PER_THREAD: usize = 100;
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        for t in 0..THREADS {
            let (run, barrier) = (&run, &barrier);
            s.spawn(move || {
                let n = nexus(t as u32 + 1, &format!("t{t}"));
                barrier.wait();
                let mut done = 0;
                while done < PER_THREAD {
                    let current =
                        run(&n, &rw16(0x88, LBA, N), N * 512, DataDirection::Read, &[]).data_in;
                    let v = uniform(&current).expect("a read saw a torn COMPARE AND WRITE");
                    let mut data = current;
                    data.extend_from_slice(&stamp(v + 1));
                    let r = run(
                        &n,
                        &caw(LBA, N as u8),
                        2 * N * 512,
                        DataDirection::Write,
                        &data,
                    );
                    match r.status {
                        Status::GOOD => done += 1,
                        Status::CHECK_CONDITION => {}
                        s => panic!("unexpected status {s:?}"),
                    }
                }
            });
        }
    });
    let end = run(
        &setup,
        &rw16(0x88, LBA, N),
        N * 512,
        DataDirection::Read,
        &[],
    )
    .data_in;
    assert_eq!(uniform(&end), Some((THREADS * PER_THREAD) as u64));
}

/// A store whose writes are visibly non-atomic (one block at a time, yielding in between) and
/// whose reads yield, widening every race window.
struct Slow(MemoryBackend);

impl BlockBackend for Slow {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.0.read_at(offset, buf)?;
        thread::yield_now();
        Ok(())
    }
    fn write_at(&self, offset: u64, buf: &[u8], fua: bool) -> Result<(), BackendError> {
        for (i, block) in buf.chunks(BS).enumerate() {
            self.0.write_at(offset + (i * BS) as u64, block, fua)?;
            thread::yield_now();
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.0.flush()
    }
    fn unmap(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.0.unmap(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.0.write_zeroes(offset, len)
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<AllocationExtent, BackendError> {
        self.0.allocation(offset, len)
    }
}

#[test]
fn plain_writes_never_interleave_with_compare_and_write() {
    let store = Arc::new(Slow(MemoryBackend::new(BS as u32, BLOCKS).unwrap()));
    let lu = Arc::new(LogicalUnit::new(
        LuConfig::new("iqn.t", 0),
        store.capabilities(),
    ));
    let init = nexus(99, "setup");
    let w = lu.execute_sync(
        &*store,
        &init,
        &CommandRequest::new(&rw16(0x8A, LBA, N), N * 512, DataDirection::Write),
        &stamp(1),
    );
    assert_eq!(w.status, Status::GOOD);
    let successes = Arc::new(AtomicUsize::new(0));
    let writer_done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(4));
    let mut handles = Vec::new();
    // One plain writer: its writes are serialised among themselves, so any mixed final state
    // can only come from a COMPARE AND WRITE interleaving with a plain write.
    {
        let (lu, store, barrier, done) = (
            Arc::clone(&lu),
            Arc::clone(&store),
            Arc::clone(&barrier),
            Arc::clone(&writer_done),
        );
        handles.push(thread::spawn(move || {
            let n = nexus(1, "writer");
            barrier.wait();
            for i in 0..200u64 {
                let r = lu.execute_sync(
                    &*store,
                    &n,
                    &CommandRequest::new(&rw16(0x8A, LBA, N), N * 512, DataDirection::Write),
                    &stamp(1_000_000 + i),
                );
                assert_eq!(r.status, Status::GOOD);
                // No other plain write exists, and COMPARE AND WRITE is exclusive against this
                // read: it must see one whole write.
                let r = lu.execute_sync(
                    &*store,
                    &n,
                    &CommandRequest::new(&rw16(0x88, LBA, N), N * 512, DataDirection::Read),
                    &[],
                );
                assert!(
                    uniform(&r.data_in).is_some(),
                    "read overlapped a COMPARE AND WRITE"
                );
                // Leave the COMPARE AND WRITE threads a chance to find consistent data.
                for _ in 0..8 {
                    thread::yield_now();
                }
            }
            done.store(true, Ordering::SeqCst);
        }));
    }
    for t in 0..3u64 {
        let (lu, store, barrier, successes, done) = (
            Arc::clone(&lu),
            Arc::clone(&store),
            Arc::clone(&barrier),
            Arc::clone(&successes),
            Arc::clone(&writer_done),
        );
        handles.push(thread::spawn(move || {
            let n = nexus(2 + t as u32, &format!("caw{t}"));
            barrier.wait();
            let mut mine = 0;
            for i in 0u64.. {
                if done.load(Ordering::SeqCst) && mine >= 5 {
                    break;
                }
                let r = lu.execute_sync(
                    &*store,
                    &n,
                    &CommandRequest::new(&rw16(0x88, LBA, N), N * 512, DataDirection::Read),
                    &[],
                );
                // Reads are not serialised against the plain writer; only act on consistent data.
                let Some(v) = uniform(&r.data_in) else {
                    continue;
                };
                let mut data = stamp(v);
                data.extend_from_slice(&stamp((t + 1) << 32 | i));
                let r = lu.execute_sync(
                    &*store,
                    &n,
                    &CommandRequest::new(&caw(LBA, N as u8), 2 * N * 512, DataDirection::Write),
                    &data,
                );
                if r.status == Status::GOOD {
                    mine += 1;
                    successes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    let r = lu.execute_sync(
        &*store,
        &init,
        &CommandRequest::new(&rw16(0x88, LBA, N), N * 512, DataDirection::Read),
        &[],
    );
    assert!(
        uniform(&r.data_in).is_some(),
        "torn data after concurrent writes"
    );
    assert!(successes.load(Ordering::Relaxed) >= 15);
}

#[test]
fn gate_blocks_and_notifies_through_the_stepwise_api() {
    let rig = Rig::new();
    let fired = Arc::new(AtomicUsize::new(0));
    {
        let fired = Arc::clone(&fired);
        rig.lu.set_unblock_notifier(Arc::new(move || {
            fired.fetch_add(1, Ordering::SeqCst);
        }));
    }
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    let write_cdb = rw10(0x2A, 10, 4);
    let write_req = CommandRequest::new(&write_cdb, 2048, DataDirection::Write);
    let Dispatch::Execute(mut write) = rig.lu.prepare(&a, &write_req) else {
        panic!("write")
    };
    let Step::Io(_) = rig.lu.execute(&a, &mut write, &[0; 2048]) else {
        panic!("plan")
    };
    // The COMPARE AND WRITE must wait for the plain write in flight (even on other blocks:
    // lock-free plain I/O does not announce its range).
    let caw_cdb = caw(100, 1);
    let caw_req = CommandRequest::new(&caw_cdb, 1024, DataDirection::Write);
    let Dispatch::Execute(mut cmp) = rig.lu.prepare(&b, &caw_req) else {
        panic!("caw")
    };
    assert!(matches!(
        rig.lu.execute(&b, &mut cmp, &[0; 1024]),
        Step::Blocked
    ));
    assert!(matches!(
        rig.lu.execute(&b, &mut cmp, &[0; 1024]),
        Step::Blocked
    ));
    let before = fired.load(Ordering::SeqCst);
    assert_eq!(
        rig.lu.complete(&a, write, &[IoOutcome::Done]).status,
        Status::GOOD
    );
    assert!(
        fired.load(Ordering::SeqCst) > before,
        "completion must fire the notifier"
    );
    let Step::Io(plan) = rig.lu.execute(&b, &mut cmp, &[0; 1024]) else {
        panic!("caw runs now")
    };
    assert_eq!(plan.ops().len(), 2);
    // While it holds blocks 100..101, overlapping reads wait and others proceed.
    let read_cdb = rw10(0x28, 100, 1);
    let read_req = CommandRequest::new(&read_cdb, 512, DataDirection::Read);
    let Dispatch::Execute(mut overlapping) = rig.lu.prepare(&a, &read_req) else {
        panic!("read")
    };
    assert!(matches!(
        rig.lu.execute(&a, &mut overlapping, &[]),
        Step::Blocked
    ));
    let other_cdb = rw10(0x28, 0, 1);
    let other_req = CommandRequest::new(&other_cdb, 512, DataDirection::Read);
    let Dispatch::Execute(mut other) = rig.lu.prepare(&a, &other_req) else {
        panic!("read")
    };
    assert!(matches!(rig.lu.execute(&a, &mut other, &[]), Step::Io(_)));
    rig.lu.complete(&a, other, &[IoOutcome::Done]);
    let c = rig
        .lu
        .complete(&b, cmp, &[IoOutcome::Done, IoOutcome::Done]);
    assert_eq!(c.status, Status::GOOD);
    assert!(matches!(
        rig.lu.execute(&a, &mut overlapping, &[]),
        Step::Io(_)
    ));
    rig.lu.abort(overlapping);
}
