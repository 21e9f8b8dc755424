//! Replays the committed fuzz seed corpus (`fuzz/seeds/cdb/`) and the regression inputs under
//! `tests/data/` through the properties of the `cdb` fuzz target.

mod props;

use std::path::Path;

fn replay(dir: &Path, prefix: &str) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) {
            continue;
        }
        let data = std::fs::read(e.path()).unwrap();
        props::cdb(&data);
        n += 1;
    }
    n
}

#[test]
fn seed_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/cdb");
    assert!(
        replay(&dir, "") >= 20,
        "seed corpus missing at {}",
        dir.display()
    );
}

#[test]
fn regression_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    replay(&dir, "fuzz-cdb-");
}

#[test]
fn hand_written_edge_cases() {
    // Truncated records, an ACA attribute, huge lengths, and every opcode with a zero CDB.
    props::cdb(&[0x02]);
    props::cdb(&props::encode(0xFF, 0, &[0; 6], &[]));
    props::cdb(&props::encode(
        2,
        u32::MAX,
        &[
            0x8A, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0,
        ],
        &[],
    ));
    let mut all = Vec::new();
    for op in 0..=255u8 {
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        all.extend(props::encode(op & 0x0B, 512, &cdb, &[0; 64]));
    }
    props::cdb(&all);
}
