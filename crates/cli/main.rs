//! `soundalike`: what sounds like this song? The commands live in the library (`lib.rs`), which the
//! Python bindings share.

fn main() -> std::process::ExitCode {
    soundalike::main()
}
