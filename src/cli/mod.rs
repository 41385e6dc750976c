//! The client subcommands of `runnel`: what they print. The wire work is `runnel::client`'s.

pub mod cluster;
pub mod groups;
pub mod health;
pub mod produce;
pub mod progress;
pub mod table;
pub mod top;
pub mod topics;

/// Writes one line of a subcommand's output. When stdout is a pipe whose reader has gone
/// (`runnel topics list | head -1`), the rest of the output has nowhere to go: exit quietly.
pub fn write_line(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|_| stdout.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing the output: {e}");
        std::process::exit(1);
    }
}
