//! Flow control of unexpected PDUs (RFC 7145 §6.7 MaxOutstandingUnexpectedPDUs,
//! §8 flow control).
//!
//! Every iSER message consumes a receive buffer the peer posted in advance.
//! Non-immediate commands are paced by the CmdSN window (the target posts a
//! receive per command it admits); responses are expected by the initiator,
//! which posts a receive for each command it sends. What remains are the
//! "unexpected" PDUs, which each side may have outstanding up to the
//! negotiated MaxOutstandingUnexpectedPDUs and the receiver backs with extra
//! receive buffers:
//!
//! * initiator → target: immediate PDUs (I bit) — commands, task management,
//!   Text, Logout, NOP-Out pings — except the NOP-Out that echoes a target
//!   ping. One is outstanding until its response arrives; an immediate
//!   NOP-Out without ITT until the target acknowledges its CmdSN (a target PDU
//!   with a larger ExpCmdSN);
//! * target → initiator: NOP-In pings (valid TTT; outstanding until the
//!   echoing NOP-Out), Asynchronous Messages and NOP-Ins without ITT
//!   (outstanding until the initiator's ExpStatSN passes their StatSN).
//!
//! A rejected immediate PDU gets no other answer: the Reject retires it
//! ([`Tracker::observe_reject`]).
//!
//! A [`Tracker`] counts one direction. The sender uses it to hold back a PDU
//! that would exceed the limit; the receiver mirrors it to detect a peer that
//! does not respect it (a protocol error that ends the connection).

use rtgt_pdu::{BHS_LEN, Itt, Opcode, PduHeader, Sn, Ttt};

/// What retires an outstanding unexpected PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// A target response carrying this ITT.
    Response(Itt),
    /// A target PDU with ExpCmdSN greater than this CmdSN.
    CmdSnAcked(Sn),
    /// The initiator's NOP-Out echoing this TTT.
    Echo(Ttt),
    /// An initiator PDU with ExpStatSN greater than (or, if `inclusive`,
    /// equal to) this StatSN.
    StatSnAcked {
        /// The StatSN of the unexpected PDU.
        stat_sn: Sn,
        /// Whether ExpStatSN equal to it retires it.
        inclusive: bool,
    },
}

/// Which side sends the PDUs a tracker counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Initiator → target.
    ToTarget,
    /// Target → initiator.
    ToInitiator,
}

/// Whether `h`, sent in `dir`, is an unexpected PDU, and what retires it.
pub fn classify(h: &PduHeader, dir: Direction) -> Option<Retire> {
    match (dir, h) {
        (Direction::ToTarget, PduHeader::NopOut(n)) if n.immediate => {
            if n.ttt != Ttt::RESERVED {
                None // echo of a target ping: expected by the target
            } else if n.itt == Itt::RESERVED {
                Some(Retire::CmdSnAcked(n.cmd_sn))
            } else {
                Some(Retire::Response(n.itt))
            }
        }
        (Direction::ToTarget, h) if h.is_immediate() => match h {
            PduHeader::ScsiCommand(_)
            | PduHeader::TaskMgmtRequest(_)
            | PduHeader::TextRequest(_)
            | PduHeader::LogoutRequest(_) => Some(Retire::Response(h.itt())),
            _ => None,
        },
        (Direction::ToInitiator, PduHeader::NopIn(n)) => {
            if n.ttt != Ttt::RESERVED {
                Some(Retire::Echo(n.ttt))
            } else if n.itt == Itt::RESERVED {
                Some(Retire::StatSnAcked {
                    stat_sn: n.stat_sn,
                    inclusive: true,
                })
            } else {
                None // answer to a NOP-Out
            }
        }
        (Direction::ToInitiator, PduHeader::AsyncMessage(a)) => Some(Retire::StatSnAcked {
            stat_sn: a.stat_sn,
            inclusive: false,
        }),
        _ => None,
    }
}

/// Whether `h` (travelling the other way) retires `r`.
pub fn retires(h: &PduHeader, r: Retire) -> bool {
    match r {
        Retire::Response(itt) => {
            matches!(
                h,
                PduHeader::NopIn(_)
                    | PduHeader::ScsiResponse(_)
                    | PduHeader::TaskMgmtResponse(_)
                    | PduHeader::TextResponse(_)
                    | PduHeader::LogoutResponse(_)
            ) && h.itt() == itt
        }
        Retire::CmdSnAcked(sn) => exp_cmd_sn(h).is_some_and(|e| e.serial_gt(sn)),
        Retire::Echo(ttt) => matches!(h, PduHeader::NopOut(n) if n.ttt == ttt),
        Retire::StatSnAcked { stat_sn, inclusive } => exp_stat_sn(h).is_some_and(|e| {
            if inclusive {
                e.serial_ge(stat_sn)
            } else {
                e.serial_gt(stat_sn)
            }
        }),
    }
}

fn exp_cmd_sn(h: &PduHeader) -> Option<Sn> {
    Some(match h {
        PduHeader::NopIn(x) => x.exp_cmd_sn,
        PduHeader::ScsiResponse(x) => x.exp_cmd_sn,
        PduHeader::TaskMgmtResponse(x) => x.exp_cmd_sn,
        PduHeader::TextResponse(x) => x.exp_cmd_sn,
        PduHeader::LogoutResponse(x) => x.exp_cmd_sn,
        PduHeader::AsyncMessage(x) => x.exp_cmd_sn,
        PduHeader::Reject(x) => x.exp_cmd_sn,
        PduHeader::DataIn(x) => x.exp_cmd_sn,
        PduHeader::R2t(x) => x.exp_cmd_sn,
        _ => return None,
    })
}

fn exp_stat_sn(h: &PduHeader) -> Option<Sn> {
    Some(match h {
        PduHeader::NopOut(x) => x.exp_stat_sn,
        PduHeader::ScsiCommand(x) => x.exp_stat_sn,
        PduHeader::TaskMgmtRequest(x) => x.exp_stat_sn,
        PduHeader::TextRequest(x) => x.exp_stat_sn,
        PduHeader::LogoutRequest(x) => x.exp_stat_sn,
        PduHeader::DataOut(x) => x.exp_stat_sn,
        _ => return None,
    })
}

/// The opcode and ITT of the PDU a Reject answers: the Reject's data segment
/// carries the rejected PDU's complete BHS (RFC 7143 §11.17). `None` when
/// the data segment is shorter than a BHS.
///
/// ```
/// use rtgt_iser::credits::rejected_pdu;
/// use rtgt_pdu::{Itt, Opcode};
///
/// let mut bhs = [0u8; 48];
/// bhs[0] = 0x41; // immediate SCSI Command
/// bhs[16..20].copy_from_slice(&7u32.to_be_bytes());
/// assert_eq!(rejected_pdu(&bhs), Some((Opcode::SCSI_COMMAND, Itt(7))));
/// assert_eq!(rejected_pdu(&bhs[..47]), None);
/// ```
pub fn rejected_pdu(reject_data: &[u8]) -> Option<(Opcode, Itt)> {
    let bhs = reject_data.get(..BHS_LEN)?;
    let itt = bhs.get(16..20)?.try_into().ok().map(u32::from_be_bytes)?;
    Some((Opcode(bhs[0] & 0x3f), Itt(itt)))
}

/// Counts one direction's outstanding unexpected PDUs against a limit.
///
/// ```
/// use rtgt_iser::credits::{Direction, Tracker};
/// use rtgt_pdu::{Itt, NopIn, NopOut, PduHeader, Sn, Ttt};
///
/// let mut t = Tracker::new(Direction::ToTarget, 2);
/// let ping = |itt| PduHeader::NopOut(NopOut { immediate: true, itt: Itt(itt), ttt: Ttt::RESERVED, ..Default::default() });
/// t.admit(&ping(1)).unwrap();
/// t.admit(&ping(2)).unwrap();
/// assert!(t.admit(&ping(3)).is_err()); // the limit is 2
/// t.observe_reply(&PduHeader::NopIn(NopIn { itt: Itt(1), ttt: Ttt::RESERVED, ..Default::default() }));
/// assert_eq!(t.outstanding(), 1);
/// t.admit(&ping(3)).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Tracker {
    dir: Direction,
    limit: u32,
    outstanding: Vec<Retire>,
}

/// Admitting the PDU would exceed the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitReached(pub u32);

impl Tracker {
    /// A tracker for `dir` with `limit` outstanding PDUs (at least 1).
    pub fn new(dir: Direction, limit: u32) -> Self {
        Self {
            dir,
            limit: limit.max(1),
            outstanding: Vec::with_capacity(limit.clamp(1, 1024) as usize),
        }
    }

    /// Changes the limit (after the login negotiated it).
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit.max(1);
    }

    /// The limit.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Outstanding unexpected PDUs.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether `h` may be sent (or, receiving, was allowed to arrive); counts
    /// it if it is unexpected.
    pub fn admit(&mut self, h: &PduHeader) -> Result<(), LimitReached> {
        let Some(r) = classify(h, self.dir) else {
            return Ok(());
        };
        if self.outstanding.len() >= self.limit as usize {
            return Err(LimitReached(self.limit));
        }
        self.outstanding.push(r);
        Ok(())
    }

    /// Whether `h` would need a credit that is not available, without counting it.
    pub fn would_exceed(&self, h: &PduHeader) -> bool {
        classify(h, self.dir).is_some() && self.outstanding.len() >= self.limit as usize
    }

    /// Retires what `h`, travelling the other way, answers.
    pub fn observe_reply(&mut self, h: &PduHeader) {
        self.outstanding.retain(|r| !retires(h, *r));
    }

    /// Retires the PDU a Reject answered (`reject_data` is the Reject's data
    /// segment, the rejected BHS): a rejected immediate command, TMF, Text,
    /// Logout or NOP-Out gets no other answer (its ITT is free again), so
    /// without this its credit would stay taken for the life of the
    /// connection. [`observe_reply`](Self::observe_reply) sees the Reject's
    /// ExpCmdSN as well.
    pub fn observe_reject(&mut self, reject_data: &[u8]) {
        if let Some((_, itt)) = rejected_pdu(reject_data) {
            self.observe_reject_itt(itt);
        }
    }

    /// [`observe_reject`](Self::observe_reject) with the rejected PDU's ITT
    /// already extracted (see [`rejected_pdu`]).
    pub fn observe_reject_itt(&mut self, itt: Itt) {
        if itt != Itt::RESERVED {
            self.outstanding.retain(|r| *r != Retire::Response(itt));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtgt_pdu::{AsyncMessage, NopIn, NopOut, ScsiCommand, TaskMgmtRequest, TaskMgmtResponse};

    #[test]
    fn non_immediate_commands_and_echoes_are_not_unexpected() {
        let cmd = PduHeader::ScsiCommand(ScsiCommand::default());
        assert_eq!(classify(&cmd, Direction::ToTarget), None);
        let echo = PduHeader::NopOut(NopOut {
            immediate: true,
            itt: Itt::RESERVED,
            ttt: Ttt(9),
            ..Default::default()
        });
        assert_eq!(classify(&echo, Direction::ToTarget), None);
        let answer = PduHeader::NopIn(NopIn {
            itt: Itt(4),
            ttt: Ttt::RESERVED,
            ..Default::default()
        });
        assert_eq!(classify(&answer, Direction::ToInitiator), None);
    }

    #[test]
    fn immediate_tmf_is_retired_by_its_response() {
        let mut t = Tracker::new(Direction::ToTarget, 2);
        let tmf = PduHeader::TaskMgmtRequest(TaskMgmtRequest {
            immediate: true,
            itt: Itt(5),
            ..Default::default()
        });
        t.admit(&tmf).unwrap();
        t.observe_reply(&PduHeader::TaskMgmtResponse(TaskMgmtResponse {
            itt: Itt(6),
            ..Default::default()
        }));
        assert_eq!(t.outstanding(), 1);
        t.observe_reply(&PduHeader::TaskMgmtResponse(TaskMgmtResponse {
            itt: Itt(5),
            ..Default::default()
        }));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn unidirectional_nop_out_waits_for_its_cmdsn() {
        let mut t = Tracker::new(Direction::ToTarget, 2);
        let nop = PduHeader::NopOut(NopOut {
            immediate: true,
            itt: Itt::RESERVED,
            ttt: Ttt::RESERVED,
            cmd_sn: Sn(10),
            ..Default::default()
        });
        t.admit(&nop).unwrap();
        let ack = |e| {
            PduHeader::NopIn(NopIn {
                itt: Itt(1),
                ttt: Ttt::RESERVED,
                exp_cmd_sn: Sn(e),
                ..Default::default()
            })
        };
        t.observe_reply(&ack(10));
        assert_eq!(t.outstanding(), 1);
        t.observe_reply(&ack(11));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn a_rejected_immediate_pdu_gives_its_credit_back() {
        let mut t = Tracker::new(Direction::ToTarget, 2);
        let cmd = |itt| {
            PduHeader::ScsiCommand(ScsiCommand {
                immediate: true,
                itt: Itt(itt),
                ..Default::default()
            })
        };
        t.admit(&cmd(5)).unwrap();
        t.admit(&cmd(6)).unwrap();
        assert!(t.would_exceed(&cmd(7)));
        let mut bhs = [0u8; 48];
        bhs[0] = 0x41;
        bhs[16..20].copy_from_slice(&6u32.to_be_bytes());
        // A truncated rejected header names nothing.
        t.observe_reject(&bhs[..40]);
        assert_eq!(t.outstanding(), 2);
        t.observe_reject(&bhs);
        assert_eq!(t.outstanding(), 1);
        t.admit(&cmd(7)).unwrap();
    }

    #[test]
    fn target_pings_and_async_messages() {
        let mut t = Tracker::new(Direction::ToInitiator, 2);
        let ping = PduHeader::NopIn(NopIn {
            itt: Itt::RESERVED,
            ttt: Ttt(77),
            ..Default::default()
        });
        let asy = PduHeader::AsyncMessage(AsyncMessage {
            stat_sn: Sn(20),
            ..Default::default()
        });
        t.admit(&ping).unwrap();
        t.admit(&asy).unwrap();
        assert_eq!(t.admit(&ping), Err(LimitReached(2)));
        let echo = PduHeader::NopOut(NopOut {
            immediate: true,
            itt: Itt::RESERVED,
            ttt: Ttt(77),
            exp_stat_sn: Sn(20),
            ..Default::default()
        });
        t.observe_reply(&echo);
        assert_eq!(t.outstanding(), 1); // ExpStatSN 20 does not pass StatSN 20
        let later = PduHeader::NopOut(NopOut {
            immediate: true,
            itt: Itt(3),
            ttt: Ttt::RESERVED,
            exp_stat_sn: Sn(21),
            ..Default::default()
        });
        t.observe_reply(&later);
        assert_eq!(t.outstanding(), 0);
    }
}
