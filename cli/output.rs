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
            println!("{}", json!({ "type": kind, "data": data }));
        }
    }

    /// A line for people. Printed only without `--json`.
    pub fn human(&self, line: impl AsRef<str>) {
        if !self.json {
            println!("{}", line.as_ref());
        }
    }

    /// A line for people on stderr, either way (progress, warnings).
    pub fn note(&self, line: impl AsRef<str>) {
        eprintln!("{}", line.as_ref());
    }
}
