//! Secret masking: every registered value is replaced by `***` in all output.
//!
//! Output is masked line by line, after the whole line has arrived, so a secret split across
//! two writes of the process is still caught. Multi-line secrets are registered line by line,
//! as GitHub does, so each of their lines is masked wherever it appears.

use std::sync::{Arc, RwLock};

/// The set of values to hide. Cheap to clone; clones share the set, so an `::add-mask::` in
/// one step hides the value in every later line of the job.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    values: Arc<RwLock<Vec<String>>>,
}

/// Values shorter than this are not masked: masking `a` or `1` would mangle all output and
/// reveal more than it hides. GitHub skips empty values; we also skip single characters.
const MIN_LEN: usize = 2;

impl Masker {
    pub fn new() -> Self {
        Masker::default()
    }

    /// Registers a secret value (each of its lines separately).
    pub fn add(&self, value: &str) {
        let mut values = self
            .values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for line in value.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.trim().len() >= MIN_LEN && !values.iter().any(|v| v == line) {
                values.push(line.to_owned());
            }
        }
        // Longest first, so that a secret containing another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Hides every registered value in `text`.
    pub fn mask(&self, text: &str) -> String {
        let values = self
            .values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = text.to_owned();
        for v in values.iter() {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_each_line_of_a_multiline_secret() {
        let m = Masker::new();
        m.add("first-line\nsecond-line");
        assert_eq!(m.mask("a first-line b"), "a *** b");
        assert_eq!(m.mask("second-line"), "***");
    }

    #[test]
    fn longest_first() {
        let m = Masker::new();
        m.add("abc");
        m.add("abcdef");
        assert_eq!(m.mask("xabcdefx"), "x***x");
    }
}
