//! Replays the fuzz targets' properties over the committed seed corpus
//! (`fuzz/seeds/<target>/`) and every input a fuzzer ever crashed on
//! (`tests/data/fuzz/<target>/`, named after what it caught), so the
//! properties run in the ordinary test suite.

mod props;

use std::path::Path;

fn inputs(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.expect("directory entry").path();
            let bytes = std::fs::read(&path).expect("readable input");
            (path.display().to_string(), bytes)
        })
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut count = 0;
    for dir in [
        root.join("tests/data/fuzz").join(target),
        root.join("../../fuzz/seeds").join(target),
    ] {
        if !dir.exists() {
            continue;
        }
        for (name, bytes) in inputs(&dir) {
            eprintln!("{name}");
            check(&bytes);
            count += 1;
        }
    }
    assert!(count > 0, "no inputs for {target}");
}

#[test]
fn framer_inputs() {
    replay("framer", props::framer::framer);
}

#[test]
fn text_keys_inputs() {
    replay("text_keys", props::text_keys::text_keys);
}

#[test]
fn negotiation_inputs() {
    replay("negotiation", props::negotiation::negotiation);
}
