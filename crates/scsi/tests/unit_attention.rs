//! Unit attention delivery order and clearing (SAM-5 §5.14, SPC-5 §5.13).

mod common;

use common::*;
use rtgt_scsi::{AdditionalSense as A, ResetKind, SenseKey as K, Status, UnitAttention};

fn ua_bytes(asc: u8, ascq: u8) -> Vec<u8> {
    fixed(6, asc, ascq, None)
}

#[test]
fn reset_reaches_every_known_nexus_including_the_issuer() {
    let rig = Rig::new();
    let (a, b, c) = (nexus(1, "a"), nexus(2, "b"), nexus(3, "c"));
    rig.lu.nexus_established(&a);
    rig.none(&b, &[0; 6]);
    rig.lu.reset(ResetKind::LogicalUnit);
    for n in [&a, &b] {
        assert_eq!(
            check(
                &rig.none(n, &[0; 6]),
                K::UNIT_ATTENTION,
                A::BUS_DEVICE_RESET_FUNCTION_OCCURRED
            ),
            ua_bytes(0x29, 3)
        );
        assert_eq!(rig.none(n, &[0; 6]).status, Status::GOOD);
    }
    // A nexus the unit never heard of has nothing pending.
    assert_eq!(rig.none(&c, &[0; 6]).status, Status::GOOD);
    rig.lu.reset(ResetKind::TargetCold);
    check(
        &rig.read(&c, &rw10(0x28, 0, 1), 512),
        K::UNIT_ATTENTION,
        A::POWER_ON_OCCURRED,
    );
    assert_eq!(rig.read(&c, &rw10(0x28, 0, 1), 512).status, Status::GOOD);
}

#[test]
fn inquiry_and_report_luns_do_not_clear_request_sense_does() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    rig.lu.nexus_established(&a);
    rig.lu
        .establish_unit_attention(None, UnitAttention::CapacityDataChanged);
    assert_eq!(
        rig.read(&a, &[0x12, 0, 0, 0, 36, 0], 36).status,
        Status::GOOD
    );
    assert_eq!(
        rig.read(&a, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], 16)
            .status,
        Status::GOOD
    );
    assert_eq!(
        rig.lu.pending_unit_attentions(a.id),
        vec![UnitAttention::CapacityDataChanged]
    );
    let r = rig.read(&a, &[0x03, 0, 0, 0, 18, 0], 18);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(r.data_in, ua_bytes(0x2A, 0x09));
    assert_eq!(
        rig.read(&a, &[0x03, 0, 0, 0, 18, 0], 18).data_in,
        fixed(0, 0, 0, None)
    );
    assert_eq!(rig.none(&a, &[0; 6]).status, Status::GOOD);
}

#[test]
fn delivery_follows_precedence_then_arrival() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    rig.lu.nexus_established(&a);
    rig.lu
        .establish_unit_attention(Some(a.id), UnitAttention::ReportedLunsChanged);
    rig.lu.commands_cleared(nexus(2, "b").id, &[a.id]);
    rig.lu
        .establish_unit_attention(Some(a.id), UnitAttention::ModeParametersChanged);
    rig.lu.set_capacity(BLOCKS / 2);
    rig.lu
        .establish_unit_attention(Some(a.id), UnitAttention::ModeParametersChanged);
    let order = [(0x2A, 0x01), (0x2A, 0x09), (0x2F, 0x00), (0x3F, 0x0E)];
    for (asc, ascq) in order {
        let r = rig.read(&a, &rw10(0x28, 0, 1), 512);
        assert_eq!(
            r.sense.map(|s| s.as_bytes().to_vec()),
            Some(ua_bytes(asc, ascq))
        );
    }
    let r = rig.read(&a, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(r.data_in, vec![0, 0, 0x0F, 0xFF, 0, 0, 2, 0]);
}

#[test]
fn reset_supersedes_pending_conditions() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    rig.lu.nexus_established(&a);
    rig.lu
        .establish_unit_attention(None, UnitAttention::ModeParametersChanged);
    rig.lu.reset(ResetKind::TargetWarm);
    rig.lu
        .establish_unit_attention(None, UnitAttention::ReservationsReleased);
    assert_eq!(
        rig.lu.pending_unit_attentions(a.id),
        vec![
            UnitAttention::BusDeviceReset,
            UnitAttention::ReservationsReleased
        ]
    );
}

#[test]
fn commands_cleared_skips_the_issuer() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    rig.lu.nexus_established(&a);
    rig.lu.nexus_established(&b);
    rig.lu.commands_cleared(a.id, &[a.id, b.id]);
    assert_eq!(rig.none(&a, &[0; 6]).status, Status::GOOD);
    assert_eq!(
        check(
            &rig.none(&b, &[0; 6]),
            K::UNIT_ATTENTION,
            A::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR
        ),
        ua_bytes(0x2F, 0)
    );
}

#[test]
fn nexus_loss_forgets_conditions() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    rig.lu.nexus_established(&a);
    rig.lu.reset(ResetKind::LogicalUnit);
    rig.lu.nexus_lost(a.id);
    assert_eq!(rig.read(&a, &rw10(0x28, 0, 1), 512).status, Status::GOOD);
}

#[test]
fn descriptor_format_unit_attention() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    let p = [
        0, 0, 0, 0, 0x0A, 0x0A, 4, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0,
    ];
    assert_eq!(
        rig.write(&a, &[0x15, 0x10, 0, 0, 16, 0], &p).status,
        Status::GOOD
    );
    rig.lu
        .establish_unit_attention(Some(a.id), UnitAttention::InquiryDataChanged);
    let r = rig.none(&a, &[0; 6]);
    assert_eq!(
        check(&r, K::UNIT_ATTENTION, A::INQUIRY_DATA_HAS_CHANGED),
        vec![0x72, 6, 0x3F, 3, 0, 0, 0, 0]
    );
    // A reset returns the mode parameters to their defaults.
    rig.lu.reset(ResetKind::LogicalUnit);
    assert_eq!(
        check(
            &rig.none(&a, &[0; 6]),
            K::UNIT_ATTENTION,
            A::BUS_DEVICE_RESET_FUNCTION_OCCURRED
        ),
        ua_bytes(0x29, 3)
    );
}

#[test]
fn report_luns_clears_reported_luns_data_has_changed() {
    let rig = Rig::new();
    let a = nexus(1, "a");
    rig.lu.nexus_established(&a);
    rig.lu
        .establish_unit_attention(Some(a.id), UnitAttention::ReportedLunsChanged);
    rig.lu
        .establish_unit_attention(Some(a.id), UnitAttention::CommandsCleared);
    assert_eq!(
        rig.read(&a, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], 16)
            .status,
        Status::GOOD
    );
    assert_eq!(
        rig.lu.pending_unit_attentions(a.id),
        vec![UnitAttention::CommandsCleared]
    );
    check(
        &rig.none(&a, &[0; 6]),
        K::UNIT_ATTENTION,
        A::COMMANDS_CLEARED_BY_ANOTHER_INITIATOR,
    );
    assert_eq!(rig.none(&a, &[0; 6]).status, Status::GOOD);
}
