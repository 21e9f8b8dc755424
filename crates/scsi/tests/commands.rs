//! One test per command and per error path, asserting the exact bytes of parameter data and
//! sense data (SPC-5, SBC-4).

mod common;

use common::*;
use rtgt_scsi::{
    AdditionalSense as A, BlockBackend, CommandRequest, DataDirection, LogicalUnit, LuConfig,
    MemoryBackend, Residual, SenseKey as K, Status, TaskAttribute,
};

const INVALID_CDB: u8 = 0x24;

#[test]
fn test_unit_ready_good_and_naca_rejected() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.none(&n, &[0; 6]);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(r.residual, Residual::None);
    let r = rig.none(&n, &[0, 0, 0, 0, 0, 0x04]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCA, 0, 5]))
    );
}

#[test]
fn unknown_opcode() {
    let rig = Rig::new();
    let r = rig.none(&nexus(1, "a"), &[0xC1, 0, 0, 0, 0, 0]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_COMMAND_OPERATION_CODE),
        fixed(5, 0x20, 0, None)
    );
}

#[test]
fn aca_task_attribute_is_refused() {
    let rig = Rig::new();
    let req = CommandRequest {
        attribute: TaskAttribute::Aca,
        ..CommandRequest::new(&[0; 6], 0, DataDirection::None)
    };
    let r = rig.lu.execute_sync(&*rig.store, &nexus(1, "a"), &req, &[]);
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_MESSAGE_ERROR);
}

#[test]
fn inquiry_standard_data() {
    let rig = Rig::new();
    let r = rig.read(&nexus(1, "a"), &[0x12, 0, 0, 0, 0xFF, 0], 255);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(r.data_in.len(), 96);
    assert_eq!(
        &r.data_in[..36],
        b"\x00\x00\x06\x12\x5b\x08\x00\x02RTGT    rtgt disk       0.1 "
    );
    assert_eq!(
        &r.data_in[58..74],
        &[
            0, 0xA0, 0x09, 0x60, 0x04, 0x60, 0x04, 0xC0, 0x05, 0xC0, 0x06, 0, 0, 0, 0, 0
        ]
    );
    assert_eq!(r.residual, Residual::Underflow(255 - 96));
    // 255 and 256 byte allocation lengths return the same data.
    let r256 = rig.read(&nexus(1, "a"), &[0x12, 0, 0, 1, 0, 0], 256);
    assert_eq!(r256.data_in, r.data_in);
}

#[test]
fn inquiry_allocation_lengths() {
    let rig = Rig::new();
    for alloc in 0..=96u16 {
        let cdb = [0x12, 0, 0, (alloc >> 8) as u8, alloc as u8, 0];
        let r = rig.read(&nexus(1, "a"), &cdb, u32::from(alloc));
        assert_eq!(r.status, Status::GOOD);
        assert_eq!(r.data_in.len(), usize::from(alloc));
        assert_eq!(r.residual, Residual::None);
    }
}

#[test]
fn inquiry_page_code_without_evpd() {
    let rig = Rig::new();
    let r = rig.read(&nexus(1, "a"), &[0x12, 0, 1, 1, 0, 0], 256);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 2]))
    );
}

#[test]
fn inquiry_vpd_pages() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let page = |p: u8| rig.read(&n, &[0x12, 1, p, 0, 0xFF, 0], 255);
    assert_eq!(
        page(0x00).data_in,
        vec![
            0, 0, 0, 9, 0x00, 0x80, 0x83, 0x86, 0x87, 0x8F, 0xB0, 0xB1, 0xB2
        ]
    );
    let serial = rig.lu.identity().serial().as_bytes().to_vec();
    let mut expected = vec![0, 0x80, 0, serial.len() as u8];
    expected.extend_from_slice(&serial);
    assert_eq!(page(0x80).data_in, expected);
    let di = page(0x83).data_in;
    assert_eq!(&di[4..8], &[0x01, 0x03, 0x00, 0x10]);
    assert_eq!(&di[8..24], &rig.lu.identity().naa());
    assert_eq!(
        &di[24..32],
        &[0x02, 0x01, 0x00, 0x18, b'R', b'T', b'G', b'T']
    );
    // Relative target port 1 (iSCSI protocol identifier, PIV, target port association).
    let rel = 24 + 4 + 24;
    assert_eq!(&di[rel..rel + 8], &[0x51, 0x94, 0x00, 0x04, 0, 0, 0, 1]);
    let name = rel + 8;
    assert_eq!(&di[name..name + 4], &[0x53, 0x98, 0x00, 40]);
    assert_eq!(
        &di[name + 4..name + 44],
        b"iqn.2024-01.org.example:target,t,0x0001\0"
    );
    assert_eq!(
        page(0x86).data_in[..8],
        [0, 0x86, 0, 0x3C, 0, 0x07, 0, 0x01]
    );
    let bl = page(0xB0).data_in;
    assert_eq!(
        &bl[..32],
        &[
            0, 0xB0, 0, 0x3C, 0, 255, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF,
            0xFF, 0, 0, 8, 0, 0, 0, 0, 1
        ]
    );
    assert_eq!(
        &bl[32..48],
        &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 1, 0]
    );
    assert_eq!(page(0xB1).data_in[..8], [0, 0xB1, 0, 0x3C, 0, 1, 0, 0]);
    assert_eq!(page(0xB2).data_in, vec![0, 0xB2, 0, 4, 0, 0xE4, 0x02, 0]);
    let r = page(0x81);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 2]))
    );
}

#[test]
fn report_luns_of_the_unit() {
    let rig = Rig::with(|c| c.lun = 3);
    let r = rig.read(
        &nexus(1, "a"),
        &[0xA0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        256,
    );
    assert_eq!(
        r.data_in,
        vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0]
    );
    let r = rig.read(
        &nexus(1, "a"),
        &[0xA0, 0, 0x13, 0, 0, 0, 0, 0, 1, 0, 0, 0],
        256,
    );
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 2]))
    );
}

#[test]
fn request_sense_formats() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.read(&n, &[0x03, 0, 0, 0, 252, 0], 252);
    assert_eq!(r.data_in, fixed(0, 0, 0, None));
    let r = rig.read(&n, &[0x03, 1, 0, 0, 252, 0], 252);
    assert_eq!(r.data_in, vec![0x72, 0, 0, 0, 0, 0, 0, 0]);
    let r = rig.read(&n, &[0x03, 0, 0, 0, 8, 0], 8);
    assert_eq!(r.data_in, vec![0x70, 0, 0, 0, 0, 0, 0, 10]);
}

#[test]
fn read_capacity_10_and_16() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.read(&n, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8);
    assert_eq!(r.data_in, vec![0, 0, 0x1F, 0xFF, 0, 0, 2, 0]);
    let r = rig.read(&n, &rc16(32), 32);
    let mut want = vec![0u8; 32];
    want[..8].copy_from_slice(&(BLOCKS - 1).to_be_bytes());
    want[8..12].copy_from_slice(&512u32.to_be_bytes());
    want[14] = 0xC0; // LBPME, LBPRZ
    assert_eq!(r.data_in, want);
    for alloc in 0..16u32 {
        let r = rig.read(&n, &rc16(alloc), alloc);
        assert_eq!(r.status, Status::GOOD);
        assert_eq!(r.data_in, want[..alloc as usize].to_vec());
    }
    // LBA without PMI is an error.
    let r = rig.read(&n, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], 8);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 2]))
    );
}

fn rc16(alloc: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x10;
    c[10..14].copy_from_slice(&alloc.to_be_bytes());
    c
}

#[test]
fn read_capacity_reports_physical_block_exponent_and_full_provisioning() {
    let mut caps = rtgt_scsi::Capabilities::simple(512, 1000);
    caps.physical_block_exponent = 3;
    let store = MemoryBackend::with_capabilities(caps).unwrap();
    let lu = LogicalUnit::new(LuConfig::new("iqn.t", 0), store.capabilities());
    let r = lu.execute_sync(
        &store,
        &nexus(1, "a"),
        &CommandRequest::new(&rc16(32), 32, DataDirection::Read),
        &[],
    );
    assert_eq!(&r.data_in[12..16], &[0, 3, 0, 0]);
    // A fully provisioned unit has no UNMAP.
    let r = lu.execute_sync(
        &store,
        &nexus(1, "a"),
        &CommandRequest::new(&rw10(0x42, 0, 24), 24, DataDirection::Write),
        &[0; 24],
    );
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_COMMAND_OPERATION_CODE);
}

#[test]
fn read_write_all_sizes() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let data: Vec<u8> = (0..4 * BS).map(|i| (i % 251) as u8).collect();
    let r = rig.write(&n, &rw10(0x2A, 10, 4), &data);
    assert_eq!((r.status, r.residual), (Status::GOOD, Residual::None));
    assert_eq!(rig.read(&n, &rw10(0x28, 10, 4), 2048).data_in, data);
    assert_eq!(rig.read(&n, &rw12(0xA8, 10, 4), 2048).data_in, data);
    assert_eq!(rig.read(&n, &rw16(0x88, 10, 4), 2048).data_in, data);
    let r = rig.read(&n, &[0x08, 0, 0, 10, 4, 0], 2048);
    assert_eq!(r.data_in, data);
    let r = rig.write(&n, &[0x0A, 0, 0, 20, 1, 0], &data[..BS]);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(rig.get(&n, 20, 1), data[..BS].to_vec());
    let r = rig.write(&n, &rw12(0xAA, 30, 1), &data[..BS]);
    assert_eq!(r.status, Status::GOOD);
    // DPO and FUA are accepted.
    let mut c = rw10(0x28, 10, 1);
    c[1] = 0x18;
    assert_eq!(rig.read(&n, &c, 512).status, Status::GOOD);
    let mut c = rw10(0x2A, 10, 1);
    c[1] = 0x18;
    assert_eq!(rig.write(&n, &c, &data[..BS]).status, Status::GOOD);
}

#[test]
fn read_beyond_end_and_lba_overflow() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let lba_oob = fixed(5, 0x21, 0, None);
    let r = rig.read(&n, &rw10(0x28, (BLOCKS - 1) as u32, 2), 1024);
    assert_eq!(check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE), lba_oob);
    assert_eq!(r.residual, Residual::Underflow(1024));
    let r = rig.read(&n, &rw16(0x88, u64::MAX, 1), 512);
    assert_eq!(check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE), lba_oob);
    let r = rig.read(&n, &rw10(0x28, (BLOCKS + 1) as u32, 0), 0);
    check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE);
    let r = rig.read(&n, &[0x08, 0x1F, 0xFF, 0xFF, 1, 0], 512);
    check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE);
    // Zero blocks at the start and right at the end is fine.
    assert_eq!(rig.read(&n, &rw10(0x28, 0, 0), 0).status, Status::GOOD);
    assert_eq!(
        rig.read(&n, &rw10(0x28, BLOCKS as u32, 0), 0).status,
        Status::GOOD
    );
}

#[test]
fn rdprotect_and_wrprotect_are_invalid() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    for p in 1..8u8 {
        let mut c = rw10(0x28, 0, 1);
        c[1] = p << 5;
        let r = rig.read(&n, &c, 512);
        let bit = 7 - (p << 5).leading_zeros() as u8;
        assert_eq!(
            check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
            fixed(5, INVALID_CDB, 0, Some([0xC8 | bit, 0, 1]))
        );
        let mut c = rw16(0x8A, 0, 1);
        c[1] = p << 5;
        check(
            &rig.write(&n, &c, &[0; BS]),
            K::ILLEGAL_REQUEST,
            A::INVALID_FIELD_IN_CDB,
        );
    }
}

#[test]
fn read_residuals() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    rig.put(&n, 0, &[0x5A; BS]);
    let r = rig.read(&n, &rw10(0x28, 0, 1), 0);
    assert_eq!(
        (r.status, r.residual, r.data_in.len()),
        (Status::GOOD, Residual::Overflow(512), 0)
    );
    let r = rig.read(&n, &rw10(0x28, 0, 1), 10000);
    assert_eq!(
        (r.residual, r.data_in.len()),
        (Residual::Underflow(10000 - 512), 512)
    );
    let r = rig.read(&n, &rw10(0x28, 0, 1), 200);
    assert_eq!(
        (r.residual, r.data_in),
        (Residual::Overflow(312), vec![0x5A; 200])
    );
    let r = rig.read(&n, &rw10(0x28, 0, 2), 512);
    assert_eq!(
        (r.residual, r.data_in.len()),
        (Residual::Overflow(512), 512)
    );
    // A READ flagged as a write on the transport transfers nothing and reports the overflow.
    let r = rig.run(&n, &rw10(0x28, 0, 1), 512, DataDirection::Write, &[0; 512]);
    assert_eq!(
        (r.status, r.residual),
        (Status::GOOD, Residual::Overflow(512))
    );
}

#[test]
fn write_residuals() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    rig.put(&n, 0, &[b'a'; 2 * BS]);
    // EDTL smaller than the transfer: the whole blocks it covers are written, the rest is a
    // residual overflow (libiscsi iSCSIResiduals.Write10Residuals expects GOOD here).
    let r = rig.run(
        &n,
        &rw10(0x2A, 0, 2),
        512,
        DataDirection::Write,
        &[b'b'; 512],
    );
    assert_eq!(
        (r.status, r.residual),
        (Status::GOOD, Residual::Overflow(512))
    );
    assert_eq!(rig.get(&n, 0, 2), [vec![b'b'; BS], vec![b'a'; BS]].concat());
    // Less than one block: nothing is written.
    let r = rig.run(
        &n,
        &rw10(0x2A, 1, 1),
        200,
        DataDirection::Write,
        &[b'x'; 200],
    );
    assert_eq!(
        (r.status, r.residual),
        (Status::GOOD, Residual::Overflow(312))
    );
    assert_eq!(rig.get(&n, 1, 1), vec![b'a'; BS]);
    // WRITE AND VERIFY(10) is cut the same way.
    let r = rig.run(
        &n,
        &rw10(0x2E, 0, 2),
        512,
        DataDirection::Write,
        &[b'v'; 512],
    );
    assert_eq!(
        (r.status, r.residual),
        (Status::GOOD, Residual::Overflow(512))
    );
    assert_eq!(rig.get(&n, 0, 2), [vec![b'v'; BS], vec![b'a'; BS]].concat());
    rig.put(&n, 0, &[b'a'; 2 * BS]);
    let r = rig.run(&n, &rw10(0x2A, 0, 1), 0, DataDirection::None, &[]);
    assert_eq!(r.residual, Residual::Overflow(512));
    // EDTL larger: the transfer length of data is written, the rest is an underflow.
    let r = rig.run(
        &n,
        &rw10(0x2A, 0, 1),
        1024,
        DataDirection::Write,
        &[b'c'; 1024],
    );
    assert_eq!(
        (r.status, r.residual),
        (Status::GOOD, Residual::Underflow(512))
    );
    assert_eq!(rig.get(&n, 0, 2), [vec![b'c'; BS], vec![b'a'; BS]].concat());
}

#[test]
fn write_protected_unit() {
    let rig = Rig::with(|c| c.read_only = true);
    let n = nexus(1, "a");
    let wp = fixed(7, 0x27, 0, None);
    assert_eq!(
        check(
            &rig.write(&n, &rw10(0x2A, 0, 1), &[0; BS]),
            K::DATA_PROTECT,
            A::WRITE_PROTECTED
        ),
        wp
    );
    let mut ws = rw10(0x41, 0, 1);
    ws[1] = 0x08;
    assert_eq!(
        check(&rig.none(&n, &ws), K::DATA_PROTECT, A::WRITE_PROTECTED),
        wp
    );
    assert_eq!(
        check(
            &rig.write(&n, &rw10(0x42, 0, 24), &[0; 24]),
            K::DATA_PROTECT,
            A::WRITE_PROTECTED
        ),
        wp
    );
    check(
        &rig.write(&n, &caw(0, 1), &[0; 2 * BS]),
        K::DATA_PROTECT,
        A::WRITE_PROTECTED,
    );
    // Reads still work; MODE SENSE reports WP.
    assert_eq!(rig.read(&n, &rw10(0x28, 0, 1), 512).status, Status::GOOD);
    assert_eq!(
        rig.read(&n, &[0x1A, 0x08, 0x3F, 0, 4, 0], 4).data_in,
        vec![59, 0, 0x90, 0]
    );
    // Beyond-the-end still reports the range error first.
    check(
        &rig.write(&n, &rw10(0x2A, BLOCKS as u32, 1), &[0; BS]),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
}

#[test]
fn transfer_longer_than_the_maximum() {
    let rig = Rig::with(|c| c.max_transfer_bytes = 8 * 512);
    let n = nexus(1, "a");
    let r = rig.read(&n, &rw10(0x28, 0, 9), 9 * 512);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 7]))
    );
    assert_eq!(
        rig.read(&n, &rw10(0x28, 0, 8), 8 * 512).status,
        Status::GOOD
    );
}

#[test]
fn write_and_verify() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    for bytchk in [0u8, 1] {
        let mut c = rw10(0x2E, 5, 2);
        c[1] = bytchk << 1 | 0x10;
        let r = rig.write(&n, &c, &[7 + bytchk; 2 * BS]);
        assert_eq!(r.status, Status::GOOD);
        assert_eq!(rig.get(&n, 5, 2), vec![7 + bytchk; 2 * BS]);
    }
    let r = rig.write(&n, &rw12(0xAE, 5, 1), &[1; BS]);
    assert_eq!(r.status, Status::GOOD);
    let r = rig.write(&n, &rw16(0x8E, 5, 1), &[1; BS]);
    assert_eq!(r.status, Status::GOOD);
    let mut c = rw10(0x2E, 5, 1);
    c[1] = 0x04;
    let r = rig.write(&n, &c, &[1; BS]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCA, 0, 1]))
    );
}

#[test]
fn verify_byte_check_modes() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let data: Vec<u8> = (0..3 * BS).map(|i| (i * 7) as u8).collect();
    rig.put(&n, 100, &data);
    // BYTCHK=0: medium verification, no data.
    assert_eq!(rig.none(&n, &rw10(0x2F, 100, 3)).status, Status::GOOD);
    // BYTCHK=1: match, then a miscompare at byte 1000 (INFORMATION = offset).
    let mut c = rw10(0x2F, 100, 3);
    c[1] = 0x02;
    assert_eq!(rig.write(&n, &c, &data).status, Status::GOOD);
    let mut bad = data.clone();
    bad[1000] ^= b'X';
    let r = rig.write(&n, &c, &bad);
    let mut want = fixed(0x0E, 0x1D, 0, None);
    want[0] = 0xF0;
    want[3..7].copy_from_slice(&1000u32.to_be_bytes());
    assert_eq!(
        check(&r, K::MISCOMPARE, A::MISCOMPARE_DURING_VERIFY_OPERATION),
        want
    );
    // BYTCHK=11b: one block compared with every block.
    rig.put(&n, 200, &[9; 2 * BS]);
    let mut c = rw16(0x8F, 200, 2);
    c[1] = 0x06;
    assert_eq!(rig.write(&n, &c, &[9; BS]).status, Status::GOOD);
    let r = rig.write(&n, &c, &[8; BS]);
    check(&r, K::MISCOMPARE, A::MISCOMPARE_DURING_VERIFY_OPERATION);
    // VERIFY(12), zero blocks, beyond the end, VRPROTECT.
    assert_eq!(rig.none(&n, &rw12(0xAF, 100, 1)).status, Status::GOOD);
    assert_eq!(rig.none(&n, &rw10(0x2F, 0, 0)).status, Status::GOOD);
    check(
        &rig.none(&n, &rw10(0x2F, BLOCKS as u32 + 1, 0)),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
    let mut c = rw10(0x2F, 0, 1);
    c[1] = 0x22;
    check(
        &rig.write(&n, &c, &[0; BS]),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn prefetch_and_synchronize_cache() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    for c in [
        rw10(0x34, 0, 1).to_vec(),
        rw16(0x90, 0, 1).to_vec(),
        rw10(0x35, 0, 0).to_vec(),
        rw16(0x91, 0, 8).to_vec(),
    ] {
        assert_eq!(rig.none(&n, &c).status, Status::GOOD, "{c:02x?}");
    }
    let mut immed = rw10(0x34, 0, 1);
    immed[1] = 0x02;
    immed[6] = 3;
    assert_eq!(rig.none(&n, &immed).status, Status::GOOD);
    check(
        &rig.none(&n, &rw10(0x34, BLOCKS as u32, 1)),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
    check(
        &rig.none(&n, &rw16(0x91, BLOCKS, 1)),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
}

#[test]
fn synchronize_cache_flushes_a_volatile_cache() {
    let mut caps = rtgt_scsi::Capabilities::simple(512, 64);
    caps.write_cache_enabled = true;
    let store = MemoryBackend::with_capabilities(caps).unwrap();
    let lu = LogicalUnit::new(LuConfig::new("iqn.t", 0), store.capabilities());
    let n = nexus(1, "a");
    let rtgt_scsi::Dispatch::Execute(mut cmd) = lu.prepare(
        &n,
        &CommandRequest::new(&rw10(0x35, 0, 0), 0, DataDirection::None),
    ) else {
        panic!("sync cache must flush")
    };
    let rtgt_scsi::Step::Io(plan) = lu.execute(&n, &mut cmd, &[]) else {
        panic!("plan")
    };
    assert_eq!(plan.ops(), &[rtgt_scsi::IoOp::Flush]);
    assert_eq!(
        lu.complete(&n, cmd, &[rtgt_scsi::IoOutcome::Done]).status,
        Status::GOOD
    );
    // With WCE on, plain writes carry no FUA; after MODE SELECT clears WCE they all do.
    let plan_of = |cdb: &[u8]| {
        let rtgt_scsi::Dispatch::Execute(mut cmd) =
            lu.prepare(&n, &CommandRequest::new(cdb, 512, DataDirection::Write))
        else {
            panic!("write")
        };
        let rtgt_scsi::Step::Io(plan) = lu.execute(&n, &mut cmd, &[0; 512]) else {
            panic!("plan")
        };
        lu.abort(cmd);
        plan.ops().to_vec()
    };
    assert_eq!(
        plan_of(&rw10(0x2A, 0, 1)),
        vec![rtgt_scsi::IoOp::Write {
            offset: 0,
            len: 512,
            buf: 0,
            fua: false
        }]
    );
    let mut caching = vec![0u8; 24];
    caching[4] = 0x08;
    caching[5] = 0x12;
    let r = lu.execute_sync(
        &store,
        &n,
        &CommandRequest::new(&[0x15, 0x10, 0, 0, 24, 0], 24, DataDirection::Write),
        &caching,
    );
    assert_eq!(r.status, Status::GOOD);
    assert!(!lu.write_cache_enabled());
    assert_eq!(
        plan_of(&rw10(0x2A, 0, 1)),
        vec![rtgt_scsi::IoOp::Write {
            offset: 0,
            len: 512,
            buf: 0,
            fua: true
        }]
    );
}

#[test]
fn read_defect_data() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.read(&n, &[0x37, 0, 0x1B, 0, 0, 0, 0, 0, 32, 0], 32);
    assert_eq!(r.data_in, vec![0, 0x1B, 0, 0]);
    let r = rig.read(&n, &[0xB7, 0x10, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0], 32);
    assert_eq!(r.data_in, vec![0, 0x10, 0, 0, 0, 0, 0, 0]);
    let r = rig.read(&n, &[0x37, 0, 0x07, 0, 0, 0, 0, 0, 32, 0], 32);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCA, 0, 2]))
    );
}

fn ws16(lba: u64, blocks: u32, flags: u8) -> [u8; 16] {
    let mut c = rw16(0x93, lba, blocks);
    c[1] = flags;
    c
}

#[test]
fn write_same_variants() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.write(&n, &rw10(0x41, 10, 5), &[0xA5; BS]);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(rig.get(&n, 10, 5), vec![0xA5; 5 * BS]);
    // Zero data keeps blocks mapped; UNMAP deallocates them and they read back as zeros.
    assert_eq!(
        rig.write(&n, &ws16(10, 2, 0), &[0; BS]).status,
        Status::GOOD
    );
    assert_eq!(rig.get(&n, 10, 2), vec![0; 2 * BS]);
    assert_eq!(lba_status(&rig, 10), (0, 5));
    assert_eq!(
        rig.write(&n, &ws16(12, 3, 0x08), &[0xFF; BS]).status,
        Status::GOOD
    );
    assert_eq!(lba_status(&rig, 12), (1, (BLOCKS - 12) as u32));
    assert_eq!(rig.get(&n, 12, 3), vec![0; 3 * BS]);
    // NDOB writes zeros without Data-Out.
    rig.put(&n, 20, &[1; BS]);
    assert_eq!(rig.none(&n, &ws16(20, 1, 0x01)).status, Status::GOOD);
    assert_eq!(rig.get(&n, 20, 1), vec![0; BS]);
}

fn lba_status(rig: &Rig, lba: u64) -> (u8, u32) {
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x12;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[13] = 24;
    let r = rig.read(&nexus(9, "q"), &c, 24);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(&r.data_in[..4], &[0, 0, 0, 20]);
    assert_eq!(&r.data_in[8..16], &lba.to_be_bytes());
    (
        r.data_in[20],
        u32::from_be_bytes([r.data_in[16], r.data_in[17], r.data_in[18], r.data_in[19]]),
    )
}

#[test]
fn write_same_errors() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    // Zero blocks (WSNZ = 0): from the LBA through the last block; past the end is out of
    // range.
    rig.put(&n, BLOCKS - 2, &[7; 2 * BS]);
    let r = rig.write(&n, &rw10(0x41, (BLOCKS - 2) as u32, 0), &[0; BS]);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(rig.get(&n, BLOCKS - 2, 2), vec![0; 2 * BS]);
    let r = rig.write(&n, &rw10(0x41, BLOCKS as u32, 0), &[0; BS]);
    check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE);
    let mut anchor = rw10(0x41, 0, 1);
    anchor[1] = 0x18;
    let r = rig.write(&n, &anchor, &[0; BS]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCC, 0, 1]))
    );
    // The Data-Out must be exactly one block.
    for edtl in [256u32, 1024] {
        let r = rig.run(
            &n,
            &rw10(0x41, 0, 1),
            edtl,
            DataDirection::Write,
            &[0; 1024],
        );
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB);
    }
    check(
        &rig.write(&n, &rw10(0x41, BLOCKS as u32, 1), &[0; BS]),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
    let small = Rig::with(|c| c.max_write_same_bytes = 4 * 512);
    let r = small.write(&n, &ws16(0, 5, 0), &[0; BS]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 10]))
    );
    // UNMAP on a fully provisioned unit.
    let store = MemoryBackend::with_capabilities(rtgt_scsi::Capabilities::simple(512, 64)).unwrap();
    let lu = LogicalUnit::new(LuConfig::new("iqn.t", 0), store.capabilities());
    let r = lu.execute_sync(
        &store,
        &n,
        &CommandRequest::new(&ws16(0, 1, 0x08), 512, DataDirection::Write),
        &[0; 512],
    );
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCB, 0, 1]))
    );
}

fn unmap_params(list: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    p[0..2].copy_from_slice(&((6 + 16 * list.len()) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&((16 * list.len()) as u16).to_be_bytes());
    for &(lba, n) in list {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

#[test]
fn unmap_command() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    rig.put(&n, 0, &[b'a'; 16 * BS]);
    let p = unmap_params(&[(2, 3), (10, 1), (BLOCKS, 0)]);
    let r = rig.write(&n, &rw10(0x42, 0, p.len() as u16), &p);
    assert_eq!(r.status, Status::GOOD);
    assert_eq!(lba_status(&rig, 2), (1, 3));
    assert_eq!(lba_status(&rig, 5), (0, 5));
    assert_eq!(rig.get(&n, 2, 3), vec![0; 3 * BS]);
    // No descriptors, and a zero parameter list length, are no-ops.
    let p = unmap_params(&[]);
    assert_eq!(rig.write(&n, &rw10(0x42, 0, 8), &p).status, Status::GOOD);
    assert_eq!(rig.none(&n, &rw10(0x42, 0, 0)).status, Status::GOOD);
    // Errors.
    let p = unmap_params(&[(BLOCKS - 1, 2)]);
    check(
        &rig.write(&n, &rw10(0x42, 0, p.len() as u16), &p),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
    let r = rig.write(&n, &rw10(0x42, 0, 4), &[0; 4]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::PARAMETER_LIST_LENGTH_ERROR),
        fixed(5, 0x1A, 0, None)
    );
    let few = Rig::with(|c| c.max_unmap_descriptors = 1);
    let p = unmap_params(&[(0, 1), (1, 1)]);
    let r = few.write(&n, &rw10(0x42, 0, p.len() as u16), &p);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST),
        fixed(5, 0x26, 0, Some([0x8F, 0, 2]))
    );
    let short = Rig::with(|c| c.max_unmap_blocks = 4);
    let p = unmap_params(&[(0, 5)]);
    let r = short.write(&n, &rw10(0x42, 0, p.len() as u16), &p);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST),
        fixed(5, 0x26, 0, Some([0x8F, 0, 16]))
    );
}

#[test]
fn get_lba_status_errors() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    for lba in [BLOCKS, BLOCKS + 1, 1 << 63, u64::MAX] {
        let mut c = [0u8; 16];
        c[0] = 0x9E;
        c[1] = 0x12;
        c[2..10].copy_from_slice(&lba.to_be_bytes());
        c[13] = 24;
        check(
            &rig.read(&n, &c, 24),
            K::ILLEGAL_REQUEST,
            A::LBA_OUT_OF_RANGE,
        );
    }
    assert_eq!(lba_status(&rig, BLOCKS - 1), (1, 1));
}

#[test]
fn compare_and_write() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    rig.put(&n, 7, &[b'A'; 2 * BS]);
    let mut data = vec![b'A'; 2 * BS];
    data.extend_from_slice(&[b'B'; 2 * BS]);
    assert_eq!(rig.write(&n, &caw(7, 2), &data).status, Status::GOOD);
    assert_eq!(rig.get(&n, 7, 2), vec![b'B'; 2 * BS]);
    // Miscompare at byte 1021 of the compare data: nothing written, offset reported.
    let mut data = vec![b'B'; 4 * BS];
    data[2 * BS - 27] = b'C';
    data[2 * BS..].fill(b'D');
    let r = rig.write(&n, &caw(7, 2), &data);
    let mut want = fixed(0x0E, 0x1D, 0, None);
    want[0] = 0xF0;
    want[3..7].copy_from_slice(&((2 * BS - 27) as u32).to_be_bytes());
    assert_eq!(
        check(&r, K::MISCOMPARE, A::MISCOMPARE_DURING_VERIFY_OPERATION),
        want
    );
    assert_eq!(rig.get(&n, 7, 2), vec![b'B'; 2 * BS]);
    // Zero blocks, too many blocks, wrong Data-Out size.
    assert_eq!(rig.none(&n, &caw(7, 0)).status, Status::GOOD);
    // Zero blocks but Data-Out announced (libiscsi's 256-block CAW, whose one-byte count
    // wraps to 0): the CDB field is refused.
    let r = rig.run(
        &n,
        &caw(7, 0),
        2 * BS as u32,
        DataDirection::Write,
        &[0; 2 * BS],
    );
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 13]))
    );
    let small = Rig::with(|c| c.max_compare_and_write_blocks = 1);
    let r = small.write(&n, &caw(0, 2), &[0; 4 * BS]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 13]))
    );
    for edtl in [BS as u32, 3 * BS as u32] {
        let r = rig.run(&n, &caw(0, 1), edtl, DataDirection::Write, &[0; 3 * BS]);
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB);
    }
    check(
        &rig.write(&n, &caw(BLOCKS, 1), &[0; 2 * BS]),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
}

#[test]
fn orwrite() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    rig.put(&n, 3, &[0; 2 * BS]);
    assert_eq!(
        rig.write(&n, &rw16(0x8B, 3, 2), &[0xA5; 2 * BS]).status,
        Status::GOOD
    );
    assert_eq!(rig.get(&n, 3, 2), vec![0xA5; 2 * BS]);
    assert_eq!(
        rig.write(&n, &rw16(0x8B, 3, 2), &[0x5A; 2 * BS]).status,
        Status::GOOD
    );
    assert_eq!(rig.get(&n, 3, 2), vec![0xFF; 2 * BS]);
    check(
        &rig.write(&n, &rw16(0x8B, BLOCKS - 1, 2), &[0; 2 * BS]),
        K::ILLEGAL_REQUEST,
        A::LBA_OUT_OF_RANGE,
    );
    assert_eq!(rig.none(&n, &rw16(0x8B, 0, 0)).status, Status::GOOD);
}

fn atomic16(lba: u64, blocks: u16) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x9C;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[12..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

#[test]
fn write_atomic() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    assert_eq!(
        rig.write(&n, &atomic16(4, 3), &[3; 3 * BS]).status,
        Status::GOOD
    );
    assert_eq!(rig.get(&n, 4, 3), vec![3; 3 * BS]);
    let r = rig.write(&n, &atomic16(0, 257), &vec![0; 257 * BS]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 12]))
    );
    let mut c = atomic16(0, 1);
    c[11] = 1; // ATOMIC BOUNDARY: not supported
    check(
        &rig.write(&n, &c, &[0; BS]),
        K::ILLEGAL_REQUEST,
        A::INVALID_FIELD_IN_CDB,
    );
}

#[test]
fn start_stop_unit() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    assert_eq!(rig.none(&n, &[0x1B, 0, 0, 0, 0, 0]).status, Status::GOOD);
    let not_ready = fixed(2, 0x04, 0x02, None);
    assert_eq!(
        check(
            &rig.none(&n, &[0; 6]),
            K::NOT_READY,
            A::NOT_READY_INITIALIZING_COMMAND_REQUIRED
        ),
        not_ready
    );
    check(
        &rig.read(&n, &rw10(0x28, 0, 1), 512),
        K::NOT_READY,
        A::NOT_READY_INITIALIZING_COMMAND_REQUIRED,
    );
    assert_eq!(rig.read(&n, &[0x03, 0, 0, 0, 18, 0], 18).data_in, not_ready);
    assert_eq!(
        rig.read(&n, &[0x12, 0, 0, 0, 36, 0], 36).status,
        Status::GOOD
    );
    assert_eq!(rig.none(&n, &[0x1B, 1, 0, 0, 1, 0]).status, Status::GOOD);
    assert_eq!(rig.none(&n, &[0; 6]).status, Status::GOOD);
    // LOEJ: the medium is not removable.
    let r = rig.none(&n, &[0x1B, 1, 0, 0, 2, 0]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xC9, 0, 4]))
    );
    let r = rig.none(&n, &[0x1B, 0, 0, 0, 0x20, 0]);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCF, 0, 4]))
    );
    assert_eq!(rig.none(&n, &[0x1B, 0, 0, 0, 0x10, 0]).status, Status::GOOD);
}

#[test]
fn mode_sense_pages() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.read(&n, &[0x1A, 0, 0x3F, 0, 0xFF, 0], 255);
    let mut want = vec![67, 0, 0x10, 8, 0, 0, 0x20, 0, 0, 0, 2, 0];
    want.extend_from_slice(&[0x01, 0x0A, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    want.extend_from_slice(&[0x08, 0x12]);
    want.extend_from_slice(&[0; 18]);
    want.extend_from_slice(&[0x0A, 0x0A, 0, 0x10, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0]);
    want.extend_from_slice(&[0x1C, 0x0A, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(r.data_in, want);
    assert_eq!(r.residual, Residual::Underflow(255 - 68));
    // Residuals: four bytes asked, four sent, no overflow.
    let r = rig.read(&n, &[0x1A, 0, 0x3F, 0, 4, 0], 4);
    assert_eq!((r.data_in.len(), r.residual), (4, Residual::None));
    // Changeable values of the Control page; saved values are not supported.
    let r = rig.read(&n, &[0x1A, 0x08, 0x4A, 0, 0xFF, 0], 255);
    assert_eq!(
        r.data_in,
        vec![
            15, 0, 0x10, 0, 0x0A, 0x0A, 0x04, 0, 0x08, 0, 0, 0, 0, 0, 0, 0
        ]
    );
    let r = rig.read(&n, &[0x1A, 0, 0xCA, 0, 0xFF, 0], 255);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::SAVING_PARAMETERS_NOT_SUPPORTED),
        fixed(5, 0x39, 0, None)
    );
    let r = rig.read(&n, &[0x1A, 0, 0x02, 0, 0xFF, 0], 255);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCD, 0, 2]))
    );
    // MODE SENSE(10) with a long LBA block descriptor.
    let r = rig.read(&n, &[0x5A, 0x10, 0x0A, 0, 0, 0, 0, 0, 0xFF, 0], 255);
    assert_eq!(&r.data_in[..8], &[0, 34, 0, 0x10, 1, 0, 0, 16]);
    assert_eq!(
        &r.data_in[8..24],
        &[0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 2, 0]
    );
    // All pages with all subpages equals all pages.
    let all = rig.read(&n, &[0x1A, 0x08, 0x3F, 0xFF, 0xFF, 0], 255);
    assert_eq!(all.data_in.len(), 60);
}

fn control_page(d_sense: bool, swp: bool) -> Vec<u8> {
    vec![
        0,
        0,
        0,
        0,
        0x0A,
        0x0A,
        if d_sense { 4 } else { 0 },
        0x10,
        if swp { 8 } else { 0 },
        0,
        0,
        0,
        0xFF,
        0xFF,
        0,
        0,
    ]
}

#[test]
fn mode_select_software_write_protect_and_d_sense_are_per_nexus() {
    let rig = Rig::new();
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    rig.none(&b, &[0; 6]);
    let p = control_page(false, true);
    assert_eq!(
        rig.write(&a, &[0x15, 0x10, 0, 0, 16, 0], &p).status,
        Status::GOOD
    );
    let r = rig.write(&a, &rw10(0x2A, 0, 1), &[0; BS]);
    assert_eq!(
        check(&r, K::DATA_PROTECT, A::SOFTWARE_WRITE_PROTECTED),
        fixed(7, 0x27, 2, None)
    );
    assert_eq!(rig.read(&a, &rw10(0x28, 0, 1), 512).status, Status::GOOD);
    // MODE SENSE(6) header, device-specific parameter: WP for a, not for b.
    let sense6 = [0x1A, 0x08, 0x0A, 0, 255, 0];
    assert_eq!(rig.read(&a, &sense6, 255).data_in[2], 0x90);
    let seen_by_b = rig.read(&b, &sense6, 255).data_in;
    assert_eq!(seen_by_b[2], 0x10);
    assert_eq!(&seen_by_b[4..16], &control_page(false, false)[4..]);
    // The Control page is per I_T nexus (Mode Page Policy VPD): the other nexus keeps
    // writing, with no MODE PARAMETERS CHANGED unit attention.
    assert_eq!(rig.none(&b, &[0; 6]).status, Status::GOOD);
    assert_eq!(
        rig.write(&b, &rw10(0x2A, 0, 1), &[0; BS]).status,
        Status::GOOD
    );
    // Descriptor-format sense once D_SENSE is set, for that nexus only.
    let p = control_page(true, false);
    assert_eq!(
        rig.write(&a, &[0x15, 0x10, 0, 0, 16, 0], &p).status,
        Status::GOOD
    );
    let r = rig.read(&a, &rw16(0x88, u64::MAX, 1), 512);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE),
        vec![0x72, 5, 0x21, 0, 0, 0, 0, 0]
    );
    let r = rig.read(&b, &rw16(0x88, u64::MAX, 1), 512);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE),
        fixed(5, 0x21, 0, None)
    );
    let p = control_page(false, false);
    assert_eq!(
        rig.write(
            &a,
            &[0x55, 0x10, 0, 0, 0, 0, 0, 0, 20, 0],
            &[&[0u8; 4][..], &p].concat()
        )
        .status,
        Status::GOOD
    );
    assert_eq!(
        rig.write(&a, &rw10(0x2A, 0, 1), &[0; BS]).status,
        Status::GOOD
    );
    assert_eq!(rig.none(&b, &[0; 6]).status, Status::GOOD);
}

#[test]
fn control_page_of_a_lost_nexus_is_forgotten_and_reset_restores_defaults() {
    let rig = Rig::new();
    let (a, a2) = (nexus(1, "a"), nexus(3, "a"));
    assert_eq!(
        rig.write(&a, &[0x15, 0x10, 0, 0, 16, 0], &control_page(true, true))
            .status,
        Status::GOOD
    );
    // A new session of the same initiator is a new I_T nexus with default pages.
    rig.lu.nexus_lost(a.id);
    assert_eq!(
        rig.write(&a2, &rw10(0x2A, 0, 1), &[0; BS]).status,
        Status::GOOD
    );
    assert_eq!(
        rig.write(&a2, &[0x15, 0x10, 0, 0, 16, 0], &control_page(true, true))
            .status,
        Status::GOOD
    );
    // LOGICAL UNIT RESET returns every nexus's pages to their defaults (SAM-5 §6.3.3).
    rig.lu.reset(rtgt_scsi::ResetKind::LogicalUnit);
    check(
        &rig.none(&a2, &[0; 6]),
        K::UNIT_ATTENTION,
        A::BUS_DEVICE_RESET_FUNCTION_OCCURRED,
    );
    assert_eq!(
        rig.write(&a2, &rw10(0x2A, 0, 1), &[0; BS]).status,
        Status::GOOD
    );
    let r = rig.read(&a2, &rw16(0x88, u64::MAX, 1), 512);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::LBA_OUT_OF_RANGE),
        fixed(5, 0x21, 0, None)
    );
}

#[test]
fn caching_page_is_shared_and_a_change_tells_the_other_nexuses() {
    let mut caps = rtgt_scsi::Capabilities::simple(512, 64);
    caps.write_cache_enabled = true;
    let store = MemoryBackend::with_capabilities(caps).unwrap();
    let lu = LogicalUnit::new(LuConfig::new("iqn.t", 0), store.capabilities());
    let (a, b) = (nexus(1, "a"), nexus(2, "b"));
    let run = |n: &rtgt_scsi::Nexus, cdb: &[u8], dir, data: &[u8], len| {
        lu.execute_sync(&store, n, &CommandRequest::new(cdb, len, dir), data)
    };
    assert_eq!(
        run(&b, &[0; 6], DataDirection::None, &[], 0).status,
        Status::GOOD
    );
    let mut caching = vec![0u8; 24];
    caching[4] = 0x08;
    caching[5] = 0x12;
    let r = run(
        &a,
        &[0x15, 0x10, 0, 0, 24, 0],
        DataDirection::Write,
        &caching,
        24,
    );
    assert_eq!(r.status, Status::GOOD);
    assert!(!lu.write_cache_enabled());
    check(
        &run(&b, &[0; 6], DataDirection::None, &[], 0),
        K::UNIT_ATTENTION,
        A::MODE_PARAMETERS_CHANGED,
    );
    // Not for the nexus that made the change.
    assert_eq!(
        run(&a, &[0; 6], DataDirection::None, &[], 0).status,
        Status::GOOD
    );
    // b sees WCE off too.
    let r = run(
        &b,
        &[0x1A, 0x08, 0x08, 0, 255, 0],
        DataDirection::Read,
        &[],
        255,
    );
    assert_eq!(r.data_in[6] & 0x04, 0);
}

#[test]
fn mode_select_errors() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let mut p = control_page(false, false);
    p[7] = 0; // QUEUE ALGORITHM MODIFIER is not changeable
    let r = rig.write(&n, &[0x15, 0x10, 0, 0, 16, 0], &p);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST),
        fixed(5, 0x26, 0, Some([0x8C, 0, 7]))
    );
    let r = rig.write(&n, &[0x15, 0x11, 0, 0, 16, 0], &control_page(false, false));
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xC8, 0, 1]))
    );
    let r = rig.write(&n, &[0x15, 0x00, 0, 0, 16, 0], &control_page(false, false));
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB);
    let r = rig.write(
        &n,
        &[0x15, 0x10, 0, 0, 10, 0],
        &control_page(false, false)[..10],
    );
    check(&r, K::ILLEGAL_REQUEST, A::PARAMETER_LIST_LENGTH_ERROR);
    // A block descriptor with another block length is refused.
    let mut p = vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 0];
    p.extend_from_slice(&control_page(false, false)[4..]);
    let r = rig.write(&n, &[0x15, 0x10, 0, 0, p.len() as u8, 0], &p);
    check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_PARAMETER_LIST);
}

#[test]
fn report_supported_operation_codes() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let rsoc = |opts: u8, op: u8, sa: u16| {
        let mut c = [0u8; 12];
        c[0] = 0xA3;
        c[1] = 0x0C;
        c[2] = opts;
        c[3] = op;
        c[4..6].copy_from_slice(&sa.to_be_bytes());
        c[6..10].copy_from_slice(&65535u32.to_be_bytes());
        rig.read(&n, &c, 65535)
    };
    let all = rsoc(0, 0, 0);
    let len = u32::from_be_bytes([
        all.data_in[0],
        all.data_in[1],
        all.data_in[2],
        all.data_in[3],
    ]) as usize;
    assert_eq!(len + 4, all.data_in.len());
    assert_eq!(len % 8, 0);
    let descriptors: Vec<&[u8]> = all.data_in[4..].chunks(8).collect();
    assert!(
        descriptors
            .iter()
            .any(|d| d == &[0x42, 0, 0, 0, 0, 0, 0, 10])
    );
    assert!(
        descriptors
            .iter()
            .any(|d| d == &[0x9E, 0, 0, 0x12, 0, 1, 0, 16])
    );
    let with_timeouts = rsoc(0x80, 0, 0);
    assert_eq!(with_timeouts.data_in.len(), 4 + descriptors.len() * 20);
    assert_eq!(
        rsoc(1, 0x2F, 0).data_in,
        vec![
            0, 3, 0, 10, 0x2F, 0x16, 0xFF, 0xFF, 0xFF, 0xFF, 0x3F, 0xFF, 0xFF, 0
        ]
    );
    let r = rsoc(1, 0x9E, 0x10);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCA, 0, 2]))
    );
    assert_eq!(&rsoc(2, 0x5E, 3).data_in[..6], &[0, 3, 0, 10, 0x5E, 0x03]);
    assert_eq!(rsoc(1, 0x1E, 0).data_in, vec![0, 1, 0, 0]);
    // An unknown MAINTENANCE IN service action points at the SERVICE ACTION field.
    let r = rig.read(&n, &[0xA3, 0x1F, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0], 256);
    assert_eq!(
        check(&r, K::ILLEGAL_REQUEST, A::INVALID_FIELD_IN_CDB),
        fixed(5, INVALID_CDB, 0, Some([0xCC, 0, 1]))
    );
}

#[test]
fn report_supported_task_management_functions() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.read(&n, &[0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], 4);
    assert_eq!(r.data_in, vec![0xDA, 0, 0, 0]);
    let r = rig.read(&n, &[0xA3, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0], 16);
    assert_eq!(
        r.data_in,
        vec![0xDA, 0, 0, 0x0C, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
}

#[test]
fn stepwise_read_uses_engine_buffers() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    rig.put(&n, 0, &[0x11; BS]);
    let r = stepwise(
        &rig.lu,
        &*rig.store,
        &n,
        &CommandRequest::new(&rw10(0x28, 0, 1), 512, DataDirection::Read),
        &[],
    );
    assert_eq!(r.data_in, vec![0x11; BS]);
    // Backend errors map to sense data.
    let mut caps = rig.store.capabilities();
    caps.num_blocks = BLOCKS;
    let failing = Failing(caps);
    let r = rig.lu.execute_sync(
        &failing,
        &n,
        &CommandRequest::new(&rw10(0x28, 0, 1), 512, DataDirection::Read),
        &[],
    );
    assert_eq!(
        check(&r, K::MEDIUM_ERROR, A::UNRECOVERED_READ_ERROR),
        fixed(3, 0x11, 0, None)
    );
    let r = rig.lu.execute_sync(
        &failing,
        &n,
        &CommandRequest::new(&rw10(0x2A, 0, 1), 512, DataDirection::Write),
        &[0; 512],
    );
    assert_eq!(
        check(
            &r,
            K::DATA_PROTECT,
            A::SPACE_ALLOCATION_FAILED_WRITE_PROTECT
        ),
        fixed(7, 0x27, 7, None)
    );
}

struct Failing(rtgt_scsi::Capabilities);

impl BlockBackend for Failing {
    fn capabilities(&self) -> rtgt_scsi::Capabilities {
        self.0.clone()
    }
    fn read_at(&self, _: u64, _: &mut [u8]) -> Result<(), rtgt_scsi::BackendError> {
        Err(rtgt_scsi::BackendError::Medium("bad sector".into()))
    }
    fn write_at(&self, _: u64, _: &[u8], _: bool) -> Result<(), rtgt_scsi::BackendError> {
        Err(rtgt_scsi::BackendError::NoSpace)
    }
    fn flush(&self) -> Result<(), rtgt_scsi::BackendError> {
        Ok(())
    }
    fn unmap(&self, _: u64, _: u64) -> Result<(), rtgt_scsi::BackendError> {
        Err(rtgt_scsi::BackendError::Unsupported)
    }
    fn write_zeroes(&self, _: u64, _: u64) -> Result<(), rtgt_scsi::BackendError> {
        Err(rtgt_scsi::BackendError::Other("x".into()))
    }
    fn allocation(
        &self,
        _: u64,
        _: u64,
    ) -> Result<rtgt_scsi::AllocationExtent, rtgt_scsi::BackendError> {
        Err(rtgt_scsi::BackendError::Unsupported)
    }
}

#[test]
fn short_data_out_is_a_data_phase_error() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let r = rig.run(&n, &rw10(0x2A, 0, 2), 1024, DataDirection::Write, &[0; 100]);
    check(&r, K::ABORTED_COMMAND, A::DATA_PHASE_ERROR);
}

#[test]
fn get_lba_status_without_provisioning_information() {
    let rig = Rig::new();
    let n = nexus(1, "a");
    let mut caps = rig.store.capabilities();
    caps.num_blocks = BLOCKS;
    let mut c = [0u8; 16];
    c[0] = 0x9E;
    c[1] = 0x12;
    c[9] = 100;
    c[13] = 24;
    let r = rig.lu.execute_sync(
        &Failing(caps),
        &n,
        &CommandRequest::new(&c, 24, DataDirection::Read),
        &[],
    );
    let mut want = vec![0, 0, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 100];
    want.extend_from_slice(&((BLOCKS - 100) as u32).to_be_bytes());
    want.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(r.data_in, want);
}
