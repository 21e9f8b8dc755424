//! The stepwise path (prepare / execute / complete with an independent engine) and
//! `execute_sync` produce exactly the same responses and leave the store in the same state.

mod common;

use common::*;
use rtgt_scsi::{BlockBackend, CommandRequest, DataDirection};

struct Case {
    cdb: Vec<u8>,
    edtl: u32,
    dir: DataDirection,
    out: Vec<u8>,
}

fn case(cdb: &[u8], edtl: u32, dir: DataDirection, out: Vec<u8>) -> Case {
    Case {
        cdb: cdb.to_vec(),
        edtl,
        dir,
        out,
    }
}

fn corpus(naa: [u8; 16]) -> Vec<Case> {
    use DataDirection::{None as N, Read as R, Write as W};
    let pattern: Vec<u8> = (0..8 * BS).map(|i| (i * 31 % 256) as u8).collect();
    let mut caw_data = pattern[..2 * BS].to_vec();
    caw_data.extend_from_slice(&[0xEE; 2 * BS]);
    let mut caw_bad = caw_data.clone();
    caw_bad[5] ^= 1;
    let mut unmap = vec![0, 22, 0, 16, 0, 0, 0, 0];
    unmap.extend_from_slice(&40u64.to_be_bytes());
    unmap.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 0]);
    let mut xcopy = vec![1, 0x18, 0, 32, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 0];
    let mut t = vec![0u8; 32];
    t[0] = 0xE4;
    t[4] = 1;
    t[5] = 3;
    t[7] = 16;
    t[8..24].copy_from_slice(&naa);
    t[30] = 2;
    xcopy.extend_from_slice(&t);
    let mut s = vec![0u8; 28];
    s[0] = 2;
    s[3] = 0x18;
    s[11] = 4;
    s[19] = 0;
    s[27] = 200;
    xcopy.extend_from_slice(&s);
    let mut reg = vec![0u8; 24];
    reg[15] = 0x77;
    let mut res = vec![0u8; 24];
    res[7] = 0x77;
    vec![
        case(&rw10(0x2A, 0, 8), 4096, W, pattern.clone()),
        case(&rw10(0x28, 0, 8), 4096, R, vec![]),
        case(&rw10(0x28, 0, 8), 1000, R, vec![]),
        case(&rw16(0x88, 2, 2), 2048, R, vec![]),
        case(&rw12(0xA8, 7, 1), 0, N, vec![]),
        case(&rw10(0x2A, 0, 2), 512, W, pattern[..512].to_vec()),
        case(
            &rw16(0x8A, BLOCKS - 1, 2),
            1024,
            W,
            pattern[..1024].to_vec(),
        ),
        case(&caw(0, 2), 4 * BS as u32, W, caw_data),
        case(&caw(0, 2), 4 * BS as u32, W, caw_bad),
        case(&rw16(0x8B, 3, 2), 1024, W, vec![0x0F; 1024]),
        case(
            &[0x2F, 0x02, 0, 0, 0, 0, 0, 0, 2, 0],
            1024,
            W,
            vec![0xEE; 1024],
        ),
        case(
            &[0x2F, 0x02, 0, 0, 0, 0, 0, 0, 2, 0],
            1024,
            W,
            vec![0xEF; 1024],
        ),
        case(
            &[0x8F, 0x06, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0],
            512,
            W,
            vec![0xEE; 512],
        ),
        case(&[0x2F, 0, 0, 0, 0, 0, 0, 0, 8, 0], 0, N, vec![]),
        case(&[0x2E, 0x02, 0, 0, 0, 9, 0, 0, 1, 0], 512, W, vec![3; 512]),
        case(&[0x41, 0, 0, 0, 0, 20, 0, 0, 9, 0], 512, W, vec![0x5C; 512]),
        case(&[0x41, 0, 0, 0, 0, 30, 0, 0, 3, 0], 512, W, vec![0; 512]),
        case(
            &[0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 20, 0, 0, 0, 2, 0, 0],
            512,
            W,
            vec![1; 512],
        ),
        case(
            &[0x93, 0x01, 0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0, 2, 0, 0],
            0,
            N,
            vec![],
        ),
        case(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], 24, W, unmap),
        case(
            &[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 38, 0, 0, 0, 24, 0, 0],
            24,
            R,
            vec![],
        ),
        case(
            &[0x9E, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 24, 0, 0],
            24,
            R,
            vec![],
        ),
        case(
            &[0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 76, 0, 0],
            76,
            W,
            xcopy,
        ),
        case(&rw10(0x28, 200, 4), 2048, R, vec![]),
        case(&[0x12, 1, 0x83, 0, 255, 0], 255, R, vec![]),
        case(&[0x1A, 0, 0x3F, 0, 255, 0], 255, R, vec![]),
        case(&[0x5F, 0, 0, 0, 0, 0, 0, 0, 24, 0], 24, W, reg),
        case(&[0x5F, 1, 3, 0, 0, 0, 0, 0, 24, 0], 24, W, res),
        case(&[0x5E, 3, 0, 0, 0, 0, 0, 1, 0, 0], 256, R, vec![]),
        case(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], 0, N, vec![]),
        case(&rw10(0x28, BLOCKS as u32, 1), 512, R, vec![]),
        case(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0], 512, R, vec![]),
        case(
            &[0xA3, 0x0C, 0x80, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
            4096,
            R,
            vec![],
        ),
    ]
}

fn lcg(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn stepwise_and_sync_agree() {
    let sync = Rig::new();
    let step = Rig::new();
    assert_eq!(sync.lu.identity(), step.lu.identity());
    let n = nexus(1, "a");
    let mut cases = corpus(sync.lu.identity().naa());
    let mut seed = 0x1234_5678u64;
    for _ in 0..200 {
        let lba = lcg(&mut seed) % (BLOCKS - 16);
        let blocks = (lcg(&mut seed) % 16) as u32 + 1;
        let bytes = blocks * BS as u32;
        if lcg(&mut seed) % 2 == 0 {
            let fill = lcg(&mut seed) as u8;
            cases.push(case(
                &rw16(0x8A, lba, blocks),
                bytes,
                DataDirection::Write,
                vec![fill; bytes as usize],
            ));
        } else {
            cases.push(case(
                &rw16(0x88, lba, blocks),
                bytes,
                DataDirection::Read,
                vec![],
            ));
        }
    }
    for (i, c) in cases.iter().enumerate() {
        let req = CommandRequest::new(&c.cdb, c.edtl, c.dir);
        let a = sync.lu.execute_sync(&*sync.store, &n, &req, &c.out);
        let b = stepwise(&step.lu, &*step.store, &n, &req, &c.out);
        assert_eq!(a, b, "case {i}: {:02x?}", c.cdb);
    }
    let mut x = vec![0u8; BLOCKS as usize * BS];
    let mut y = vec![0u8; BLOCKS as usize * BS];
    sync.store.read_at(0, &mut x).unwrap();
    step.store.read_at(0, &mut y).unwrap();
    assert!(x == y, "stores differ");
    for lba in [0, 20, 40, 43, 200, BLOCKS - 1] {
        let off = lba * BS as u64;
        assert_eq!(
            sync.store.allocation(off, 1 << 20).unwrap(),
            step.store.allocation(off, 1 << 20).unwrap()
        );
    }
}
