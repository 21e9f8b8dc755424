//! Persistent reservations with several I_T nexuses (SPC-5 §5.14): registration, every
//! reservation type with its access rules, conflicts, preemption, PREEMPT AND ABORT, CLEAR,
//! REGISTER AND MOVE, and the interplay with RESERVE(6).

mod common;

use common::*;
use rtgt_scsi::{AdditionalSense as A, DataDirection, Nexus, Response, SenseKey as K, Status};

fn prout(rig: &Rig, n: &Nexus, sa: u8, ty: u8, rk: u64, sark: u64) -> Response {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    let cdb = [0x5F, sa, ty, 0, 0, 0, 0, 0, 24, 0];
    rig.write(n, &cdb, &p)
}

fn prin(rig: &Rig, n: &Nexus, sa: u8) -> Vec<u8> {
    let r = rig.read(n, &[0x5E, sa, 0, 0, 0, 0, 0, 0x40, 0, 0], 0x4000);
    assert_eq!(r.status, Status::GOOD, "{r:?}");
    r.data_in
}

fn keys(rig: &Rig, n: &Nexus) -> (u32, Vec<u64>) {
    let d = prin(rig, n, 0);
    let generation = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    let len = u32::from_be_bytes([d[4], d[5], d[6], d[7]]) as usize;
    let keys = d[8..8 + len]
        .chunks(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect();
    (generation, keys)
}

fn reservation(rig: &Rig, n: &Nexus) -> Option<(u64, u8)> {
    let d = prin(rig, n, 1);
    if d[7] == 0 {
        return None;
    }
    Some((u64::from_be_bytes(d[8..16].try_into().unwrap()), d[21]))
}

fn good(r: &Response) {
    assert_eq!(r.status, Status::GOOD, "{r:?}");
}

fn conflict(r: &Response) {
    assert_eq!(
        (r.status, r.sense),
        (Status::RESERVATION_CONFLICT, None),
        "{r:?}"
    );
}

fn can_read(rig: &Rig, n: &Nexus) -> bool {
    let r = rig.read(n, &rw10(0x28, 1, 1), 512);
    assert!(
        matches!(r.status, Status::GOOD | Status::RESERVATION_CONFLICT),
        "{r:?}"
    );
    r.status == Status::GOOD
}

fn can_write(rig: &Rig, n: &Nexus) -> bool {
    let r = rig.write(n, &rw10(0x2A, 1, 1), &[0; BS]);
    assert!(
        matches!(r.status, Status::GOOD | Status::RESERVATION_CONFLICT),
        "{r:?}"
    );
    r.status == Status::GOOD
}

/// Clears pending unit attentions and returns them.
fn drain_ua(rig: &Rig, n: &Nexus) -> Vec<A> {
    let mut v = Vec::new();
    loop {
        let r = rig.none(n, &[0; 6]);
        if r.status != Status::CHECK_CONDITION {
            return v;
        }
        let (key, code) = rtgt_scsi::SenseData::parse(r.sense.unwrap().as_bytes()).unwrap();
        assert_eq!(key, K::UNIT_ATTENTION);
        v.push(code);
    }
}

#[test]
fn registration_rules_and_generation() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    assert_eq!(prin(&rig, &a, 0), vec![0; 8]);
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &b, 6, 0, 0xDEAD, 0xB));
    assert_eq!(keys(&rig, &a), (2, vec![0xA, 0xB]));
    // Re-registering with a wrong reservation key conflicts and changes nothing.
    conflict(&prout(&rig, &a, 0, 0, 0x99, 0xA1));
    // An unregistered nexus registering with a non-zero reservation key conflicts.
    conflict(&prout(&rig, &nexus(3, "c"), 0, 0, 1, 2));
    // Unregistering a nexus that is not registered is a no-op without a generation change.
    good(&prout(&rig, &nexus(3, "c"), 0, 0, 0, 0));
    assert_eq!(keys(&rig, &a), (2, vec![0xA, 0xB]));
    good(&prout(&rig, &a, 0, 0, 0xA, 0xA2));
    good(&prout(&rig, &a, 0, 0, 0xA2, 0));
    assert_eq!(keys(&rig, &a), (4, vec![0xB]));
    // READ KEYS cut to 8 bytes still reports the full additional length.
    let r = rig.read(&a, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0], 8);
    assert_eq!(r.data_in, vec![0, 0, 0, 4, 0, 0, 0, 8]);
    // Unsupported options and service actions.
    let mut p = vec![0u8; 24];
    p[20] = 0x01; // APTPL
    let r = rig.write(&a, &[0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0], &p);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST),
        fixed(5, 0x26, 0, Some([0x88, 0, 20]))
    );
    let r = rig.write(&a, &[0x5F, 0, 0, 0, 0, 0, 0, 0, 20, 0], &p[..20]);
    check(&r, K::ILLEGAL_REQUEST, A::PARAMETER_LIST_LENGTH_ERROR);
    for sa in 4..0x20 {
        let r = rig.read(&a, &[0x5E, sa, 0, 0, 0, 0, 0, 0x40, 0, 0], 0x4000);
        assert_eq!(
            check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
            fixed(5, 0x24, 0, Some([0xCC, 0, 1]))
        );
    }
}

#[test]
fn report_capabilities() {
    let rig = Rig::new();
    assert_eq!(
        prin(&rig, &nexus(1, "a"), 2),
        vec![0, 8, 0x10, 0x90, 0xEA, 0x01, 0, 0]
    );
}

#[test]
fn every_reservation_type() {
    // (type, registrant reads, registrant writes, non-registrant reads, non-registrant writes)
    let table = [
        (1u8, true, false, true, false),
        (3, false, false, false, false),
        (5, true, true, true, false),
        (6, true, true, false, false),
        (7, true, true, true, false),
        (8, true, true, false, false),
    ];
    for (ty, reg_r, reg_w, unreg_r, unreg_w) in table {
        let rig = Rig::new();
        let (a, b, c) = (nexus(1, "a"), nexus(2, "b"), nexus(3, "c"));
        for n in [&a, &b, &c] {
            rig.none(n, &[0; 6]);
        }
        good(&prout(&rig, &a, 0, 0, 0, 0xA));
        good(&prout(&rig, &b, 0, 0, 0, 0xB));
        // Reserving with the wrong key or an invalid type fails.
        conflict(&prout(&rig, &a, 1, ty, 0xB, 0));
        check(
            &prout(&rig, &a, 1, 2, 0xA, 0),
            K::ILLEGAL_REQUEST,
            A::INVALID_FIELD_IN_CDB,
        );
        good(&prout(&rig, &a, 1, ty, 0xA, 0));
        let all_registrants = ty >= 7;
        assert_eq!(
            reservation(&rig, &c),
            Some((if all_registrants { 0 } else { 0xA }, ty)),
            "type {ty}"
        );
        // Reserving again with the same type is fine for the holder.
        good(&prout(&rig, &a, 1, ty, 0xA, 0));
        assert!(
            can_read(&rig, &a) && can_write(&rig, &a),
            "holder, type {ty}"
        );
        assert_eq!(
            (can_read(&rig, &b), can_write(&rig, &b)),
            (reg_r, reg_w),
            "registrant, type {ty}"
        );
        assert_eq!(
            (can_read(&rig, &c), can_write(&rig, &c)),
            (unreg_r, unreg_w),
            "non-registrant, type {ty}"
        );
        // Commands that never conflict with persistent reservations.
        good(&rig.none(&c, &[0; 6]));
        good(&rig.read(&c, &[0x12, 0, 0, 0, 36, 0], 36));
        good(&rig.read(&c, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8));
        let ms = rig.read(&c, &[0x1A, 0, 0x3F, 0, 0xFF, 0], 255);
        assert_eq!(ms.status == Status::GOOD, unreg_r, "MODE SENSE, type {ty}");
        // A different nexus cannot reserve unless it is a holder (all registrants types).
        let other = prout(&rig, &b, 1, ty, 0xB, 0);
        if all_registrants {
            good(&other);
        } else {
            conflict(&other);
            // RELEASE from a registered non-holder is a no-op.
            good(&prout(&rig, &b, 2, ty, 0xB, 0));
            assert!(reservation(&rig, &c).is_some());
            let wrong = if ty == 1 { 3 } else { 1 };
            let r = prout(&rig, &a, 2, wrong, 0xA, 0);
            assert_eq!(
                check(
                    &r,
                    K::ILLEGAL_REQUEST,
                    A::INVALID_RELEASE_OF_PERSISTENT_RESERVATION
                ),
                fixed(5, 0x26, 0x04, None)
            );
        }
        drain_ua(&rig, &b);
        good(&prout(&rig, &a, 2, ty, 0xA, 0));
        assert_eq!(reservation(&rig, &c), None);
        let expected = if matches!(ty, 5..=8) {
            vec![A::RESERVATIONS_RELEASED]
        } else {
            vec![]
        };
        assert_eq!(drain_ua(&rig, &b), expected, "type {ty}");
        assert!(drain_ua(&rig, &a).is_empty());
        // Generation: two registrations only.
        assert_eq!(keys(&rig, &a).0, 2);
    }
}

#[test]
fn unregistering_the_holder_releases() {
    for (ty, shared) in [(3u8, false), (6, false), (8, true)] {
        let rig = Rig::new();
        let (a, b) = (nexus(1, "a"), nexus(2, "b"));
        rig.none(&b, &[0; 6]);
        good(&prout(&rig, &a, 0, 0, 0, 0xA));
        good(&prout(&rig, &b, 0, 0, 0, 0xB));
        good(&prout(&rig, &a, 1, ty, 0xA, 0));
        good(&prout(&rig, &a, 0, 0, 0xA, 0));
        let observer = nexus(9, "observer");
        if shared {
            assert_eq!(reservation(&rig, &observer), Some((0, ty)));
            good(&prout(&rig, &b, 2, ty, 0xB, 0));
        }
        assert_eq!(reservation(&rig, &observer), None, "type {ty}");
        let ua = drain_ua(&rig, &b);
        assert_eq!(
            ua,
            if ty == 6 {
                vec![A::RESERVATIONS_RELEASED]
            } else {
                vec![]
            },
            "type {ty}"
        );
    }
}

#[test]
fn read_full_status() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &b, 0, 0, 0, 0xB));
    good(&prout(&rig, &a, 1, 3, 0xA, 0));
    let d = prin(&rig, &a, 3);
    let port = |n: &Nexus| {
        let mut s = n.initiator_port.as_bytes().to_vec();
        s.push(0);
        while s.len() % 4 != 0 {
            s.push(0);
        }
        s
    };
    let descriptor = |key: u64, holder: bool, n: &Nexus| {
        let name = port(n);
        let mut v = key.to_be_bytes().to_vec();
        v.extend_from_slice(&[
            0,
            0,
            0,
            0,
            u8::from(holder),
            if holder { 3 } else { 0 },
            0,
            0,
            0,
            0,
            0,
            1,
        ]);
        v.extend_from_slice(&((name.len() + 4) as u32).to_be_bytes());
        v.extend_from_slice(&[0x45, 0]);
        v.extend_from_slice(&(name.len() as u16).to_be_bytes());
        v.extend_from_slice(&name);
        v
    };
    let body = [descriptor(0xA, true, &a), descriptor(0xB, false, &b)].concat();
    let mut want = vec![0, 0, 0, 2];
    want.extend_from_slice(&(body.len() as u32).to_be_bytes());
    want.extend_from_slice(&body);
    assert_eq!(d, want);
}

#[test]
fn preempt_and_preempt_and_abort() {
    let rig = Rig::new();
    let (a, b, c) = (nexus(1, "a"), nexus(2, "b"), nexus(3, "c"));
    for n in [&a, &b, &c] {
        rig.none(n, &[0; 6]);
    }
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &b, 0, 0, 0, 0xB));
    good(&prout(&rig, &a, 1, 1, 0xA, 0));
    let generation = keys(&rig, &a).0;
    // b takes the reservation away from a with another type.
    let r = prout(&rig, &b, 4, 3, 0xB, 0xA);
    good(&r);
    assert!(r.abort_nexuses.is_empty());
    assert_eq!(reservation(&rig, &c), Some((0xB, 3)));
    assert_eq!(keys(&rig, &c), (generation + 1, vec![0xB]));
    assert_eq!(drain_ua(&rig, &a), vec![A::REGISTRATIONS_PREEMPTED]);
    assert!(!can_read(&rig, &a));
    // PREEMPT AND ABORT names the nexuses whose tasks must be aborted.
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    let r = prout(&rig, &b, 5, 3, 0xB, 0xA);
    good(&r);
    assert_eq!(r.abort_nexuses, vec![a.id]);
    assert_eq!(drain_ua(&rig, &a), vec![A::REGISTRATIONS_PREEMPTED]);
    // Preempting a key nobody holds conflicts; a zero key without reservation is invalid.
    conflict(&prout(&rig, &b, 4, 3, 0xB, 0x77));
    good(&prout(&rig, &b, 2, 3, 0xB, 0));
    let r = prout(&rig, &b, 4, 3, 0xB, 0);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST),
        fixed(5, 0x26, 0, Some([0x80, 0, 8]))
    );
    // A non-registrant cannot preempt.
    conflict(&prout(&rig, &c, 4, 3, 0, 0xB));
}

#[test]
fn preempt_with_shared_key_keeps_the_preempting_registration() {
    // libiscsi registers the same key from two nexuses and preempts it from one of them.
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    good(&prout(&rig, &a, 6, 0, 0, 0x42));
    good(&prout(&rig, &b, 6, 0, 0, 0x42));
    let (generation, k) = keys(&rig, &a);
    assert_eq!(k, vec![0x42, 0x42]);
    good(&prout(&rig, &b, 4, 3, 0x42, 0x42));
    assert_eq!(keys(&rig, &b), (generation + 1, vec![0x42]));
    assert_eq!(drain_ua(&rig, &a), vec![A::REGISTRATIONS_PREEMPTED]);
    // b is still registered: it can reserve and release.
    good(&prout(&rig, &b, 1, 1, 0x42, 0));
    good(&prout(&rig, &b, 2, 1, 0x42, 0));
}

#[test]
fn all_registrants_preempt_with_zero_key() {
    let rig = Rig::new();
    let (a, b, c) = (nexus(1, "a"), nexus(2, "b"), nexus(3, "c"));
    for n in [&a, &b, &c] {
        rig.none(n, &[0; 6]);
    }
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &b, 0, 0, 0, 0xB));
    good(&prout(&rig, &c, 0, 0, 0, 0xC));
    good(&prout(&rig, &a, 1, 8, 0xA, 0));
    let r = prout(&rig, &b, 5, 3, 0xB, 0);
    good(&r);
    assert_eq!(r.abort_nexuses, vec![a.id, c.id]);
    assert_eq!(reservation(&rig, &b), Some((0xB, 3)));
    assert_eq!(keys(&rig, &b).1, vec![0xB]);
}

#[test]
fn clear() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    rig.none(&b, &[0; 6]);
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &b, 0, 0, 0, 0xB));
    good(&prout(&rig, &a, 1, 3, 0xA, 0));
    let generation = keys(&rig, &a).0;
    conflict(&prout(&rig, &a, 3, 0, 0xB, 0));
    good(&prout(&rig, &a, 3, 0, 0xA, 0));
    assert_eq!(keys(&rig, &a), (generation + 1, vec![]));
    assert_eq!(reservation(&rig, &a), None);
    assert_eq!(drain_ua(&rig, &b), vec![A::RESERVATIONS_PREEMPTED]);
}

fn register_and_move(
    rig: &Rig,
    n: &Nexus,
    rk: u64,
    sark: u64,
    unreg: bool,
    port: u16,
    dest: &str,
) -> Response {
    let mut name = dest.as_bytes().to_vec();
    name.push(0);
    while name.len() % 4 != 0 {
        name.push(0);
    }
    let mut tid = vec![0x45, 0];
    tid.extend_from_slice(&(name.len() as u16).to_be_bytes());
    tid.extend_from_slice(&name);
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&rk.to_be_bytes());
    p[8..16].copy_from_slice(&sark.to_be_bytes());
    p[17] = if unreg { 2 } else { 0 };
    p[18..20].copy_from_slice(&port.to_be_bytes());
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend_from_slice(&tid);
    let len = p.len() as u32;
    let mut cdb = [0x5F, 7, 1, 0, 0, 0, 0, 0, 0, 0];
    cdb[5..9].copy_from_slice(&len.to_be_bytes());
    rig.write(n, &cdb, &p)
}

#[test]
fn register_and_move_transfers_the_reservation() {
    let rig = Rig::new();
    let (a, c) = (nexus(1, "a"), nexus(3, "c"));
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    // Not the holder yet.
    conflict(&register_and_move(
        &rig,
        &a,
        0xA,
        0xC,
        false,
        1,
        &c.initiator_port,
    ));
    good(&prout(&rig, &a, 1, 1, 0xA, 0));
    let r = register_and_move(&rig, &a, 0xA, 0, false, 1, &c.initiator_port);
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST);
    let r = register_and_move(&rig, &a, 0xA, 0xC, false, 9, &c.initiator_port);
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST);
    let r = register_and_move(&rig, &a, 0xA, 0xC, false, 1, &a.initiator_port);
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST);
    good(&register_and_move(
        &rig,
        &a,
        0xA,
        0xC,
        false,
        1,
        &c.initiator_port,
    ));
    assert_eq!(reservation(&rig, &a), Some((0xC, 1)));
    assert_eq!(keys(&rig, &a).1, vec![0xA, 0xC]);
    assert!(can_write(&rig, &c));
    assert!(!can_write(&rig, &a));
    // And back, unregistering the source.
    good(&register_and_move(
        &rig,
        &c,
        0xC,
        0xA1,
        true,
        1,
        &a.initiator_port,
    ));
    assert_eq!(reservation(&rig, &a), Some((0xA1, 1)));
    assert_eq!(keys(&rig, &a).1, vec![0xA1]);
}

#[test]
fn registrations_survive_nexus_loss() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &a, 1, 1, 0xA, 0));
    rig.lu.nexus_lost(a.id);
    let again = Nexus {
        id: rtgt_scsi::NexusId(17),
        ..a.clone()
    };
    assert_eq!(reservation(&rig, &again), Some((0xA, 1)));
    assert!(can_write(&rig, &again));
    good(&prout(&rig, &again, 2, 1, 0xA, 0));
}

#[test]
fn reserve6_interplay() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    good(&rig.none(&a, &[0x16, 0, 0, 0, 0, 0]));
    good(&rig.none(&a, &[0x16, 0, 0, 0, 0, 0]));
    conflict(&rig.none(&b, &[0x16, 0, 0, 0, 0, 0]));
    // RELEASE from another nexus is a no-op; its other commands conflict, INQUIRY does not.
    good(&rig.none(&b, &[0x17, 0, 0, 0, 0, 0]));
    conflict(&rig.read(&b, &[0x1A, 0, 0x3F, 0, 0xFF, 0], 255));
    conflict(&rig.none(&b, &[0; 6]));
    good(&rig.read(&b, &[0x12, 0, 0, 0, 36, 0], 36));
    good(&rig.read(&a, &[0x1A, 0, 0x3F, 0, 0xFF, 0], 255));
    // Compatible reservation handling: PR IN and registration are allowed, RESERVE is not.
    good(&rig.read(&b, &[0x5E, 0, 0, 0, 0, 0, 0, 0, 8, 0], 8));
    good(&prout(&rig, &b, 0, 0, 0, 0xB));
    conflict(&prout(&rig, &b, 1, 1, 0xB, 0));
    good(&rig.none(&a, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    good(&rig.none(&b, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    good(&rig.none(&b, &[0x17, 0, 0, 0, 0, 0]));
    // With a persistent reservation, RESERVE conflicts and RELEASE is a no-op.
    good(&prout(&rig, &b, 1, 1, 0xB, 0));
    conflict(&rig.none(&a, &[0x16, 0, 0, 0, 0, 0]));
    good(&rig.none(&a, &[0x17, 0, 0, 0, 0, 0]));
    assert_eq!(reservation(&rig, &a), Some((0xB, 1)));
}

#[test]
fn reserve6_is_released_by_nexus_loss_and_reset() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    good(&rig.none(&a, &[0x16, 0, 0, 0, 0, 0]));
    rig.lu.nexus_lost(a.id);
    good(&rig.none(&b, &[0x16, 0, 0, 0, 0, 0]));
    rig.lu.reset(rtgt_scsi::ResetKind::LogicalUnit);
    assert_eq!(
        drain_ua(&rig, &b),
        vec![A::BUS_DEVICE_RESET_FUNCTION_OCCURRED]
    );
    good(&rig.none(&a, &[0x16, 0, 0, 0, 0, 0]));
    // Persistent reservations survive the reset.
    good(&rig.none(&a, &[0x17, 0, 0, 0, 0, 0]));
    good(&prout(&rig, &a, 0, 0, 0, 0xA));
    good(&prout(&rig, &a, 1, 3, 0xA, 0));
    rig.lu.reset(rtgt_scsi::ResetKind::TargetWarm);
    drain_ua(&rig, &a);
    assert_eq!(reservation(&rig, &a), Some((0xA, 3)));
    let _ = DataDirection::None;
}
