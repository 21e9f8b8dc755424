//! Persistent reservations (SPC-5 §5.14, PERSISTENT RESERVE IN §6.16, PERSISTENT RESERVE OUT
//! §6.17) and their interaction with RESERVE(6/10)/RELEASE(6/10) reservations (SPC-2 §5.5.1,
//! compatible reservation handling SPC-5 §5.14.3).
//!
//! Registrations are held per I_T nexus identity (initiator port name and relative target
//! port), so they survive an I_T nexus loss. SPEC_I_PT, ALL_TG_PT and APTPL are not supported
//! (REPORT CAPABILITIES says so). All six reservation types are implemented with the access
//! rules of SPC-5 table 72 as applied to SBC-4 commands (SBC-4 table 13).

use std::sync::Arc;

use crate::sense::{AdditionalSense, ScsiError, SenseError, SenseKey};
use crate::ua::UnitAttention;

/// Write Exclusive.
pub const TYPE_WE: u8 = 1;
/// Exclusive Access.
pub const TYPE_EA: u8 = 3;
/// Write Exclusive – Registrants Only.
pub const TYPE_WE_RO: u8 = 5;
/// Exclusive Access – Registrants Only.
pub const TYPE_EA_RO: u8 = 6;
/// Write Exclusive – All Registrants.
pub const TYPE_WE_AR: u8 = 7;
/// Exclusive Access – All Registrants.
pub const TYPE_EA_AR: u8 = 8;

fn valid_type(t: u8) -> bool {
    matches!(
        t,
        TYPE_WE | TYPE_EA | TYPE_WE_RO | TYPE_EA_RO | TYPE_WE_AR | TYPE_EA_AR
    )
}

fn all_registrants(t: u8) -> bool {
    matches!(t, TYPE_WE_AR | TYPE_EA_AR)
}

fn registrants_only(t: u8) -> bool {
    matches!(t, TYPE_WE_RO | TYPE_EA_RO)
}

/// The identity of an I_T nexus that registrations refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ItId {
    pub port: Arc<str>,
    pub target_port: u16,
}

impl ItId {
    fn same(&self, other: &ItId) -> bool {
        self.target_port == other.target_port && self.port.eq_ignore_ascii_case(&other.port)
    }
}

/// How a command accesses the medium, for conflict checking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Never conflicts (INQUIRY, REPORT LUNS, REQUEST SENSE, PERSISTENT RESERVE IN/OUT, ...).
    Free,
    /// Allowed under persistent reservations, conflicts with a RESERVE(6) of another nexus
    /// (TEST UNIT READY, READ CAPACITY).
    PrFree,
    /// Reads the medium or its state.
    Read,
    /// Modifies the medium or the logical unit state.
    Write,
}

#[derive(Debug, Clone)]
struct Registration {
    it: ItId,
    key: u64,
}

#[derive(Debug, Clone)]
struct Reservation {
    /// The holder (meaningful for types other than all registrants).
    holder: ItId,
    ty: u8,
}

/// Unit attentions and aborted nexuses a PERSISTENT RESERVE OUT produced.
#[derive(Debug, Default)]
pub(crate) struct PrEffects {
    pub ua: Vec<(ItId, UnitAttention)>,
    /// Nexuses whose registrations PREEMPT AND ABORT removed.
    pub preempted: Vec<ItId>,
}

/// The persistent reservation state of a logical unit.
#[derive(Debug, Default)]
pub(crate) struct PrState {
    regs: Vec<Registration>,
    res: Option<Reservation>,
    generation: u32,
}

fn conflict() -> ScsiError {
    ScsiError::ReservationConflict
}

fn param(byte: u16, bit: Option<u8>) -> ScsiError {
    SenseError::invalid_param_field(byte, bit).into()
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// An iSCSI TransportID for an initiator port (SPC-5 §7.6.4.6, format 01b).
fn transport_id(port: &str) -> Vec<u8> {
    let mut name: Vec<u8> = port.bytes().take(220).collect();
    name.push(0);
    while name.len() % 4 != 0 {
        name.push(0);
    }
    let mut v = vec![0x45, 0];
    v.extend_from_slice(&(name.len() as u16).to_be_bytes());
    v.extend_from_slice(&name);
    v
}

/// Parses an iSCSI TransportID naming an initiator port; returns the port name.
fn parse_transport_id(t: &[u8], at: u16) -> Result<String, ScsiError> {
    if t.len() < 4 {
        return Err(SenseError::parameter_list_length().into());
    }
    if t[0] != 0x45 {
        // Only iSCSI initiator port TransportIDs (format 01b) name a single I_T nexus.
        return Err(param(at, Some(7)));
    }
    let len = usize::from(u16::from_be_bytes([t[2], t[3]]));
    let Some(body) = t.get(4..4 + len) else {
        return Err(SenseError::parameter_list_length().into());
    };
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let name = std::str::from_utf8(&body[..end]).map_err(|_| param(at + 4, None))?;
    if !name.contains(",i,0x") {
        return Err(param(at + 4, None));
    }
    Ok(name.to_owned())
}

impl PrState {
    fn reg(&self, it: &ItId) -> Option<&Registration> {
        self.regs.iter().find(|r| r.it.same(it))
    }

    /// Whether a persistent reservation exists.
    pub(crate) fn reserved(&self) -> bool {
        self.res.is_some()
    }

    fn is_holder(&self, it: &ItId) -> bool {
        match &self.res {
            Some(r) if all_registrants(r.ty) => self.reg(it).is_some(),
            Some(r) => r.holder.same(it),
            None => false,
        }
    }

    /// Checks a command against the persistent reservation (SPC-5 table 72).
    pub(crate) fn check(&self, it: &ItId, access: Access) -> Result<(), ScsiError> {
        let Some(res) = &self.res else {
            return Ok(());
        };
        if matches!(access, Access::Free | Access::PrFree) || self.is_holder(it) {
            return Ok(());
        }
        let registered = self.reg(it).is_some();
        let allowed = match res.ty {
            TYPE_WE => access == Access::Read,
            TYPE_EA => false,
            TYPE_WE_RO | TYPE_WE_AR => registered || access == Access::Read,
            _ => registered,
        };
        if allowed { Ok(()) } else { Err(conflict()) }
    }

    /// Releases the reservation after the holder's registration went away.
    fn released_by_unregister(&mut self, it: &ItId, effects: &mut PrEffects) {
        let Some(res) = &self.res else {
            return;
        };
        let released = if all_registrants(res.ty) {
            self.regs.is_empty()
        } else {
            res.holder.same(it)
        };
        if released {
            let ty = res.ty;
            self.res = None;
            if registrants_only(ty) || all_registrants(ty) {
                for r in &self.regs {
                    effects
                        .ua
                        .push((r.it.clone(), UnitAttention::ReservationsReleased));
                }
            }
        }
    }

    fn remove_regs(&mut self, keep: &ItId, key: Option<u64>) -> Vec<ItId> {
        let mut removed = Vec::new();
        self.regs.retain(|r| {
            let hit = !r.it.same(keep) && key.is_none_or(|k| r.key == k);
            if hit {
                removed.push(r.it.clone());
            }
            !hit
        });
        removed
    }

    /// PERSISTENT RESERVE OUT (parameter data already transferred).
    pub(crate) fn out(
        &mut self,
        it: &ItId,
        sa: u8,
        scope: u8,
        ty: u8,
        data: &[u8],
        target_ports: &[u16],
    ) -> Result<PrEffects, ScsiError> {
        let mut effects = PrEffects::default();
        if sa == 7 {
            return self
                .register_and_move(it, data, target_ports)
                .map(|()| effects);
        }
        if data.len() != 24 {
            return Err(SenseError::parameter_list_length().into());
        }
        let rk = be64(data, 0);
        let sark = be64(data, 8);
        let flags = data[20];
        if matches!(sa, 1 | 2 | 4 | 5) {
            if scope != 0 {
                return Err(SenseError::invalid_cdb_field(2, Some(7)).into());
            }
            if !valid_type(ty) {
                return Err(SenseError::invalid_cdb_field(2, Some(3)).into());
            }
        }
        let mine = self.reg(it).map(|r| r.key);
        match sa {
            0 | 6 => {
                if flags & 0x08 != 0 && sa == 0 {
                    return Err(param(20, Some(3)));
                }
                if flags & 0x04 != 0 {
                    return Err(param(20, Some(2)));
                }
                if flags & 0x01 != 0 {
                    return Err(param(20, Some(0)));
                }
                match mine {
                    None if sa == 0 && rk != 0 => return Err(conflict()),
                    None if sark == 0 => {}
                    None => {
                        self.regs.push(Registration {
                            it: it.clone(),
                            key: sark,
                        });
                        self.generation = self.generation.wrapping_add(1);
                    }
                    Some(k) if sa == 0 && k != rk => return Err(conflict()),
                    Some(_) if sark == 0 => {
                        self.regs.retain(|r| !r.it.same(it));
                        self.released_by_unregister(it, &mut effects);
                        self.generation = self.generation.wrapping_add(1);
                    }
                    Some(_) => {
                        if let Some(r) = self.regs.iter_mut().find(|r| r.it.same(it)) {
                            r.key = sark;
                        }
                        self.generation = self.generation.wrapping_add(1);
                    }
                }
            }
            1 => {
                if mine != Some(rk) {
                    return Err(conflict());
                }
                match &self.res {
                    Some(r) if self.is_holder(it) && r.ty == ty => {}
                    Some(_) => return Err(conflict()),
                    None => {
                        self.res = Some(Reservation {
                            holder: it.clone(),
                            ty,
                        });
                    }
                }
            }
            2 => {
                if mine != Some(rk) {
                    return Err(conflict());
                }
                match &self.res {
                    Some(r) if self.is_holder(it) => {
                        if r.ty != ty {
                            return Err(SenseError::new(
                                SenseKey::ILLEGAL_REQUEST,
                                AdditionalSense::INVALID_RELEASE_OF_PERSISTENT_RESERVATION,
                            )
                            .into());
                        }
                        let old = r.ty;
                        self.res = None;
                        if registrants_only(old) || all_registrants(old) {
                            for reg in self.regs.iter().filter(|reg| !reg.it.same(it)) {
                                effects
                                    .ua
                                    .push((reg.it.clone(), UnitAttention::ReservationsReleased));
                            }
                        }
                    }
                    _ => {}
                }
            }
            3 => {
                if mine != Some(rk) {
                    return Err(conflict());
                }
                for reg in self.regs.iter().filter(|reg| !reg.it.same(it)) {
                    effects
                        .ua
                        .push((reg.it.clone(), UnitAttention::ReservationsPreempted));
                }
                self.regs.clear();
                self.res = None;
                self.generation = self.generation.wrapping_add(1);
            }
            4 | 5 => {
                if mine != Some(rk) {
                    return Err(conflict());
                }
                let removed = match self.res.clone() {
                    Some(r) if all_registrants(r.ty) && sark == 0 => {
                        let removed = self.remove_regs(it, None);
                        self.res = Some(Reservation {
                            holder: it.clone(),
                            ty,
                        });
                        removed
                    }
                    Some(r)
                        if !all_registrants(r.ty)
                            && self.reg(&r.holder).map(|h| h.key) == Some(sark) =>
                    {
                        let removed = self.remove_regs(it, Some(sark));
                        self.res = Some(Reservation {
                            holder: it.clone(),
                            ty,
                        });
                        if r.ty != ty {
                            for reg in self.regs.iter().filter(|reg| !reg.it.same(it)) {
                                effects
                                    .ua
                                    .push((reg.it.clone(), UnitAttention::ReservationsReleased));
                            }
                        }
                        removed
                    }
                    _ => {
                        if sark == 0 {
                            return Err(param(8, None));
                        }
                        let removed = self.remove_regs(it, Some(sark));
                        if removed.is_empty() {
                            return Err(conflict());
                        }
                        removed
                    }
                };
                for r in &removed {
                    effects
                        .ua
                        .push((r.clone(), UnitAttention::RegistrationsPreempted));
                }
                if sa == 5 {
                    effects.preempted = removed;
                }
                self.generation = self.generation.wrapping_add(1);
            }
            _ => return Err(SenseError::invalid_cdb_field(1, Some(4)).into()),
        }
        Ok(effects)
    }

    fn register_and_move(
        &mut self,
        it: &ItId,
        data: &[u8],
        target_ports: &[u16],
    ) -> Result<(), ScsiError> {
        if data.len() < 24 {
            return Err(SenseError::parameter_list_length().into());
        }
        let rk = be64(data, 0);
        let sark = be64(data, 8);
        let unreg = data[17] & 0x02 != 0;
        let aptpl = data[17] & 0x01 != 0;
        let rel_port = u16::from_be_bytes([data[18], data[19]]);
        let tid_len = u32::from_be_bytes([data[20], data[21], data[22], data[23]]) as usize;
        if self.reg(it).map(|r| r.key) != Some(rk) {
            return Err(conflict());
        }
        match &self.res {
            Some(r) if !all_registrants(r.ty) && r.holder.same(it) => {}
            _ => return Err(conflict()),
        }
        if aptpl {
            return Err(param(17, Some(0)));
        }
        if sark == 0 {
            return Err(param(8, None));
        }
        if 24 + tid_len != data.len() {
            return Err(SenseError::parameter_list_length().into());
        }
        let port = parse_transport_id(&data[24..], 24)?;
        if !target_ports.contains(&rel_port) {
            return Err(param(18, None));
        }
        let dest = ItId {
            port: port.into(),
            target_port: rel_port,
        };
        if dest.same(it) {
            return Err(param(24, None));
        }
        self.regs.retain(|r| !r.it.same(&dest));
        self.regs.push(Registration {
            it: dest.clone(),
            key: sark,
        });
        if let Some(r) = self.res.as_mut() {
            r.holder = dest;
        }
        if unreg {
            self.regs.retain(|r| !r.it.same(it));
        }
        self.generation = self.generation.wrapping_add(1);
        Ok(())
    }

    /// PERSISTENT RESERVE IN parameter data (before cutting to the allocation length).
    pub(crate) fn read(&self, sa: u8) -> Result<Vec<u8>, SenseError> {
        let mut v = Vec::with_capacity(64);
        match sa {
            0 => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                v.extend_from_slice(&((self.regs.len() * 8) as u32).to_be_bytes());
                for r in &self.regs {
                    v.extend_from_slice(&r.key.to_be_bytes());
                }
            }
            1 => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                match &self.res {
                    None => v.extend_from_slice(&0u32.to_be_bytes()),
                    Some(r) => {
                        v.extend_from_slice(&16u32.to_be_bytes());
                        let key = if all_registrants(r.ty) {
                            0
                        } else {
                            self.reg(&r.holder).map_or(0, |h| h.key)
                        };
                        v.extend_from_slice(&key.to_be_bytes());
                        v.extend_from_slice(&[0, 0, 0, 0, 0, r.ty, 0, 0]);
                    }
                }
            }
            2 => {
                // CRH; TMV with ALLOW COMMANDS 001b; type mask: WR_EX_AR, EX_AC_RO, WR_EX_RO,
                // EX_AC, WR_EX, EX_AC_AR.
                v.extend_from_slice(&[0x00, 0x08, 0x10, 0x90, 0xEA, 0x01, 0x00, 0x00]);
            }
            3 => {
                v.extend_from_slice(&self.generation.to_be_bytes());
                let mut body = Vec::new();
                for r in &self.regs {
                    let holder = self.is_holder(&r.it);
                    body.extend_from_slice(&r.key.to_be_bytes());
                    body.extend_from_slice(&[0; 4]);
                    body.push(u8::from(holder));
                    body.push(if holder {
                        self.res.as_ref().map_or(0, |x| x.ty)
                    } else {
                        0
                    });
                    body.extend_from_slice(&[0; 4]);
                    body.extend_from_slice(&r.it.target_port.to_be_bytes());
                    let tid = transport_id(&r.it.port);
                    body.extend_from_slice(&(tid.len() as u32).to_be_bytes());
                    body.extend_from_slice(&tid);
                }
                v.extend_from_slice(&(body.len() as u32).to_be_bytes());
                v.extend_from_slice(&body);
            }
            _ => return Err(SenseError::invalid_cdb_field(1, Some(4))),
        }
        Ok(v)
    }

    /// Whether any registration belongs to this identity (tests and diagnostics).
    #[cfg(test)]
    pub(crate) fn key_of(&self, it: &ItId) -> Option<u64> {
        self.reg(it).map(|r| r.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn it(n: &str) -> ItId {
        ItId {
            port: format!("iqn.{n},i,0x000000000001").into(),
            target_port: 1,
        }
    }

    fn params(rk: u64, sark: u64) -> Vec<u8> {
        let mut p = vec![0u8; 24];
        p[..8].copy_from_slice(&rk.to_be_bytes());
        p[8..16].copy_from_slice(&sark.to_be_bytes());
        p
    }

    #[test]
    fn register_reserve_release() {
        let mut s = PrState::default();
        let a = it("a");
        s.out(&a, 0, 0, 0, &params(0, 0x11), &[1]).unwrap();
        assert_eq!(s.key_of(&a), Some(0x11));
        assert_eq!(
            s.out(&a, 0, 0, 0, &params(0x12, 0x13), &[1]).unwrap_err(),
            conflict()
        );
        s.out(&a, 1, 0, TYPE_EA, &params(0x11, 0), &[1]).unwrap();
        assert_eq!(
            s.read(1).unwrap(),
            vec![
                0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0x11, 0, 0, 0, 0, 0, 3, 0, 0
            ]
        );
        let e = s
            .out(&a, 2, 0, TYPE_WE, &params(0x11, 0), &[1])
            .unwrap_err();
        assert_eq!(
            e.sense().unwrap().code,
            AdditionalSense::INVALID_RELEASE_OF_PERSISTENT_RESERVATION
        );
        s.out(&a, 2, 0, TYPE_EA, &params(0x11, 0), &[1]).unwrap();
        assert!(!s.reserved());
    }

    #[test]
    fn invalid_type_and_scope() {
        let mut s = PrState::default();
        let a = it("a");
        assert_eq!(
            s.out(&a, 1, 0, 2, &params(0, 0), &[1]).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(3)).into()
        );
        assert_eq!(
            s.out(&a, 1, 1, 1, &params(0, 0), &[1]).unwrap_err(),
            SenseError::invalid_cdb_field(2, Some(7)).into()
        );
        assert_eq!(
            s.out(&a, 0, 0, 0, &params(0, 1)[..23], &[1]).unwrap_err(),
            SenseError::parameter_list_length().into()
        );
        let mut p = params(0, 1);
        p[20] = 0x01;
        assert_eq!(
            s.out(&a, 0, 0, 0, &p, &[1]).unwrap_err(),
            param(20, Some(0))
        );
    }

    #[test]
    fn transport_id_round_trip() {
        let t = transport_id("iqn.x,i,0x123456789abc");
        assert_eq!(t.len() % 4, 0);
        assert_eq!(
            parse_transport_id(&t, 24).unwrap(),
            "iqn.x,i,0x123456789abc"
        );
        assert!(parse_transport_id(&[0x05, 0, 0, 4, b'a', 0, 0, 0], 24).is_err());
    }
}
