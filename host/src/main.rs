fn main() {
    eprintln!("xmpp-handshake: not yet");
    std::process::exit(2);
}
