//! Output: human text on a terminal, or `--json` lines with a `{type, data}`
//! envelope (ripgrep's convention) for machines. Only the cli prints.

use serde::Serialize;
use serde_json::json;

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// One machine-readable line: `{"type": kind, "data": data}`. Printed only with `--json`.
    pub fn event<T: Serialize>(&self, kind: &str, data: &T) {
        if self.json {
            print_line(&json!({ "type": kind, "data": data }).to_string());
        }
    }

    /// A line for people. Printed only without `--json`.
    pub fn human(&self, line: impl AsRef<str>) {
        if !self.json {
            print_line(line.as_ref());
        }
    }

    /// A line for people on stderr, either way (progress, warnings).
    pub fn note(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }
}

/// Prints one line on stdout. A reader that closed the pipe (`cutover quarantine | head`)
/// has what it wanted: the process ends quietly with exit 0 instead of panicking.
fn print_line(line: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = writeln!(stdout, "{line}") {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
    }
}
