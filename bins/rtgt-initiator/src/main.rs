//! rtgt-initiator: the rtgt initiator test and load tool.
fn main() {
    eprintln!("rtgt-initiator: not built yet");
    std::process::exit(1);
}
