//! rtgtd: the rtgt iSCSI target daemon.
fn main() {
    eprintln!("rtgtd: the target engine is not built yet");
    std::process::exit(1);
}
