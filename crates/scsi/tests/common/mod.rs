//! Shared helpers for the integration tests: a logical unit on a memory store, nexuses, and an
//! independent step-by-step executor that plays the engine's role.

#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;

use rtgt_scsi::{
    AdditionalSense, BlockBackend, CommandRequest, CopyEndpoint, DataDirection, Dispatch, IoOp,
    IoOutcome, LogicalUnit, LuConfig, MemoryBackend, Nexus, NexusId, Response, SenseData, SenseKey,
    Status, Step,
};

pub const BS: usize = 512;
pub const BLOCKS: u64 = 8192;

pub struct Rig {
    pub lu: Arc<LogicalUnit>,
    pub store: Arc<MemoryBackend>,
}

impl Rig {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    pub fn with(f: impl FnOnce(&mut LuConfig)) -> Self {
        let store = Arc::new(MemoryBackend::new(BS as u32, BLOCKS).unwrap());
        let mut cfg = LuConfig::new("iqn.2024-01.org.example:target", 0);
        f(&mut cfg);
        let lu = Arc::new(LogicalUnit::new(cfg, store.capabilities()));
        Self { lu, store }
    }

    pub fn run(
        &self,
        n: &Nexus,
        cdb: &[u8],
        edtl: u32,
        dir: DataDirection,
        out: &[u8],
    ) -> Response {
        self.lu
            .execute_sync(&*self.store, n, &CommandRequest::new(cdb, edtl, dir), out)
    }

    pub fn read(&self, n: &Nexus, cdb: &[u8], edtl: u32) -> Response {
        self.run(n, cdb, edtl, DataDirection::Read, &[])
    }

    pub fn write(&self, n: &Nexus, cdb: &[u8], out: &[u8]) -> Response {
        self.run(n, cdb, out.len() as u32, DataDirection::Write, out)
    }

    pub fn none(&self, n: &Nexus, cdb: &[u8]) -> Response {
        self.run(n, cdb, 0, DataDirection::None, &[])
    }

    /// WRITE(16) of `data` at `lba`.
    pub fn put(&self, n: &Nexus, lba: u64, data: &[u8]) {
        let r = self.write(n, &rw16(0x8A, lba, (data.len() / BS) as u32), data);
        assert_eq!(r.status, Status::GOOD, "{r:?}");
    }

    /// READ(16) of `blocks` at `lba`.
    pub fn get(&self, n: &Nexus, lba: u64, blocks: u32) -> Vec<u8> {
        let r = self.read(n, &rw16(0x88, lba, blocks), blocks * BS as u32);
        assert_eq!(r.status, Status::GOOD, "{r:?}");
        r.data_in
    }
}

pub fn nexus(id: u32, name: &str) -> Nexus {
    Nexus::new(
        NexusId(id),
        &format!("iqn.2024-01.org.example:{name}"),
        [0x40, 0, 0, 0, 0, id as u8],
        1,
    )
}

pub fn rw10(op: u8, lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn rw12(op: u8, lba: u32, blocks: u32) -> [u8; 12] {
    let mut c = [0u8; 12];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn rw16(op: u8, lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = op;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

pub fn caw(lba: u64, blocks: u8) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x89;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = blocks;
    c
}

/// Asserts CHECK CONDITION with this sense key and code; returns the sense bytes.
#[track_caller]
pub fn check(r: &Response, key: SenseKey, code: AdditionalSense) -> Vec<u8> {
    assert_eq!(r.status, Status::CHECK_CONDITION, "{r:?}");
    let sense = r.sense.expect("sense data");
    assert_eq!(
        SenseData::parse(sense.as_bytes()),
        Some((key, code)),
        "{sense:?}"
    );
    sense.as_bytes().to_vec()
}

/// Fixed-format sense bytes for key/ASC/ASCQ with an optional field pointer.
pub fn fixed(key: u8, asc: u8, ascq: u8, sks: Option<[u8; 3]>) -> Vec<u8> {
    let mut v = vec![
        0x70, 0, key, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, ascq, 0, 0, 0, 0,
    ];
    if let Some(s) = sks {
        v[15..18].copy_from_slice(&s);
    }
    v
}

/// An independent engine: runs prepare / execute / complete with its own op implementations.
pub fn stepwise(
    lu: &LogicalUnit,
    store: &dyn BlockBackend,
    n: &Nexus,
    req: &CommandRequest<'_>,
    out: &[u8],
) -> Response {
    let mut cmd = match lu.prepare(n, req) {
        Dispatch::Complete(c) => return Response::from_completion(c, &[]),
        Dispatch::Execute(cmd) => cmd,
    };
    let out = &out[..cmd.data_out_len().min(out.len())];
    let plan = loop {
        match lu.execute(n, &mut cmd, out) {
            Step::Io(p) => break p,
            Step::Blocked => std::thread::yield_now(),
            Step::Complete => {
                let c = lu.complete(n, cmd, &[]);
                return Response::from_completion(c, &[]);
            }
        }
    };
    let mut data_in = vec![0u8; cmd.data_in_capacity()];
    let mut outcomes = Vec::new();
    for op in plan.ops() {
        let o = run_op(store, op, out, &mut data_in, &plan);
        let stop = !matches!(o, IoOutcome::Done | IoOutcome::Allocation(_));
        outcomes.push(o);
        if stop {
            break;
        }
    }
    let c = lu.complete(n, cmd, &outcomes);
    Response::from_completion(c, &data_in)
}

fn run_op(
    store: &dyn BlockBackend,
    op: &IoOp,
    out: &[u8],
    data_in: &mut [u8],
    plan: &rtgt_scsi::IoPlan,
) -> IoOutcome {
    let res = (|| -> Result<IoOutcome, rtgt_scsi::BackendError> {
        match *op {
            IoOp::Read { offset, len, buf } => {
                store.read_at(offset, &mut data_in[buf..buf + len as usize])?;
            }
            IoOp::Write {
                offset,
                len,
                buf,
                fua,
            } => store.write_at(offset, &out[buf..buf + len as usize], fua)?,
            IoOp::Flush => store.flush()?,
            IoOp::Unmap { offset, len } => store.unmap(offset, len)?,
            IoOp::WriteZeroes { offset, len, .. } => store.write_zeroes(offset, len)?,
            IoOp::WriteSame {
                offset,
                len,
                block,
                block_len,
                fua,
            } => {
                let zero = vec![0u8; block_len];
                let b = match block {
                    Some(at) => &out[at..at + block_len],
                    None => &zero[..],
                };
                // One block at a time (the synchronous executor batches).
                let mut at = 0;
                while at < len {
                    store.write_at(offset + at, b, fua)?;
                    at += block_len as u64;
                }
            }
            IoOp::Compare { offset, len, buf } => {
                let mut m = vec![0u8; len as usize];
                store.read_at(offset, &mut m)?;
                if let Some(d) = rtgt_scsi::first_difference(&m, &out[buf..buf + len as usize]) {
                    return Ok(IoOutcome::Miscompare { offset: d as u64 });
                }
            }
            IoOp::CompareEachBlock {
                offset,
                len,
                buf,
                block_len,
            } => {
                let mut m = vec![0u8; len as usize];
                store.read_at(offset, &mut m)?;
                let want = &out[buf..buf + block_len];
                for (i, blk) in m.chunks(block_len).enumerate() {
                    if let Some(d) = rtgt_scsi::first_difference(blk, want) {
                        return Ok(IoOutcome::Miscompare {
                            offset: (i * block_len + d) as u64,
                        });
                    }
                }
            }
            IoOp::Verify { offset, len } => {
                let mut m = vec![0u8; len as usize];
                store.read_at(offset, &mut m)?;
            }
            IoOp::OrWrite {
                offset,
                len,
                buf,
                fua,
            } => {
                let mut m = vec![0u8; len as usize];
                store.read_at(offset, &mut m)?;
                for (a, b) in m.iter_mut().zip(&out[buf..buf + len as usize]) {
                    *a |= b;
                }
                store.write_at(offset, &m, fua)?;
            }
            IoOp::Allocation { offset, len } => {
                return Ok(IoOutcome::Allocation(store.allocation(offset, len)?));
            }
            IoOp::Copy {
                src,
                src_offset,
                dst,
                dst_offset,
                len,
            } => {
                let pick = |e: CopyEndpoint| -> &dyn BlockBackend {
                    match e {
                        CopyEndpoint::This => store,
                        CopyEndpoint::Other(i) => &*plan.copy_targets()[i].backend,
                    }
                };
                let mut m = vec![0u8; len as usize];
                pick(src).read_at(src_offset, &mut m)?;
                pick(dst).write_at(dst_offset, &m, false)?;
            }
        }
        Ok(IoOutcome::Done)
    })();
    res.unwrap_or_else(IoOutcome::Failed)
}
