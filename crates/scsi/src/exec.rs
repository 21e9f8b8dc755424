//! A synchronous executor of [`IoPlan`]s against a [`BlockBackend`] (used by
//! [`crate::LogicalUnit::execute_sync`], by tests, and by engines that run a RAM disk inline).
//! It implements the op semantics documented in [`crate::plan`] (SBC-4 §5: COMPARE AND WRITE,
//! ORWRITE, VERIFY, WRITE SAME, EXTENDED COPY data movement).

use crate::backend::{BackendError, BlockBackend};
use crate::plan::{CopyEndpoint, IoOp, IoOutcome, IoPlan, first_difference};

/// Scratch buffers are allocated in pieces of at most this many bytes.
const CHUNK: u64 = 1 << 20;

fn slice(buf: &[u8], at: usize, len: u64) -> Result<&[u8], BackendError> {
    let len = usize::try_from(len).map_err(|_| BackendError::Other("length overflow".into()))?;
    at.checked_add(len)
        .and_then(|end| buf.get(at..end))
        .ok_or_else(|| BackendError::Other(format!("buffer range {at}+{len} out of bounds")))
}

fn slice_mut(buf: &mut [u8], at: usize, len: u64) -> Result<&mut [u8], BackendError> {
    let len = usize::try_from(len).map_err(|_| BackendError::Other("length overflow".into()))?;
    at.checked_add(len)
        .and_then(|end| buf.get_mut(at..end))
        .ok_or_else(|| BackendError::Other(format!("buffer range {at}+{len} out of bounds")))
}

/// Calls `f(offset within the range, piece length)` for the range in pieces of at most
/// `CHUNK` bytes (rounded down to whole `unit`s).
fn pieces(
    len: u64,
    unit: u64,
    mut f: impl FnMut(u64, u64) -> Result<Option<u64>, BackendError>,
) -> Result<Option<u64>, BackendError> {
    let step = (CHUNK / unit.max(1)).max(1) * unit.max(1);
    let mut done = 0;
    while done < len {
        let n = step.min(len - done);
        if let Some(m) = f(done, n)? {
            return Ok(Some(m));
        }
        done += n;
    }
    Ok(None)
}

fn run_op(
    backend: &dyn BlockBackend,
    plan: &IoPlan,
    op: &IoOp,
    data_out: &[u8],
    data_in: &mut [u8],
) -> Result<IoOutcome, BackendError> {
    let miscompare =
        |m: Option<u64>| m.map_or(IoOutcome::Done, |offset| IoOutcome::Miscompare { offset });
    match *op {
        IoOp::Read { offset, len, buf } => backend
            .read_at(offset, slice_mut(data_in, buf, len)?)
            .map(|()| IoOutcome::Done),
        IoOp::Write {
            offset,
            len,
            buf,
            fua,
        } => backend
            .write_at(offset, slice(data_out, buf, len)?, fua)
            .map(|()| IoOutcome::Done),
        IoOp::Flush => backend.flush().map(|()| IoOutcome::Done),
        IoOp::Unmap { offset, len } => backend.unmap(offset, len).map(|()| IoOutcome::Done),
        IoOp::WriteZeroes { offset, len, fua } => {
            backend.write_zeroes(offset, len)?;
            if fua {
                backend.flush()?;
            }
            Ok(IoOutcome::Done)
        }
        IoOp::WriteSame {
            offset,
            len,
            block,
            block_len,
            fua,
        } => {
            let unit = block_len as u64;
            let pattern: Vec<u8> = match block {
                Some(at) => slice(data_out, at, unit)?.to_vec(),
                None => vec![0; block_len],
            };
            let mut buf = Vec::new();
            pieces(len, unit, |at, n| {
                if buf.len() != n as usize {
                    buf = pattern.iter().copied().cycle().take(n as usize).collect();
                }
                backend.write_at(offset + at, &buf, fua)?;
                Ok(None)
            })?;
            Ok(IoOutcome::Done)
        }
        IoOp::Compare { offset, len, buf } => {
            let expected = slice(data_out, buf, len)?;
            let mut scratch = Vec::new();
            let m = pieces(len, 1, |at, n| {
                scratch.resize(n as usize, 0);
                backend.read_at(offset + at, &mut scratch)?;
                let want = &expected[at as usize..(at + n) as usize];
                Ok(first_difference(&scratch, want).map(|d| at + d as u64))
            })?;
            Ok(miscompare(m))
        }
        IoOp::CompareEachBlock {
            offset,
            len,
            buf,
            block_len,
        } => {
            let unit = block_len as u64;
            let expected = slice(data_out, buf, unit)?;
            let mut scratch = Vec::new();
            let m = pieces(len, unit, |at, n| {
                scratch.resize(n as usize, 0);
                backend.read_at(offset + at, &mut scratch)?;
                for (i, b) in scratch.chunks(block_len.max(1)).enumerate() {
                    if let Some(d) = first_difference(b, expected) {
                        return Ok(Some(at + (i * block_len + d) as u64));
                    }
                }
                Ok(None)
            })?;
            Ok(miscompare(m))
        }
        IoOp::Verify { offset, len } => {
            let mut scratch = Vec::new();
            pieces(len, 1, |at, n| {
                scratch.resize(n as usize, 0);
                backend.read_at(offset + at, &mut scratch)?;
                Ok(None)
            })?;
            Ok(IoOutcome::Done)
        }
        IoOp::OrWrite {
            offset,
            len,
            buf,
            fua,
        } => {
            let operand = slice(data_out, buf, len)?;
            let mut scratch = Vec::new();
            pieces(len, 1, |at, n| {
                scratch.resize(n as usize, 0);
                backend.read_at(offset + at, &mut scratch)?;
                for (s, o) in scratch
                    .iter_mut()
                    .zip(&operand[at as usize..(at + n) as usize])
                {
                    *s |= o;
                }
                backend.write_at(offset + at, &scratch, fua)?;
                Ok(None)
            })?;
            Ok(IoOutcome::Done)
        }
        IoOp::Allocation { offset, len } => {
            backend.allocation(offset, len).map(IoOutcome::Allocation)
        }
        IoOp::Copy {
            src,
            src_offset,
            dst,
            dst_offset,
            len,
        } => {
            let store = |e: CopyEndpoint| -> Result<&dyn BlockBackend, BackendError> {
                match e {
                    CopyEndpoint::This => Ok(backend),
                    CopyEndpoint::Other(i) => plan
                        .copy_targets()
                        .get(i)
                        .map(|t| &*t.backend)
                        .ok_or_else(|| BackendError::Other(format!("copy target {i} missing"))),
                }
            };
            let (from, to) = (store(src)?, store(dst)?);
            let mut scratch = Vec::new();
            pieces(len, 1, |at, n| {
                scratch.resize(n as usize, 0);
                from.read_at(src_offset + at, &mut scratch)?;
                to.write_at(dst_offset + at, &scratch, false)?;
                Ok(None)
            })?;
            Ok(IoOutcome::Done)
        }
    }
}

/// Runs `plan` against `backend` (the logical unit's own store), stopping after the first
/// failure or miscompare. `data_in` must be at least [`crate::Command::data_in_capacity`]
/// bytes long.
pub fn run_plan(
    backend: &dyn BlockBackend,
    plan: &IoPlan,
    data_out: &[u8],
    data_in: &mut [u8],
) -> Vec<IoOutcome> {
    let mut outcomes = Vec::with_capacity(plan.ops().len());
    for op in plan.ops() {
        let o = run_op(backend, plan, op, data_out, data_in).unwrap_or_else(IoOutcome::Failed);
        let stop = matches!(o, IoOutcome::Failed(_) | IoOutcome::Miscompare { .. });
        outcomes.push(o);
        if stop {
            break;
        }
    }
    outcomes
}
