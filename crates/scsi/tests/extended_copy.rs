//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-5 §6.4, §6.18) between logical units of
//! one target.

mod common;

use std::sync::{Arc, Weak};

use common::*;
use rtgt_scsi::{
    AdditionalSense as A, BlockBackend, CopyTarget, CopyTargets, LogicalUnit, LuConfig,
    MemoryBackend, Response, SenseKey as K, Status,
};

fn target_descriptor(naa: &[u8; 16], byte1: u8, block: u32) -> Vec<u8> {
    let mut d = vec![0u8; 32];
    d[0] = 0xE4;
    d[1] = byte1;
    d[4] = 0x01;
    d[5] = 0x03;
    d[7] = 16;
    d[8..24].copy_from_slice(naa);
    d[29..32].copy_from_slice(&block.to_be_bytes()[1..]);
    d
}

fn segment(src: u16, dst: u16, blocks: u16, src_lba: u64, dst_lba: u64) -> Vec<u8> {
    let mut d = vec![0u8; 28];
    d[0] = 0x02;
    d[2..4].copy_from_slice(&0x18u16.to_be_bytes());
    d[4..6].copy_from_slice(&src.to_be_bytes());
    d[6..8].copy_from_slice(&dst.to_be_bytes());
    d[10..12].copy_from_slice(&blocks.to_be_bytes());
    d[12..20].copy_from_slice(&src_lba.to_be_bytes());
    d[20..28].copy_from_slice(&dst_lba.to_be_bytes());
    d
}

fn list(list_id: u8, usage: u8, targets: &[Vec<u8>], segments: &[Vec<u8>]) -> Vec<u8> {
    let t: Vec<u8> = targets.concat();
    let s: Vec<u8> = segments.concat();
    let mut p = vec![0u8; 16];
    p[0] = list_id;
    p[1] = usage << 3;
    p[2..4].copy_from_slice(&(t.len() as u16).to_be_bytes());
    p[8..12].copy_from_slice(&(s.len() as u32).to_be_bytes());
    p.extend_from_slice(&t);
    p.extend_from_slice(&s);
    p
}

fn xcopy_cdb(len: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x83;
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

fn xcopy(rig: &Rig, p: &[u8]) -> Response {
    rig.write(&nexus(1, "a"), &xcopy_cdb(p.len() as u32), p)
}

fn rcr(rig: &Rig, sa: u8, list_id: u8) -> Response {
    let mut c = [0u8; 16];
    c[0] = 0x84;
    c[1] = sa;
    c[2] = list_id;
    c[10..14].copy_from_slice(&1024u32.to_be_bytes());
    rig.read(&nexus(1, "a"), &c, 1024)
}

#[test]
fn copy_within_one_unit() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let data: Vec<u8> = (0..64 * BS).map(|i| (i / BS) as u8).collect();
    rig.put(&n, 0, &data);
    let naa = rig.lu.identity().naa();
    let p = list(
        1,
        0b11,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 64, 0, 1000)],
    );
    let r = xcopy(&rig, &p);
    assert_eq!(r.status, Status::GOOD, "{r:?}");
    assert_eq!(rig.get(&n, 1000, 64), data);
    // A zero parameter list length is not an error.
    assert_eq!(rig.none(&n, &xcopy_cdb(0)).status, Status::GOOD);
}

struct Units(Vec<(Weak<LogicalUnit>, Arc<MemoryBackend>)>);

impl CopyTargets for Units {
    fn find(&self, naa: &[u8]) -> Option<CopyTarget> {
        self.0.iter().enumerate().find_map(|(i, (lu, store))| {
            let lu = lu.upgrade()?;
            (lu.identity().naa()[..] == *naa).then(|| CopyTarget {
                lu,
                backend: store.clone() as Arc<dyn BlockBackend>,
                handle: i as u64,
            })
        })
    }
}

#[test]
fn copy_between_units_of_the_target() {
    let src = Rig::new();
    let dst_store = Arc::new(MemoryBackend::new(512, 4096).unwrap());
    let dst = Arc::new(LogicalUnit::new(
        LuConfig::new("iqn.2024-01.org.example:target", 1),
        dst_store.capabilities(),
    ));
    let units = Arc::new(Units(vec![
        (Arc::downgrade(&src.lu), src.store.clone()),
        (Arc::downgrade(&dst), dst_store.clone()),
    ]));
    src.lu.set_copy_targets(units);
    let n = nexus(1, "a");
    let data = vec![0xC3; 16 * BS];
    src.put(&n, 8, &data);
    let p = list(
        7,
        0,
        &[
            target_descriptor(&src.lu.identity().naa(), 0, 512),
            target_descriptor(&dst.identity().naa(), 0, 512),
        ],
        &[segment(0, 1, 16, 8, 100), segment(0, 1, 4, 8, 4000)],
    );
    let r = xcopy(&src, &p);
    assert_eq!(r.status, Status::GOOD, "{r:?}");
    let mut back = vec![0u8; 16 * BS];
    dst_store.read_at(100 * 512, &mut back).unwrap();
    assert_eq!(back, data);
    // The status is retained for LIST ID USAGE 00b and discarded once reported.
    let r = rcr(&src, 0, 7);
    assert_eq!(r.data_in, vec![0, 0, 0, 8, 0x01, 0, 2, 0x00, 0, 0, 0x28, 0]);
    check(
        &rcr(&src, 0, 7),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_CDB,
    );
    // Beyond the destination's capacity.
    let p = list(
        8,
        0,
        &[
            target_descriptor(&src.lu.identity().naa(), 0, 512),
            target_descriptor(&dst.identity().naa(), 0, 512),
        ],
        &[segment(0, 1, 16, 0, 4090)],
    );
    let r = xcopy(&src, &p);
    assert_eq!(
        check(&r, K::COPY_ABORTED, A::COPY_TARGET_DEVICE_NOT_REACHABLE),
        fixed(0x0A, 0x0D, 0x02, None)
    );
}

#[test]
fn unreachable_targets() {
    let rig = Rig::new();
    let naa = rig.lu.identity().naa();
    let aborted = fixed(0x0A, 0x08, 0x04, None);
    let p = list(
        1,
        0,
        &[target_descriptor(&[0x61; 16], 0, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::COPY_ABORTED,
            A::UNREACHABLE_COPY_TARGET
        ),
        aborted
    );
    // NUL bit.
    let p = list(
        1,
        0,
        &[target_descriptor(&naa, 0x20, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::COPY_ABORTED,
            A::UNREACHABLE_COPY_TARGET
        ),
        aborted
    );
    // Destination index beyond the descriptor list.
    let p = list(
        1,
        0,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 1, 1, 0, 1)],
    );
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::COPY_ABORTED,
            A::UNREACHABLE_COPY_TARGET
        ),
        aborted
    );
    // Beyond the end of the unit.
    let p = list(
        1,
        0,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 16, 0, BLOCKS - 1)],
    );
    check(
        &xcopy(&rig, &p),
        K::COPY_ABORTED,
        A::COPY_TARGET_DEVICE_NOT_REACHABLE,
    );
}

#[test]
fn parameter_list_errors() {
    let rig = Rig::new();
    let naa = rig.lu.identity().naa();
    let good = list(
        1,
        0,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    for cut in [16 + 31, 16 + 32 + 27] {
        let r = xcopy(&rig, &good[..cut]);
        assert_eq!(
            check(&r, K::ILLEGAL_REQUEST, A::PARAMETER_LIST_LENGTH_ERROR),
            fixed(5, 0x1A, 0, None)
        );
    }
    // LU ID TYPE (reserved 10b here) is not interpreted for identification descriptors: the
    // designator names the unit and the copy runs.
    let p = list(
        1,
        0,
        &[target_descriptor(&naa, 0x80, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    assert_eq!(xcopy(&rig, &p).status, Status::GOOD);
    // Block length that is not the unit's.
    let p = list(
        1,
        0,
        &[target_descriptor(&naa, 0, 4096)],
        &[segment(0, 0, 1, 0, 1)],
    );
    check(
        &xcopy(&rig, &p),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // Unsupported descriptor type codes.
    let mut fc = target_descriptor(&naa, 0, 512);
    fc[0] = 0xE0;
    let p = list(1, 0, &[fc], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::ILLEGAL_REQUEST,
            A::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE
        ),
        fixed(5, 0x26, 7, None)
    );
    let mut stream = vec![0u8; 20];
    stream[0] = 0x03;
    stream[2..4].copy_from_slice(&0x10u16.to_be_bytes());
    let p = list(1, 0, &[target_descriptor(&naa, 0, 512)], &[stream]);
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::ILLEGAL_REQUEST,
            A::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE
        ),
        fixed(5, 0x26, 9, None)
    );
    // Descriptor counts above the operating parameters.
    let t = target_descriptor(&naa, 0, 512);
    let p = list(1, 0, &vec![t.clone(); 5], &[segment(0, 0, 1, 0, 1)]);
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::ILLEGAL_REQUEST,
            A::TOO_MANY_TARGET_DESCRIPTORS
        ),
        fixed(5, 0x26, 6, None)
    );
    let p = list(
        1,
        0,
        std::slice::from_ref(&t),
        &vec![segment(0, 0, 1, 0, 1); 9],
    );
    assert_eq!(
        check(
            &xcopy(&rig, &p),
            K::ILLEGAL_REQUEST,
            A::TOO_MANY_SEGMENT_DESCRIPTORS
        ),
        fixed(5, 0x26, 8, None)
    );
    let small = Rig::with(|c| c.copy.max_descriptor_list_length = 40);
    let p = list(1, 0, &[t], &[segment(0, 0, 1, 0, 1)]);
    check(
        &xcopy(&small, &p),
        K::ILLEGAL_REQUEST,
        A::PARAMETER_LIST_LENGTH_ERROR,
    );
}

#[test]
fn receive_copy_results() {
    let rig = Rig::new();
    let r = rcr(&rig, 3, 0);
    let mut want = vec![0u8; 46];
    want[3] = 42;
    want[4] = 1;
    want[8..20].copy_from_slice(&[0, 4, 0, 8, 0, 0, 4, 0, 0x01, 0xFF, 0xFE, 0x00]);
    want[35] = 1;
    want[36] = 1;
    want[37] = 9;
    want[43] = 2;
    want[44] = 0x02;
    want[45] = 0xE4;
    assert_eq!(r.data_in, want);
    let r = rcr(&rig, 0, 1);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, 0x24, 0, Some([0xCF, 0, 2]))
    );
    // RECEIVE DATA and FAILED SEGMENT DETAILS are not implemented.
    check(
        &rcr(&rig, 1, 1),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_CDB,
    );
    // A copy whose status is discarded (LIST ID USAGE 11b) leaves nothing to report.
    let naa = rig.lu.identity().naa();
    let p = list(
        1,
        0b11,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    assert_eq!(xcopy(&rig, &p).status, Status::GOOD);
    check(
        &rcr(&rig, 0, 1),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_CDB,
    );
    // LIST ID USAGE 01b is reserved.
    let p = list(
        1,
        0b01,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    check(
        &xcopy(&rig, &p),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_PARAMETER_LIST,
    );
}

#[test]
fn write_protected_destination() {
    let rig = Rig::with(|c| c.read_only = true);
    let naa = rig.lu.identity().naa();
    let p = list(
        1,
        0,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    check(&xcopy(&rig, &p), K::COPY_ABORTED, A::WRITE_PROTECTED);
}

#[test]
fn failed_copy_is_reported() {
    let rig = Rig::new();
    let naa = rig.lu.identity().naa();
    let p = list(
        3,
        0,
        &[target_descriptor(&naa, 0, 512)],
        &[segment(0, 0, 1, 0, 1)],
    );
    // A store smaller than the unit makes the write of the copy fail.
    let tiny = MemoryBackend::new(512, 1).unwrap();
    let r = rig.lu.execute_sync(
        &tiny,
        &nexus(1, "a"),
        &rtgt_scsi::CommandRequest::new(
            &xcopy_cdb(p.len() as u32),
            p.len() as u32,
            rtgt_scsi::DataDirection::Write,
        ),
        &p,
    );
    check(&r, K::COPY_ABORTED, A::INTERNAL_TARGET_FAILURE);
    let r = rcr(&rig, 0, 3);
    assert_eq!(r.data_in, vec![0, 0, 0, 8, 0x02, 0, 0, 0, 0, 0, 0, 0]);
}

#[test]
fn oversized_parameter_list_is_refused_before_transfer() {
    let rig = Rig::new();
    let r = rig.run(
        &nexus(1, "a"),
        &xcopy_cdb(u32::MAX),
        u32::MAX,
        rtgt_scsi::DataDirection::Write,
        &[],
    );
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::PARAMETER_LIST_LENGTH_ERROR),
        fixed(5, 0x1A, 0, None)
    );
}
