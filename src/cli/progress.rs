//! Progress of a long client command (consuming many records, deleting many topics) on
//! stderr, redrawn in place at most five times a second; shown only when stderr is a terminal,
//! so pipes, files and scripts get none of it.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const REDRAW: Duration = Duration::from_millis(200);

pub struct Progress {
    label: &'static str,
    total: Option<u64>,
    done: u64,
    drawn: Option<Instant>,
    on: bool,
}

impl Progress {
    /// `shown`: the caller's condition besides a terminal on stderr (the consumer shows none
    /// while its records go to the same terminal).
    pub fn new(label: &'static str, total: Option<u64>, shown: bool) -> Self {
        Self {
            label,
            total,
            done: 0,
            drawn: None,
            on: shown && std::io::stderr().is_terminal(),
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if self.on && self.drawn.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw();
        }
    }

    fn draw(&mut self) {
        self.drawn = Some(Instant::now());
        let line = match self.total {
            Some(t) if t > 0 => format!(
                "{} {}/{} ({}%)",
                self.label,
                self.done,
                t,
                self.done.saturating_mul(100) / t
            ),
            _ => format!("{} {}", self.label, self.done),
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
    }

    /// Clears the line, so what follows starts clean.
    pub fn finish(&mut self) {
        if self.on && self.drawn.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
        self.on = false;
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}
