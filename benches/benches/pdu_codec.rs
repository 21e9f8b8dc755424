//! rtgt-pdu hot paths: BHS decode, SCSI Command decode, Data-In header
//! encode (RFC 7143 §11), login text parsing (§6.1) and zero-copy framing
//! of a 4 KiB Data-Out.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_main};
use rtgt_pdu::text::parse_pairs;
use rtgt_pdu::{
    BhsLengths, DataIn, DataInStatus, DataOut, Digests, EncodedHeader, Event, Framer, Itt, Lun,
    Pdu, PduHeader, Residual, ScsiCommand, ScsiStatus, Sn, TaskAttribute, Ttt,
};

/// The Login Request text libiscsi sends (captured against tgt).
const LOGIN_TEXT: &[u8] = b"InitiatorName=iqn.2024-01.org.rtgt:initiator\0\
TargetName=iqn.2024-01.org.rtgt:golden\0SessionType=Normal\0HeaderDigest=None,CRC32C\0\
DataDigest=None\0InitialR2T=No\0ImmediateData=Yes\0MaxBurstLength=262144\0\
FirstBurstLength=262144\0DefaultTime2Wait=2\0DefaultTime2Retain=0\0MaxOutstandingR2T=1\0\
ErrorRecoveryLevel=0\0IFMarker=No\0OFMarker=No\0MaxConnections=1\0\
MaxRecvDataSegmentLength=262144\0DataPDUInOrder=Yes\0DataSequenceInOrder=Yes\0";

fn read10() -> ScsiCommand {
    let mut cdb = [0u8; 16];
    cdb[..10].copy_from_slice(&[0x28, 0, 0, 0, 0x12, 0x34, 0, 0, 8, 0]);
    ScsiCommand {
        final_pdu: true,
        read: true,
        attr: TaskAttribute::SIMPLE,
        lun: Lun::from_number(1).unwrap_or_default(),
        itt: Itt(0x1234),
        expected_data_transfer_length: 4096,
        cmd_sn: Sn(77),
        exp_stat_sn: Sn(66),
        cdb,
        ..Default::default()
    }
}

fn data_in() -> DataIn {
    DataIn {
        final_pdu: true,
        lun: Lun::from_number(1).unwrap_or_default(),
        itt: Itt(0x1234),
        ttt: Ttt::RESERVED,
        exp_cmd_sn: Sn(78),
        max_cmd_sn: Sn(141),
        data_sn: Sn(0),
        buffer_offset: 0,
        status: Some(DataInStatus {
            status: ScsiStatus::GOOD,
            stat_sn: Sn(66),
            residual: Residual::None,
        }),
        ..Default::default()
    }
}

fn headers(c: &mut Criterion) {
    let data_out = DataOut {
        final_pdu: true,
        itt: Itt(9),
        ttt: Ttt(3),
        data_sn: Sn(1),
        buffer_offset: 4096,
        ..Default::default()
    }
    .encode(BhsLengths::data_bounded(4096));
    c.bench_function("bhs_decode/data_out", |b| {
        b.iter(|| PduHeader::decode(black_box(&data_out)));
    });
    let cmd = read10().encode(BhsLengths::ZERO);
    c.bench_function("bhs_decode/scsi_command", |b| {
        b.iter(|| PduHeader::decode(black_box(&cmd)));
    });
    c.bench_function("scsi_command_decode/typed", |b| {
        b.iter(|| ScsiCommand::decode(black_box(&cmd)));
    });
    let hdr = data_in();
    c.bench_function("data_in_encode/bhs", |b| {
        b.iter(|| black_box(&hdr).encode(BhsLengths::data_bounded(black_box(4096))));
    });
    c.bench_function("data_in_encode/bhs_into", |b| {
        let mut out = [0u8; 48];
        b.iter(|| {
            black_box(&hdr).encode_into(BhsLengths::data_bounded(black_box(4096)), &mut out);
            black_box(&out);
        });
    });
    c.bench_function("data_in_encode/with_header_digest", |b| {
        b.iter(|| {
            EncodedHeader::new(
                &black_box(&hdr).encode(BhsLengths::data_bounded(4096)),
                true,
            )
        });
    });
}

fn text(c: &mut Criterion) {
    let mut g = c.benchmark_group("login_text_parse");
    g.throughput(Throughput::Bytes(LOGIN_TEXT.len() as u64));
    g.bench_function("libiscsi_login_request", |b| {
        b.iter(|| parse_pairs(black_box(LOGIN_TEXT)));
    });
    g.finish();
}

fn framer(c: &mut Criterion) {
    let pdu = Pdu::with_data(
        DataOut {
            final_pdu: true,
            itt: Itt(1),
            ttt: Ttt(2),
            ..Default::default()
        },
        vec![0x5a; 4096],
    );
    let mut g = c.benchmark_group("framer_data_out_4k");
    for (name, digests) in [
        ("no_digests", Digests::NONE),
        ("both_digests", Digests::BOTH),
    ] {
        let wire = pdu.to_bytes(digests).unwrap_or_default();
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(name, |b| {
            let mut f = Framer::new();
            f.enter_full_feature(digests, 262_144);
            b.iter(|| {
                let mut input = black_box(&wire[..]);
                let mut n = 0usize;
                while let Ok(Some(ev)) = f.next_event(&mut input) {
                    if let Event::Data(d) = ev {
                        n += d.len();
                    }
                }
                n
            });
        });
    }
    g.finish();
}

/// The generated group function stays private to this bench.
mod group {
    criterion::criterion_group!(benches, super::headers, super::text, super::framer);
}
criterion_main!(group::benches);
