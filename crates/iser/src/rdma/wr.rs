//! The trait's work requests as libibverbs structures: `ibv_send_wr` for
//! Send, Send with Invalidate (RFC 7145 §7.3.4: the SCSI Response
//! invalidating the initiator's STag), RDMA Write (Data-In, §7.3.5), RDMA
//! Read (R2T/Data-Out, §7.3.6), local invalidation and type 2 memory
//! window binds (the initiator's STags, §7.2.1); `ibv_recv_wr` for
//! receives. Nothing here posts: the structures are built on the caller's
//! stack, with their scatter/gather lists in a caller-provided array, and
//! handed to `ibv_post_send`/`ibv_post_recv` right after.

use core::ptr;

use rdma_sys::{
    bind_mw_t, ibv_mr, ibv_mw, ibv_mw_bind_info, ibv_recv_wr, ibv_send_flags, ibv_send_wr, ibv_sge,
    ibv_wr_opcode, imm_data_invalidated_rkey_union_t, rdma_t, wr_t,
};

use crate::verbs::{SendOp, SendWr, Sge, VerbsError};

/// Scatter/gather entries one work request may carry here (queue pairs are
/// created with at most this many).
pub(crate) const MAX_SGE: usize = 16;

/// Room for the scatter/gather list of one work request.
pub(crate) type SgeArray = [ibv_sge; MAX_SGE];

/// An empty scatter/gather array.
pub(crate) const fn sge_array() -> SgeArray {
    [ibv_sge {
        addr: 0,
        length: 0,
        lkey: 0,
    }; MAX_SGE]
}

/// A send work request with every field zero (null pointers, no flags).
fn zeroed_send_wr() -> ibv_send_wr {
    // SAFETY: `ibv_send_wr` is a C struct of integers, raw pointers and unions
    // of those; all-zero bytes are a valid value of every field.
    unsafe { core::mem::zeroed() }
}

/// Copies `sges` into `out`; returns how many.
fn fill_sges(sges: &[Sge], out: &mut SgeArray) -> Result<i32, VerbsError> {
    if sges.len() > MAX_SGE {
        return Err(VerbsError::QueueFull);
    }
    for (dst, s) in out.iter_mut().zip(sges) {
        *dst = ibv_sge {
            addr: s.addr,
            length: s.len,
            lkey: s.lkey,
        };
    }
    // At most MAX_SGE (16): fits.
    Ok(sges.len() as i32)
}

fn send_flags(signaled: bool) -> u32 {
    if signaled {
        ibv_send_flags::IBV_SEND_SIGNALED.0
    } else {
        0
    }
}

/// `wr` as an `ibv_send_wr` whose scatter/gather list is `sges`.
///
/// The result points into `sges`: post it before `sges` moves or dies.
pub(crate) fn send_wr(wr: &SendWr<'_>, sges: &mut SgeArray) -> Result<ibv_send_wr, VerbsError> {
    let mut raw = zeroed_send_wr();
    raw.wr_id = wr.wr_id;
    raw.send_flags = send_flags(wr.signaled);
    match wr.op {
        SendOp::Send => raw.opcode = ibv_wr_opcode::IBV_WR_SEND,
        SendOp::SendWithInvalidate { rkey } => {
            raw.opcode = ibv_wr_opcode::IBV_WR_SEND_WITH_INV;
            raw.imm_data_invalidated_rkey_union = imm_data_invalidated_rkey_union_t {
                invalidated_rkey: rkey,
            };
        }
        SendOp::RdmaWrite { remote } => {
            raw.opcode = ibv_wr_opcode::IBV_WR_RDMA_WRITE;
            raw.wr = wr_t {
                rdma: rdma_t {
                    remote_addr: remote.addr,
                    rkey: remote.rkey,
                },
            };
        }
        SendOp::RdmaRead { remote } => {
            raw.opcode = ibv_wr_opcode::IBV_WR_RDMA_READ;
            raw.wr = wr_t {
                rdma: rdma_t {
                    remote_addr: remote.addr,
                    rkey: remote.rkey,
                },
            };
        }
        SendOp::LocalInvalidate { rkey } => {
            if !wr.sges.is_empty() {
                return Err(VerbsError::InvalidArgument(
                    "local invalidation carries no data",
                ));
            }
            raw.opcode = ibv_wr_opcode::IBV_WR_LOCAL_INV;
            raw.imm_data_invalidated_rkey_union = imm_data_invalidated_rkey_union_t {
                invalidated_rkey: rkey,
            };
        }
    }
    raw.num_sge = fill_sges(wr.sges, sges)?;
    raw.sg_list = if raw.num_sge == 0 {
        ptr::null_mut()
    } else {
        sges.as_mut_ptr()
    };
    Ok(raw)
}

/// A receive of `sges` as an `ibv_recv_wr` whose list is `out`.
///
/// The result points into `out`: post it before `out` moves or dies.
pub(crate) fn recv_wr(
    wr_id: u64,
    sges: &[Sge],
    out: &mut SgeArray,
) -> Result<ibv_recv_wr, VerbsError> {
    let num_sge = fill_sges(sges, out)?;
    Ok(ibv_recv_wr {
        wr_id,
        next: ptr::null_mut(),
        sg_list: if num_sge == 0 {
            ptr::null_mut()
        } else {
            out.as_mut_ptr()
        },
        num_sge,
    })
}

/// What a type 2 window bind names.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bind {
    /// The window.
    pub mw: *mut ibv_mw,
    /// Its new rkey (see [`next_rkey`]).
    pub rkey: u32,
    /// The region bound over.
    pub mr: *mut ibv_mr,
    /// First byte (virtual address) of the window.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// `IBV_ACCESS_REMOTE_*` rights.
    pub access: u32,
}

/// A type 2 memory window bind (`IBV_WR_BIND_MW`).
pub(crate) fn bind_wr(wr_id: u64, bind: &Bind, signaled: bool) -> ibv_send_wr {
    let mut raw = zeroed_send_wr();
    raw.wr_id = wr_id;
    raw.opcode = ibv_wr_opcode::IBV_WR_BIND_MW;
    raw.send_flags = send_flags(signaled);
    raw.bind_mw_tso_union = rdma_sys::bind_mw_tso_union_t {
        bind_mw: bind_mw_t {
            mw: bind.mw,
            rkey: bind.rkey,
            bind_info: ibv_mw_bind_info {
                mr: bind.mr,
                addr: bind.addr,
                length: bind.len,
                mw_access_flags: bind.access,
            },
        },
    };
    raw
}

/// The next rkey of a window: the low 8 bits (the key the consumer owns)
/// advance, the index bits stay (`ibv_inc_rkey`).
pub(crate) const fn next_rkey(rkey: u32) -> u32 {
    (rkey & !0xff) | (rkey.wrapping_add(1) & 0xff)
}

#[cfg(test)]
mod tests {
    use core::mem::{offset_of, size_of};

    use super::*;
    use crate::verbs::RemoteAddr;

    // Offsets of the hand-written rdma-sys structures, as gcc lays out the
    // C structures of <infiniband/verbs.h> on LP64 targets (checked with
    // offsetof against rdma-core 44's headers).
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn hand_written_structures_match_the_c_layout() {
        assert_eq!(size_of::<ibv_send_wr>(), 128);
        assert_eq!(offset_of!(ibv_send_wr, wr_id), 0);
        assert_eq!(offset_of!(ibv_send_wr, next), 8);
        assert_eq!(offset_of!(ibv_send_wr, sg_list), 16);
        assert_eq!(offset_of!(ibv_send_wr, num_sge), 24);
        assert_eq!(offset_of!(ibv_send_wr, opcode), 28);
        assert_eq!(offset_of!(ibv_send_wr, send_flags), 32);
        assert_eq!(offset_of!(ibv_send_wr, imm_data_invalidated_rkey_union), 36);
        assert_eq!(offset_of!(ibv_send_wr, wr), 40);
        assert_eq!(offset_of!(rdma_t, rkey), 8);
        assert_eq!(offset_of!(ibv_send_wr, bind_mw_tso_union), 80);
        assert_eq!(offset_of!(bind_mw_t, rkey), 8);
        assert_eq!(offset_of!(bind_mw_t, bind_info), 16);
        assert_eq!(offset_of!(ibv_mw_bind_info, addr), 8);
        assert_eq!(offset_of!(ibv_mw_bind_info, length), 16);
        assert_eq!(offset_of!(ibv_mw_bind_info, mw_access_flags), 24);
        assert_eq!(size_of::<ibv_recv_wr>(), 32);
        assert_eq!(size_of::<ibv_sge>(), 16);
        assert_eq!(size_of::<rdma_sys::ibv_wc>(), 48);
        assert_eq!(offset_of!(rdma_sys::ibv_wc, byte_len), 20);
        assert_eq!(
            offset_of!(rdma_sys::ibv_wc, imm_data_invalidated_rkey_union),
            24
        );
        assert_eq!(offset_of!(rdma_sys::ibv_wc, qp_num), 28);
        assert_eq!(offset_of!(rdma_sys::ibv_wc, wc_flags), 36);
        assert_eq!(size_of::<rdma_sys::rdma_cm_event>(), 80);
        assert_eq!(offset_of!(rdma_sys::rdma_cm_event, event), 16);
        assert_eq!(offset_of!(rdma_sys::rdma_cm_event, status), 20);
        assert_eq!(offset_of!(rdma_sys::rdma_cm_event, param), 24);
    }

    fn sge(addr: u64, len: u32, lkey: u32) -> Sge {
        Sge { addr, len, lkey }
    }

    fn read_sges(raw: &ibv_send_wr) -> Vec<(u64, u32, u32)> {
        (0..raw.num_sge as usize)
            // SAFETY: `sg_list` points to `num_sge` entries of the caller's live array.
            .map(|i| unsafe { *raw.sg_list.add(i) })
            .map(|s| (s.addr, s.length, s.lkey))
            .collect()
    }

    #[test]
    fn a_send_gathers_its_entries_and_is_signaled() {
        let mut arr = sge_array();
        let sges = [sge(0x1000, 76, 0x11), sge(0x8000, 4096, 0x22)];
        let raw = send_wr(
            &SendWr {
                wr_id: 0x0200_0000_0000_0003,
                op: SendOp::Send,
                sges: &sges,
                signaled: true,
            },
            &mut arr,
        )
        .unwrap();
        assert_eq!(raw.wr_id, 0x0200_0000_0000_0003);
        assert!(raw.next.is_null());
        assert_eq!(raw.opcode, ibv_wr_opcode::IBV_WR_SEND);
        assert_eq!(raw.send_flags, ibv_send_flags::IBV_SEND_SIGNALED.0);
        assert_eq!(raw.num_sge, 2);
        assert_eq!(raw.sg_list, arr.as_mut_ptr());
        assert_eq!(read_sges(&raw), [(0x1000, 76, 0x11), (0x8000, 4096, 0x22)]);
    }

    #[test]
    fn send_with_invalidate_names_the_peer_stag() {
        let mut arr = sge_array();
        let raw = send_wr(
            &SendWr {
                wr_id: 9,
                op: SendOp::SendWithInvalidate { rkey: 0xabcd_ef01 },
                sges: &[sge(0x2000, 76, 0x33)],
                signaled: false,
            },
            &mut arr,
        )
        .unwrap();
        assert_eq!(raw.opcode, ibv_wr_opcode::IBV_WR_SEND_WITH_INV);
        assert_eq!(raw.send_flags, 0);
        // SAFETY: the invalidate member was written above; both members are u32.
        let inv = unsafe { raw.imm_data_invalidated_rkey_union.invalidated_rkey };
        assert_eq!(inv, 0xabcd_ef01);
        assert_eq!(read_sges(&raw), [(0x2000, 76, 0x33)]);
    }

    #[test]
    fn rdma_write_and_read_carry_the_remote_address_and_stag() {
        let remote = RemoteAddr {
            addr: 0x7f00_1234_5000,
            rkey: 0x0000_4502,
        };
        for (op, opcode) in [
            (
                SendOp::RdmaWrite { remote },
                ibv_wr_opcode::IBV_WR_RDMA_WRITE,
            ),
            (SendOp::RdmaRead { remote }, ibv_wr_opcode::IBV_WR_RDMA_READ),
        ] {
            let mut arr = sge_array();
            let raw = send_wr(
                &SendWr {
                    wr_id: 0x0300_0001_0000_0002,
                    op,
                    sges: &[sge(0x9000, 65536, 0x44)],
                    signaled: true,
                },
                &mut arr,
            )
            .unwrap();
            assert_eq!(raw.opcode, opcode);
            // SAFETY: the rdma member of the union was written for these opcodes.
            let rdma = unsafe { raw.wr.rdma };
            assert_eq!(rdma.remote_addr, 0x7f00_1234_5000);
            assert_eq!(rdma.rkey, 0x0000_4502);
            assert_eq!(read_sges(&raw), [(0x9000, 65536, 0x44)]);
        }
    }

    #[test]
    fn local_invalidation_has_no_data() {
        let mut arr = sge_array();
        let raw = send_wr(
            &SendWr {
                wr_id: 0x0600_0000_0000_0004,
                op: SendOp::LocalInvalidate { rkey: 0x0000_0707 },
                sges: &[],
                signaled: true,
            },
            &mut arr,
        )
        .unwrap();
        assert_eq!(raw.opcode, ibv_wr_opcode::IBV_WR_LOCAL_INV);
        assert_eq!(raw.num_sge, 0);
        assert!(raw.sg_list.is_null());
        // SAFETY: the invalidate member was written above.
        let inv = unsafe { raw.imm_data_invalidated_rkey_union.invalidated_rkey };
        assert_eq!(inv, 0x0707);
        assert_eq!(
            send_wr(
                &SendWr {
                    wr_id: 1,
                    op: SendOp::LocalInvalidate { rkey: 1 },
                    sges: &[sge(0, 1, 1)],
                    signaled: true,
                },
                &mut arr
            )
            .err(),
            Some(VerbsError::InvalidArgument(
                "local invalidation carries no data"
            ))
        );
    }

    #[test]
    fn too_many_entries_are_refused_before_posting() {
        let mut arr = sge_array();
        let sges = vec![sge(0, 1, 1); MAX_SGE + 1];
        let wr = SendWr {
            wr_id: 1,
            op: SendOp::Send,
            sges: &sges,
            signaled: true,
        };
        assert_eq!(send_wr(&wr, &mut arr).err(), Some(VerbsError::QueueFull));
        assert_eq!(
            recv_wr(1, &sges, &mut arr).err(),
            Some(VerbsError::QueueFull)
        );
        let full = vec![sge(0x10, 2, 3); MAX_SGE];
        let raw = send_wr(&SendWr { sges: &full, ..wr }, &mut arr).unwrap();
        assert_eq!(raw.num_sge as usize, MAX_SGE);
    }

    #[test]
    fn a_receive_scatters_into_its_entries() {
        let mut arr = sge_array();
        let raw = recv_wr(
            0x0100_0000_0000_0005,
            &[sge(0x4000, 8292 + 28 + 48, 0x55)],
            &mut arr,
        )
        .unwrap();
        assert_eq!(raw.wr_id, 0x0100_0000_0000_0005);
        assert!(raw.next.is_null());
        assert_eq!(raw.num_sge, 1);
        assert_eq!(raw.sg_list, arr.as_mut_ptr());
        assert_eq!(
            (arr[0].addr, arr[0].length, arr[0].lkey),
            (0x4000, 8368, 0x55)
        );
    }

    #[test]
    fn a_window_bind_names_window_region_range_and_rights() {
        let mw = 0x1000 as *mut ibv_mw;
        let mr = 0x2000 as *mut ibv_mr;
        let raw = bind_wr(
            0x0500_0000_0000_0001,
            &Bind {
                mw,
                rkey: 0x0000_3302,
                mr,
                addr: 0x7f00_0000_1000,
                len: 8192,
                access: rdma_sys::ibv_access_flags::IBV_ACCESS_REMOTE_WRITE.0,
            },
            false,
        );
        assert_eq!(raw.wr_id, 0x0500_0000_0000_0001);
        assert_eq!(raw.opcode, ibv_wr_opcode::IBV_WR_BIND_MW);
        assert_eq!(raw.send_flags, 0);
        assert_eq!(raw.num_sge, 0);
        assert!(raw.sg_list.is_null());
        // SAFETY: the bind member of the union was written by `bind_wr`.
        let b = unsafe { raw.bind_mw_tso_union.bind_mw };
        assert_eq!(b.mw, mw);
        assert_eq!(b.rkey, 0x0000_3302);
        assert_eq!(b.bind_info.mr, mr);
        assert_eq!(b.bind_info.addr, 0x7f00_0000_1000);
        assert_eq!(b.bind_info.length, 8192);
        assert_eq!(b.bind_info.mw_access_flags, 2);
    }

    #[test]
    fn rkeys_advance_in_their_low_byte_only() {
        assert_eq!(next_rkey(0x0000_4500), 0x0000_4501);
        assert_eq!(next_rkey(0x1234_56fe), 0x1234_56ff);
        assert_eq!(next_rkey(0x1234_56ff), 0x1234_5600);
        assert_eq!(next_rkey(0xffff_ffff), 0xffff_ff00);
    }
}
