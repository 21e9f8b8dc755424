//! The libiscsi-equivalent checks that make sense without TCP, run over iSER through
//! rtgt-client (its iSER bridge on the soft fabric) against the real engine: the read/write/
//! verify family of SBC-4 — READ/WRITE(10) and (16) at several sizes and LBAs including
//! beyond the end, WRITE AND VERIFY, VERIFY with byte check, COMPARE AND WRITE (match and
//! miscompare), UNMAP and GET LBA STATUS — plus the pipelined engine with several commands
//! outstanding, and a task management reset.

mod iser_support;

use std::net::SocketAddr;
use std::time::Duration;

use iser_support::{Rig, TARGET, pattern};
use rtgt_client::scsi::{Cdb, Sense};
use rtgt_client::transport::{IserFabric, IserOptions};
use rtgt_client::{Client, ClientError, ConnectOptions, DataDir, IscsiUrl, TransportChoice};

const BLOCKS: u64 = 64 << 20 >> 9;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 100 + n], 3260))
}

fn rig(n: u8) -> (Rig, IscsiUrl, ConnectOptions) {
    let a = addr(n);
    let text = format!(
        r#"
[[portal]]
listen = ["{a}"]
transport = "iser"

[[target]]
name = "{TARGET}"

[[target.lun]]
number = 0
backend = "memory:64MiB"
thin_provisioning = true

[performance]
buffer_count = 16
"#
    );
    let rig = Rig::start_with(a, &text);
    let url: IscsiUrl = format!("iscsi://{a}/{TARGET}/0").parse().unwrap();
    let opts = ConnectOptions {
        timeout: Duration::from_secs(10),
        nop_interval: None,
        transport: TransportChoice::Iser {
            fabric: IserFabric::Soft(rig.fabric.clone()),
            options: IserOptions {
                data_area: 8 << 20,
                ..IserOptions::default()
            },
        },
        ..ConnectOptions::default()
    };
    (rig, url, opts)
}

/// The sense of a failed command.
fn sense(r: Result<rtgt_client::CommandResult, ClientError>) -> Sense {
    match r {
        Err(ClientError::Scsi(f)) => f.sense.expect("sense data"),
        other => panic!("expected CHECK CONDITION, got {other:?}"),
    }
}

fn cdb(bytes: &[u8]) -> Cdb {
    Cdb::raw(bytes).unwrap()
}

fn rw16(op: u8, lba: u64, blocks: u32, flags: u8) -> Cdb {
    let mut c = [0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    cdb(&c)
}

fn rw10(op: u8, lba: u32, blocks: u16) -> Cdb {
    let mut c = [0u8; 10];
    c[0] = op;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb(&c)
}

#[test]
fn login_inquiry_and_capacity_over_iser() {
    let (_rig, url, opts) = rig(1);
    let mut c = Client::connect(&url, &opts).unwrap();
    assert!(c.outcome().negotiated.rdma_extensions);
    assert_eq!(
        c.outcome().negotiated.header_digest,
        rtgt_pdu::negotiation::Digest::None
    );
    let inq = c.inquiry().unwrap();
    assert_eq!(inq.device_type, 0);
    let cap = c.capacity().unwrap();
    assert_eq!((cap.blocks, cap.block_len), (BLOCKS, 512));
    c.test_unit_ready().unwrap();
    c.logout().unwrap();
}

#[test]
fn read_write_10_and_16_at_several_sizes_and_lbas() {
    let (_rig, url, opts) = rig(2);
    let mut c = Client::connect(&url, &opts).unwrap();
    let _ = c.test_unit_ready();
    for (i, blocks) in [1u32, 8, 64, 255, 2048].into_iter().enumerate() {
        for lba in [0u64, 1000, BLOCKS - u64::from(blocks)] {
            let len = blocks as usize * 512;
            let mut data = pattern(i as u8 ^ lba as u8, len);
            let (w, r) = if blocks <= 0xffff && u32::try_from(lba).is_ok() && i % 2 == 0 {
                (
                    rw10(0x2a, lba as u32, blocks as u16),
                    rw10(0x28, lba as u32, blocks as u16),
                )
            } else {
                (rw16(0x8a, lba, blocks, 0), rw16(0x88, lba, blocks, 0))
            };
            c.execute(&w, DataDir::Write, &mut data).unwrap();
            let mut back = vec![0u8; len];
            let res = c.execute(&r, DataDir::Read, &mut back).unwrap();
            assert_eq!(res.transferred as usize, len);
            assert_eq!(back, data, "{blocks} blocks at {lba}");
        }
    }
}

#[test]
fn transfers_beyond_the_end_are_refused_with_lba_out_of_range() {
    let (_rig, url, opts) = rig(3);
    let mut c = Client::connect(&url, &opts).unwrap();
    let _ = c.test_unit_ready();
    let mut buf = vec![0u8; 4096];
    // Starting past the end, and crossing it, read and write, 10 and 16.
    for cdb in [
        rw16(0x88, BLOCKS, 8, 0),
        rw16(0x88, BLOCKS - 4, 8, 0),
        rw10(0x28, BLOCKS as u32 - 1, 8),
    ] {
        let s = sense(c.execute(&cdb, DataDir::Read, &mut buf));
        assert_eq!((s.key, s.asc, s.ascq), (0x5, 0x21, 0x00), "{cdb:?}");
    }
    for cdb in [rw16(0x8a, BLOCKS, 8, 0), rw10(0x2a, BLOCKS as u32 - 2, 8)] {
        let s = sense(c.execute(&cdb, DataDir::Write, &mut buf));
        assert_eq!((s.key, s.asc, s.ascq), (0x5, 0x21, 0x00), "{cdb:?}");
    }
    // The connection goes on.
    c.execute(&rw16(0x88, 0, 8, 0), DataDir::Read, &mut buf)
        .unwrap();
}

#[test]
fn write_and_verify_then_verify_with_byte_check() {
    let (_rig, url, opts) = rig(4);
    let mut c = Client::connect(&url, &opts).unwrap();
    let _ = c.test_unit_ready();
    let mut data = pattern(0x42, 16 * 512);
    // WRITE AND VERIFY(16), BYTCHK=0.
    c.execute(&rw16(0x8e, 500, 16, 0), DataDir::Write, &mut data)
        .unwrap();
    let mut back = vec![0u8; data.len()];
    c.execute(&rw16(0x88, 500, 16, 0), DataDir::Read, &mut back)
        .unwrap();
    assert_eq!(back, data);
    // VERIFY(16) with BYTCHK=01b: the same bytes compare equal...
    let mut same = data.clone();
    c.execute(&rw16(0x8f, 500, 16, 0x02), DataDir::Write, &mut same)
        .unwrap();
    // ...and a different byte is a MISCOMPARE.
    let mut other = data.clone();
    other[3000] ^= 0xff;
    let s = sense(c.execute(&rw16(0x8f, 500, 16, 0x02), DataDir::Write, &mut other));
    assert_eq!((s.key, s.asc, s.ascq), (0xe, 0x1d, 0x00));
    // VERIFY without byte check reads the medium only.
    c.execute(&rw16(0x8f, 500, 16, 0), DataDir::None, &mut [])
        .unwrap();
}

#[test]
fn compare_and_write_matches_and_miscompares() {
    let (_rig, url, opts) = rig(5);
    let mut c = Client::connect(&url, &opts).unwrap();
    let _ = c.test_unit_ready();
    let old = pattern(1, 512);
    let new = pattern(2, 512);
    c.execute(&rw16(0x8a, 77, 1, 0), DataDir::Write, &mut old.clone())
        .unwrap();
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[2..10].copy_from_slice(&77u64.to_be_bytes());
    caw[13] = 1;
    // Compare data then write data.
    let mut both = [old.clone(), new.clone()].concat();
    c.execute(&cdb(&caw), DataDir::Write, &mut both).unwrap();
    let mut back = vec![0u8; 512];
    c.execute(&rw16(0x88, 77, 1, 0), DataDir::Read, &mut back)
        .unwrap();
    assert_eq!(back, new);
    // The medium no longer holds `old`: miscompare, nothing written.
    let mut stale = [old, pattern(3, 512)].concat();
    let s = sense(c.execute(&cdb(&caw), DataDir::Write, &mut stale));
    assert_eq!((s.key, s.asc), (0xe, 0x1d));
    c.execute(&rw16(0x88, 77, 1, 0), DataDir::Read, &mut back)
        .unwrap();
    assert_eq!(back, new);
}

#[test]
fn unmap_then_get_lba_status_reports_deallocated_blocks() {
    let (_rig, url, opts) = rig(6);
    let mut c = Client::connect(&url, &opts).unwrap();
    let _ = c.test_unit_ready();
    let mut data = pattern(9, 64 * 512);
    c.execute(&rw16(0x8a, 4096, 64, 0), DataDir::Write, &mut data)
        .unwrap();
    let status = |c: &mut Client, lba: u64| -> u8 {
        let mut g = [0u8; 16];
        g[0] = 0x9e;
        g[1] = 0x12;
        g[2..10].copy_from_slice(&lba.to_be_bytes());
        g[10..14].copy_from_slice(&64u32.to_be_bytes());
        let mut buf = vec![0u8; 64];
        c.execute(&cdb(&g), DataDir::Read, &mut buf).unwrap();
        // First descriptor: LBA (8), blocks (4), provisioning status (low nibble).
        assert_eq!(u64::from_be_bytes(buf[8..16].try_into().unwrap()), lba);
        buf[20] & 0x0f
    };
    assert_eq!(status(&mut c, 4096), 0, "mapped after the write");
    // UNMAP 64 blocks at 4096.
    let mut list = vec![0u8; 24];
    list[0..2].copy_from_slice(&22u16.to_be_bytes());
    list[2..4].copy_from_slice(&16u16.to_be_bytes());
    list[8..16].copy_from_slice(&4096u64.to_be_bytes());
    list[16..20].copy_from_slice(&64u32.to_be_bytes());
    let mut unmap = [0u8; 10];
    unmap[0] = 0x42;
    unmap[7..9].copy_from_slice(&24u16.to_be_bytes());
    c.execute(&cdb(&unmap), DataDir::Write, &mut list).unwrap();
    assert_eq!(status(&mut c, 4096), 1, "deallocated after UNMAP");
    // Deallocated blocks read as zeros.
    let mut back = vec![0xffu8; 64 * 512];
    c.execute(&rw16(0x88, 4096, 64, 0), DataDir::Read, &mut back)
        .unwrap();
    assert!(back.iter().all(|&b| b == 0));
}

#[test]
fn a_logical_unit_reset_over_iser_leaves_the_session_usable() {
    let (_rig, url, opts) = rig(7);
    let mut c = Client::connect(&url, &opts).unwrap();
    let _ = c.test_unit_ready();
    let r = c
        .task_management(rtgt_pdu::TmfFunction::LOGICAL_UNIT_RESET, None)
        .unwrap();
    assert_eq!(r, rtgt_pdu::TmfResponse::FUNCTION_COMPLETE);
    // The reset leaves a unit attention; the next commands work.
    let mut buf = vec![0u8; 4096];
    c.execute_retry_ua(&rw16(0x88, 0, 8, 0), DataDir::Read, &mut buf)
        .unwrap();
    c.logout().unwrap();
}

#[test]
fn the_pipelined_engine_keeps_many_commands_outstanding_over_iser() {
    use rtgt_client::engine::{ConnKey, Engine, EngineConfig, IoSource, IoStatus};
    use rtgt_client::workload::{IoSpec, Next};

    /// Writes `count` IOs of `blocks`, then reads them back and compares.
    struct WriteThenRead {
        blocks: u32,
        count: u64,
        next: u64,
        outstanding: usize,
        max_outstanding: usize,
        verified: u64,
    }
    impl IoSource for WriteThenRead {
        fn next(&mut self, _: ConnKey, _: std::time::Instant) -> Next {
            if self.next >= 2 * self.count {
                return Next::Wait(None);
            }
            // Reads start once every write has completed.
            if self.next == self.count && self.outstanding > 0 {
                return Next::Wait(None);
            }
            let i = self.next % self.count;
            let write = self.next < self.count;
            self.next += 1;
            self.outstanding += 1;
            self.max_outstanding = self.max_outstanding.max(self.outstanding);
            Next::Io(IoSpec {
                write,
                lba: i * u64::from(self.blocks),
                blocks: self.blocks,
                ..IoSpec::default()
            })
        }
        fn fill(&mut self, io: &IoSpec, buf: &mut [u8]) {
            buf.copy_from_slice(&pattern(io.lba as u8, buf.len()));
        }
        fn complete(
            &mut self,
            _: ConnKey,
            io: &IoSpec,
            status: &IoStatus,
            data: &[u8],
            _: std::time::Instant,
        ) -> rtgt_client::Result<()> {
            self.outstanding -= 1;
            assert_eq!(status, &IoStatus::Good, "{io:?}");
            if !io.write {
                assert_eq!(data, pattern(io.lba as u8, data.len()), "{io:?}");
                self.verified += 1;
            }
            Ok(())
        }
    }

    let (_rig, url, opts) = rig(8);
    let mut cfg = EngineConfig::new(16, 65_536, 512);
    cfg.max_ios = Some(96);
    let engine = Engine::connect(&url, &opts, cfg).unwrap();
    let mut src = WriteThenRead {
        blocks: 128,
        count: 48,
        next: 0,
        outstanding: 0,
        max_outstanding: 0,
        verified: 0,
    };
    let stats = engine.run(&mut src).unwrap();
    assert_eq!(stats.errors, 0);
    assert_eq!(src.verified, 48);
    assert!(src.max_outstanding > 1, "commands were pipelined");
}
