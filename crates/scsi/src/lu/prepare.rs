//! Step 1: decode and check a command before any data moves (SAM-5 §5.1; checks in the order
//! SPC-5 §5.13 unit attentions, SPC-5 §4.2 CDB validation, SPC-5 §5.14 reservation conflicts,
//! SBC-4 §4.5 LBA range, SBC-4 §4.11 write protection, then transfer lengths).

use std::sync::atomic::Ordering;

use super::{Command, Dispatch, LogicalUnit, State};
use crate::cdb::{self, Op};
use crate::gate::Pass;
use crate::inquiry;
use crate::mode::{self, SenseRequest};
use crate::opcodes::OpCode;
use crate::pr::{Access, ItId};
use crate::rsoc;
use crate::sense::{AdditionalSense, ScsiError, SenseError, SenseKey};
use crate::target;
use crate::types::{
    CommandRequest, Completion, Nexus, NexusId, Residual, TaskAttribute, data_completion,
};
use crate::xcopy;

/// A failed preparation: the error and the Data-Out length the CDB asked for.
struct Failure {
    err: ScsiError,
    wanted_out: u64,
}

impl From<SenseError> for Failure {
    fn from(e: SenseError) -> Self {
        Self {
            err: e.into(),
            wanted_out: 0,
        }
    }
}

impl From<ScsiError> for Failure {
    fn from(err: ScsiError) -> Self {
        Self { err, wanted_out: 0 }
    }
}

/// How a WRITE's data fits the expected transfer length.
enum Fit {
    /// All of it: this many bytes.
    All(u32),
    /// Only `blocks` whole blocks; the CDB asked for `wanted` bytes.
    Cut { blocks: u32, wanted: u64 },
    /// Not even one block.
    Nothing { wanted: u64 },
}

/// Byte offset of the TRANSFER LENGTH (or NUMBER OF LOGICAL BLOCKS) field of a block command.
fn length_field(opcode: u8) -> u16 {
    match opcode {
        0x00..=0x1F => 4,
        0x20..=0x5F => 7,
        0xA0..=0xBF => 6,
        0x89 => 13,
        0x9C => 12,
        _ => 10,
    }
}

impl LogicalUnit {
    /// Decodes a command and checks it against the logical unit's state.
    pub fn prepare(&self, nexus: &Nexus, req: &CommandRequest<'_>) -> Dispatch {
        let desc = self.control(nexus.id).d_sense;
        match self.prepare_inner(nexus, req, desc) {
            Ok(d) => d,
            Err(f) => {
                let residual = if f.wanted_out != 0 {
                    Residual::between(f.wanted_out, req.expected_out())
                } else {
                    Residual::between(0, req.expected_len)
                };
                Dispatch::Complete(Completion::error(&f.err, desc, residual))
            }
        }
    }

    fn prepare_inner(
        &self,
        nexus: &Nexus,
        req: &CommandRequest<'_>,
        desc: bool,
    ) -> Result<Dispatch, Failure> {
        if req.attribute == TaskAttribute::Aca {
            return Err(SenseError::new(
                SenseKey::ILLEGAL_REQUEST,
                AdditionalSense::INVALID_MESSAGE_ERROR,
            )
            .into());
        }
        let opcode = req.cdb.first().copied().unwrap_or(0xFF);
        let ua_exempt = matches!(
            OpCode(opcode),
            OpCode::INQUIRY | OpCode::REPORT_LUNS | OpCode::REQUEST_SENSE
        );
        if !ua_exempt && self.ua_nexuses.load(Ordering::Acquire) != 0 {
            if let Some(ua) = self.take_ua(nexus) {
                return Err(ua.sense().into());
            }
        }
        let op = cdb::decode(req.cdb, self.unmap_supported())?;
        let fast = matches!(op, Op::Read { .. } | Op::Write { .. });
        if !fast {
            let mut st = self.state();
            self.touch(&mut st, nexus);
        }
        let mk = |op: Op, data_out_len: u32, data_in_cap: usize| Command {
            op,
            opcode,
            nexus: nexus.id,
            expected_in: req.expected_in(),
            expected_out: req.expected_out(),
            expected_len: req.expected_len,
            data_out_len,
            wanted_out: u64::from(data_out_len),
            data_in_cap,
            desc,
            pass: Pass::Outside,
            early: None,
            copy: None,
            planned: 0,
        };
        let done = |data: Vec<u8>| Ok(Dispatch::Complete(data_completion(data, req)));
        let good = || {
            Ok(Dispatch::Complete(Completion::good(
                crate::types::DataIn::None,
                Residual::between(0, req.expected_len),
            )))
        };
        let bs = u64::from(self.caps.block_size);
        let lenf = length_field(opcode);

        match op {
            Op::TestUnitReady => {
                self.check_access(nexus, Access::PrFree)?;
                self.check_ready()?;
                good()
            }
            Op::RequestSense { desc: d, alloc } => {
                let sense = match self.take_ua(nexus) {
                    Some(ua) => ua.sense(),
                    None if self.stopped.load(Ordering::Acquire) => SenseError::not_ready_stopped(),
                    None => {
                        SenseError::new(SenseKey::NO_SENSE, AdditionalSense::NO_ADDITIONAL_SENSE)
                    }
                };
                let mut data = sense.encode(d).as_bytes().to_vec();
                data.truncate(alloc as usize);
                done(data)
            }
            Op::Inquiry { evpd, page, alloc } => {
                let ctx = self.inquiry_context(nexus.target_port);
                let mut data = if evpd {
                    inquiry::vpd_page(page, &ctx)?
                } else {
                    inquiry::standard(&ctx)
                };
                data.truncate(alloc as usize);
                done(data)
            }
            Op::ReportLuns { select, alloc } => {
                // REPORT LUNS clears a pending REPORTED LUNS DATA HAS CHANGED (SPC-5 §6.33).
                if self.ua_nexuses.load(Ordering::Acquire) != 0 {
                    let mut st = self.state();
                    if let Some(rec) = st.nexuses.get_mut(&nexus.id) {
                        if rec.ua.remove(crate::ua::UnitAttention::ReportedLunsChanged)
                            && rec.ua.is_empty()
                        {
                            self.ua_nexuses.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
                let mut data = target::report_luns_data(&[self.cfg.lun], select)?;
                data.truncate(alloc as usize);
                done(data)
            }
            Op::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc,
            } => {
                self.check_access(nexus, Access::Read)?;
                let st = Self::mode_view(&self.state(), nexus.id);
                let mut data = mode::sense(
                    SenseRequest {
                        ten,
                        dbd,
                        llbaa,
                        pc,
                        page,
                        subpage,
                    },
                    st,
                    &self.mode_shape(),
                )?;
                data.truncate(alloc as usize);
                done(data)
            }
            Op::ModeSelect { pf, sp, len, .. } => {
                self.check_access(nexus, Access::Write)?;
                if !pf {
                    return Err(SenseError::invalid_cdb_field(1, Some(4)).into());
                }
                if sp {
                    return Err(SenseError::invalid_cdb_field(1, Some(0)).into());
                }
                if len == 0 {
                    return good();
                }
                let n = Self::check_out(u64::from(len), req)?;
                Ok(Dispatch::Execute(mk(op, n, 0)))
            }
            Op::StartStop {
                pc,
                no_flush,
                loej,
                start,
            } => {
                self.check_access(nexus, Access::Write)?;
                match pc {
                    0 => {}
                    // ACTIVE: the unit is always active when started; nothing to do.
                    1 => return good(),
                    _ => return Err(SenseError::invalid_cdb_field(4, Some(7)).into()),
                }
                if loej {
                    // The medium is not removable.
                    return Err(SenseError::invalid_cdb_field(4, Some(1)).into());
                }
                if start {
                    self.stopped.store(false, Ordering::Release);
                    return good();
                }
                if !no_flush && self.caps.supports_flush {
                    return Ok(Dispatch::Execute(mk(op, 0, 0)));
                }
                self.stopped.store(true, Ordering::Release);
                good()
            }
            Op::ReadCapacity10 { .. } => {
                self.check_access(nexus, Access::PrFree)?;
                self.check_ready()?;
                let last = self.num_blocks().saturating_sub(1);
                let mut d = Vec::with_capacity(8);
                d.extend_from_slice(&u32::try_from(last).unwrap_or(u32::MAX).to_be_bytes());
                d.extend_from_slice(&self.caps.block_size.to_be_bytes());
                done(d)
            }
            Op::ReadCapacity16 { alloc, .. } => {
                self.check_access(nexus, Access::PrFree)?;
                self.check_ready()?;
                let mut d = vec![0u8; 32];
                d[..8].copy_from_slice(&self.num_blocks().saturating_sub(1).to_be_bytes());
                d[8..12].copy_from_slice(&self.caps.block_size.to_be_bytes());
                d[13] = self.caps.physical_block_exponent & 0x0F;
                if self.unmap_supported() {
                    d[14] = 0x80
                        | if self.caps.unmap_reads_zeroes {
                            0x40
                        } else {
                            0
                        };
                }
                d.truncate(alloc as usize);
                done(d)
            }
            Op::Read { lba, blocks, .. } => {
                self.check_fast_access(nexus, Access::Read)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_transfer(blocks, lenf)?;
                if blocks == 0 {
                    return good();
                }
                let bytes = u64::from(blocks) * bs;
                Ok(Dispatch::Execute(mk(op, 0, bytes as usize)))
            }
            Op::Write { lba, blocks, fua } => {
                self.check_fast_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_transfer(blocks, lenf)?;
                self.check_writable(nexus.id)?;
                if blocks == 0 {
                    return good();
                }
                match Self::fit_out(blocks, bs, req) {
                    Fit::All(n) => Ok(Dispatch::Execute(mk(op, n, 0))),
                    Fit::Cut { blocks: b, wanted } => {
                        let mut cmd = mk(
                            Op::Write {
                                lba,
                                blocks: b,
                                fua,
                            },
                            b * bs as u32,
                            0,
                        );
                        cmd.wanted_out = wanted;
                        Ok(Dispatch::Execute(cmd))
                    }
                    Fit::Nothing { wanted } => Ok(Dispatch::Complete(Completion::good(
                        crate::types::DataIn::None,
                        Residual::between(wanted, req.expected_out()),
                    ))),
                }
            }
            Op::WriteVerify {
                lba,
                blocks,
                bytchk,
            } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_transfer(blocks, lenf)?;
                self.check_writable(nexus.id)?;
                if blocks == 0 {
                    return good();
                }
                match Self::fit_out(blocks, bs, req) {
                    Fit::All(n) => Ok(Dispatch::Execute(mk(op, n, 0))),
                    Fit::Cut { blocks: b, wanted } => {
                        let op = Op::WriteVerify {
                            lba,
                            blocks: b,
                            bytchk,
                        };
                        let mut cmd = mk(op, b * bs as u32, 0);
                        cmd.wanted_out = wanted;
                        Ok(Dispatch::Execute(cmd))
                    }
                    Fit::Nothing { wanted } => Ok(Dispatch::Complete(Completion::good(
                        crate::types::DataIn::None,
                        Residual::between(wanted, req.expected_out()),
                    ))),
                }
            }
            Op::Verify {
                lba,
                blocks,
                bytchk,
            } => {
                self.check_access(nexus, Access::Read)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_transfer(blocks, lenf)?;
                if blocks == 0 {
                    return good();
                }
                let wanted = match bytchk {
                    0 => 0,
                    1 => u64::from(blocks) * bs,
                    _ => bs,
                };
                let n = if wanted == 0 {
                    0
                } else {
                    Self::check_out(wanted, req)?
                };
                Ok(Dispatch::Execute(mk(op, n, 0)))
            }
            Op::PreFetch { lba, blocks } => {
                self.check_access(nexus, Access::Read)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                good()
            }
            Op::SyncCache { lba, blocks } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                if self.caps.supports_flush {
                    Ok(Dispatch::Execute(mk(op, 0, 0)))
                } else {
                    good()
                }
            }
            Op::ReadDefect {
                twelve,
                plist,
                glist,
                format,
                alloc,
            } => {
                self.check_access(nexus, Access::Read)?;
                if format == 7 {
                    return Err(
                        SenseError::invalid_cdb_field(if twelve { 1 } else { 2 }, Some(2)).into(),
                    );
                }
                let flags = (u8::from(plist) << 4) | (u8::from(glist) << 3) | format;
                let mut d = if twelve {
                    vec![0, flags, 0, 0, 0, 0, 0, 0]
                } else {
                    vec![0, flags, 0, 0]
                };
                d.truncate(alloc as usize);
                done(d)
            }
            Op::WriteSame {
                lba,
                blocks,
                unmap,
                ndob,
            } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_writable(nexus.id)?;
                if unmap && !self.unmap_supported() {
                    return Err(SenseError::invalid_cdb_field(1, Some(3)).into());
                }
                // WSNZ = 0 (SBC-4 §5.48.1, §6.6.3): a zero NUMBER OF LOGICAL BLOCKS writes
                // from the LBA through the last logical block.
                let (op, blocks) = if blocks == 0 {
                    let n = self.num_blocks();
                    if lba >= n {
                        return Err(SenseError::lba_out_of_range().into());
                    }
                    let rest = u32::try_from(n - lba)
                        .map_err(|_| Failure::from(SenseError::invalid_cdb_field(lenf, Some(7))))?;
                    (
                        Op::WriteSame {
                            lba,
                            blocks: rest,
                            unmap,
                            ndob,
                        },
                        rest,
                    )
                } else {
                    (op, blocks)
                };
                if u64::from(blocks) > self.limits.max_write_same {
                    return Err(SenseError::invalid_cdb_field(lenf, Some(7)).into());
                }
                if ndob {
                    return Ok(Dispatch::Execute(mk(op, 0, 0)));
                }
                if u64::from(req.expected_out()) != bs {
                    return Err(Failure {
                        err: SenseError::invalid_cdb_field(lenf, Some(7)).into(),
                        wanted_out: bs,
                    });
                }
                Ok(Dispatch::Execute(mk(op, bs as u32, 0)))
            }
            Op::Unmap { len } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_writable(nexus.id)?;
                if len == 0 {
                    return good();
                }
                if len < 8 {
                    return Err(SenseError::parameter_list_length().into());
                }
                let n = Self::check_out(u64::from(len), req)?;
                Ok(Dispatch::Execute(mk(op, n, 0)))
            }
            Op::CompareAndWrite { lba, blocks, .. } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_writable(nexus.id)?;
                if blocks == 0 {
                    // No blocks, yet the initiator announces Data-Out: the CDB and the
                    // transfer disagree (e.g. a 256-block request whose one-byte NUMBER OF
                    // LOGICAL BLOCKS wrapped to 0), so the field is refused rather than the
                    // data silently ignored.
                    if req.expected_out() != 0 {
                        return Err(SenseError::invalid_cdb_field(13, Some(7)).into());
                    }
                    return good();
                }
                if blocks > u32::from(self.limits.max_caw) {
                    return Err(SenseError::invalid_cdb_field(13, Some(7)).into());
                }
                let wanted = 2 * u64::from(blocks) * bs;
                if u64::from(req.expected_out()) != wanted {
                    return Err(Failure {
                        err: SenseError::invalid_cdb_field(13, Some(7)).into(),
                        wanted_out: wanted,
                    });
                }
                Ok(Dispatch::Execute(mk(op, wanted as u32, 0)))
            }
            Op::OrWrite { lba, blocks, .. } | Op::WriteAtomic { lba, blocks, .. } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                self.check_range(lba, u64::from(blocks))?;
                self.check_transfer(blocks, lenf)?;
                if matches!(op, Op::WriteAtomic { .. }) && blocks > self.limits.max_atomic {
                    return Err(SenseError::invalid_cdb_field(lenf, Some(7)).into());
                }
                self.check_writable(nexus.id)?;
                if blocks == 0 {
                    return good();
                }
                let n = Self::check_out(u64::from(blocks) * bs, req)?;
                Ok(Dispatch::Execute(mk(op, n, 0)))
            }
            Op::GetLbaStatus { lba, alloc } => {
                self.check_access(nexus, Access::Read)?;
                self.check_ready()?;
                if lba >= self.num_blocks() {
                    return Err(SenseError::lba_out_of_range().into());
                }
                if alloc == 0 {
                    return good();
                }
                Ok(Dispatch::Execute(mk(op, 0, 0)))
            }
            Op::ReportOpcodes {
                rctd,
                options,
                opcode: requested,
                sa,
                alloc,
            } => {
                let mut data =
                    rsoc::report_opcodes(rctd, options, requested, sa, self.unmap_supported())?;
                data.truncate(alloc as usize);
                done(data)
            }
            Op::ReportTmfs { repd, alloc } => {
                let mut data = rsoc::report_tmfs(&self.cfg.tmf, repd);
                data.truncate(alloc as usize);
                done(data)
            }
            Op::PrIn { sa, alloc } => {
                let mut data = self.state().pr.read(sa)?;
                data.truncate(alloc as usize);
                done(data)
            }
            Op::PrOut { sa, len, .. } => {
                {
                    let st = self.state();
                    if st.spc2.is_some_and(|h| h != nexus.id) && !matches!(sa, 0 | 6) {
                        return Err(ScsiError::ReservationConflict.into());
                    }
                }
                // REGISTER AND MOVE carries one iSCSI TransportID (at most 228 bytes).
                let ok_len = if sa == 7 {
                    (24..=24 + 228).contains(&len)
                } else {
                    len == 24
                };
                if !ok_len {
                    return Err(SenseError::parameter_list_length().into());
                }
                let n = Self::check_out(u64::from(len), req)?;
                Ok(Dispatch::Execute(mk(op, n, 0)))
            }
            Op::Reserve => {
                let mut st = self.state();
                if st.pr.reserved() || st.spc2.is_some_and(|h| h != nexus.id) {
                    return Err(ScsiError::ReservationConflict.into());
                }
                st.spc2 = Some(nexus.id);
                self.update_reserved(&st);
                drop(st);
                good()
            }
            Op::Release => {
                let mut st = self.state();
                if st.spc2 == Some(nexus.id) {
                    st.spc2 = None;
                    self.update_reserved(&st);
                }
                drop(st);
                good()
            }
            Op::ExtendedCopy { len } => {
                self.check_access(nexus, Access::Write)?;
                self.check_ready()?;
                if len == 0 {
                    return good();
                }
                // Header plus the longest descriptor lists we accept; no inline data.
                if u64::from(len) > 16 + u64::from(self.cfg.copy.max_descriptor_list_length) {
                    return Err(SenseError::parameter_list_length().into());
                }
                let n = Self::check_out(u64::from(len), req)?;
                Ok(Dispatch::Execute(mk(op, n, 0)))
            }
            Op::ReceiveCopyResults { sa, list_id, alloc } => {
                let mut data = if sa == crate::opcodes::RCR_OPERATING_PARAMETERS {
                    xcopy::operating_parameters(self.cfg.copy, self.caps.block_size)
                } else {
                    let mut st = self.state();
                    let pos = st.copies.iter().position(|r| {
                        r.list_id == list_id && r.port.eq_ignore_ascii_case(&nexus.initiator_port)
                    });
                    let Some(pos) = pos else {
                        return Err(SenseError::invalid_cdb_field(2, Some(7)).into());
                    };
                    let data = xcopy::copy_status(&st.copies[pos]);
                    if st.copies[pos].state != xcopy::CopyState::InProgress {
                        st.copies.remove(pos);
                    }
                    data
                };
                data.truncate(alloc as usize);
                done(data)
            }
        }
    }

    /// Removes and returns the nexus's highest-precedence unit attention.
    fn take_ua(&self, nexus: &Nexus) -> Option<crate::ua::UnitAttention> {
        if self.ua_nexuses.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut st = self.state();
        self.touch(&mut st, nexus);
        let rec = st.nexuses.get_mut(&nexus.id)?;
        let ua = rec.ua.take();
        if ua.is_some() && rec.ua.is_empty() {
            self.ua_nexuses.fetch_sub(1, Ordering::AcqRel);
        }
        ua
    }

    /// Reservation check for READ and WRITE: lock-free unless a reservation exists.
    fn check_fast_access(&self, nexus: &Nexus, access: Access) -> Result<(), ScsiError> {
        if !self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        self.check_access(nexus, access)
    }

    fn check_access(&self, nexus: &Nexus, access: Access) -> Result<(), ScsiError> {
        if !self.reserved.load(Ordering::Acquire) {
            return Ok(());
        }
        let st = self.state();
        Self::check_access_locked(&st, nexus, access)
    }

    fn check_access_locked(st: &State, nexus: &Nexus, access: Access) -> Result<(), ScsiError> {
        if let Some(holder) = st.spc2 {
            if holder != nexus.id && access != Access::Free {
                return Err(ScsiError::ReservationConflict);
            }
        }
        let it = ItId {
            port: nexus.initiator_port.clone(),
            target_port: nexus.target_port,
        };
        st.pr.check(&it, access)
    }

    fn check_ready(&self) -> Result<(), SenseError> {
        if self.stopped.load(Ordering::Acquire) {
            Err(SenseError::not_ready_stopped())
        } else {
            Ok(())
        }
    }

    fn check_range(&self, lba: u64, blocks: u64) -> Result<(), SenseError> {
        match lba.checked_add(blocks) {
            Some(end) if end <= self.num_blocks() => Ok(()),
            _ => Err(SenseError::lba_out_of_range()),
        }
    }

    fn check_transfer(&self, blocks: u32, field: u16) -> Result<(), SenseError> {
        if blocks > self.limits.max_transfer {
            Err(SenseError::invalid_cdb_field(field, Some(7)))
        } else {
            Ok(())
        }
    }

    fn check_writable(&self, nexus: NexusId) -> Result<(), SenseError> {
        if self.cfg.read_only || self.caps.read_only {
            return Err(SenseError::write_protected(
                AdditionalSense::WRITE_PROTECTED,
            ));
        }
        if self.control(nexus).swp {
            return Err(SenseError::write_protected(
                AdditionalSense::SOFTWARE_WRITE_PROTECTED,
            ));
        }
        Ok(())
    }

    /// How much of a WRITE's data the transport announced. When the expected length is
    /// shorter than the CDB's transfer, only the whole blocks it covers are written and the
    /// rest is reported as residual overflow (RFC 7143 §11.4.5.2: the data transferred is
    /// truncated to the expected length; SAM-5 §5.4).
    fn fit_out(blocks: u32, bs: u64, req: &CommandRequest<'_>) -> Fit {
        let wanted = u64::from(blocks) * bs;
        let expected = u64::from(req.expected_out());
        if wanted <= expected {
            // `wanted` is at most the u32 expected length here.
            return Fit::All(wanted as u32);
        }
        match u32::try_from(expected / bs.max(1)) {
            Ok(0) | Err(_) => Fit::Nothing { wanted },
            Ok(b) => Fit::Cut { blocks: b, wanted },
        }
    }

    /// Checks that the transport announced at least `wanted` Data-Out bytes (an overflow is
    /// refused without transferring data: SAM-5 §5.4, FCP-4 b) / RFC 7143 §11.4.5.2).
    fn check_out(wanted: u64, req: &CommandRequest<'_>) -> Result<u32, Failure> {
        if wanted > u64::from(req.expected_out()) {
            return Err(Failure {
                err: SenseError::invalid_command_iu().into(),
                wanted_out: wanted,
            });
        }
        // `wanted` is at most the u32 expected length here.
        Ok(wanted as u32)
    }
}
