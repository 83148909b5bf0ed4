//! Progress of long commands (`replay`, `simulate`, `eval-detection`, `suggest-limits`) on
//! stderr: one line, rewritten at most twice a second, and only when stderr is a terminal — a
//! pipe or a file gets nothing, so logs, JSON on stdout and tests stay clean.
//!
//! Not here: what the commands compute.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the line is rewritten at most.
const EVERY: Duration = Duration::from_millis(500);

pub struct Progress {
    what: &'static str,
    /// Whether anything is shown (stderr is a terminal).
    shown: bool,
    last: Option<Instant>,
    drew: bool,
}

impl Progress {
    /// Progress of `what`, shown only if stderr is a terminal.
    pub fn new(what: &'static str) -> Progress {
        Progress {
            what,
            shown: std::io::stderr().is_terminal(),
            last: None,
            drew: false,
        }
    }

    /// Says `done` (of `total`, when known) and `note`, unless it said something under
    /// `EVERY` ago.
    pub fn update(&mut self, done: u64, total: Option<u64>, note: &str) {
        if !self.shown || self.last.is_some_and(|t| t.elapsed() < EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        self.drew = true;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{}\x1b[K", line(self.what, done, total, note));
        let _ = err.flush();
    }

    /// Wipes the line (before something else is printed to the terminal), if one was drawn.
    pub fn clear(&mut self) {
        if self.drew {
            eprint!("\r\x1b[K");
            self.drew = false;
            self.last = None;
        }
    }

    /// Ends the line, if one was drawn.
    pub fn finish(&mut self) {
        if self.drew {
            eprintln!();
            self.drew = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The progress line: `replay: 1,200,000 (40%), minute 340`.
fn line(what: &str, done: u64, total: Option<u64>, note: &str) -> String {
    let count = thousands(done);
    let share = match total {
        Some(t) if t > 0 => format!(" of {} ({}%)", thousands(t), done.min(t) * 100 / t),
        _ => String::new(),
    };
    let note = if note.is_empty() {
        String::new()
    } else {
        format!(", {note}")
    };
    format!("{what}: {count}{share}{note}")
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_how_far() {
        // (done, total, note, line)
        for (done, total, note, expected) in [
            (0, None, "", "replay: 0"),
            (
                1_234_567,
                None,
                "minute 340",
                "replay: 1,234,567, minute 340",
            ),
            (40, Some(100), "", "replay: 40 of 100 (40%)"),
            (150, Some(100), "", "replay: 150 of 100 (100%)"),
            (3, Some(0), "", "replay: 3"),
        ] {
            assert_eq!(line("replay", done, total, note), expected);
        }
    }

    #[test]
    fn nothing_is_drawn_off_a_terminal() {
        // Tests run with stderr captured or piped: the line is never drawn there.
        let mut p = Progress::new("test");
        if !std::io::stderr().is_terminal() {
            p.update(1, Some(2), "");
            assert!(!p.drew);
        }
    }
}
