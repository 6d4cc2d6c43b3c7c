//! Secret masking: every registered value is replaced by `***` in all output; and the
//! neutralising of control characters, so that what a job prints can neither hide a secret
//! nor command the terminal of whoever reads its log.
//!
//! Output is masked line by line, after the whole line has arrived, so a secret split across
//! two writes of the process is still caught. Masking is by position: every occurrence of
//! every value is found first (overlapping ones included), and each stretch of text covered
//! by one or more of them becomes one `***`, so two secrets that overlap leave nothing of
//! either. Multi-line secrets are registered line by line, as GitHub does, so each of their
//! lines is masked wherever it appears. A line too long to keep whole is cut only where no
//! secret can straddle the cut ([`LineCutter`]).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock, RwLock};

use aho_corasick::{AhoCorasick, AhoCorasickKind};

/// The set of values to hide. Cheap to clone; clones share the set, so an `::add-mask::` in
/// one step hides the value in every later line of the job.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    inner: Arc<RwLock<Values>>,
}

#[derive(Debug, Default)]
struct Values {
    values: Vec<String>,
    /// Finds every occurrence of every value, overlapping ones too; made when first needed
    /// after a value was added (secrets come several at once before the job, `::add-mask::`
    /// now and then), so a job's secrets make one automaton, not one each. `None` inside:
    /// the values are beyond the automaton's size limits.
    finder: OnceLock<Option<AhoCorasick>>,
    longest: usize,
}

/// With this many values or fewer, each is searched for on its own and no automaton is
/// made: a short job's value or two (its token) would otherwise cost it an automaton (about
/// 140,000 instructions to make, more than such a job's lines take to search).
const FEW: usize = 2;

/// Values shorter than this are not masked: masking `a` or `1` would mangle all output and
/// reveal more than it hides. GitHub skips empty values; we also skip single characters.
const MIN_LEN: usize = 2;

impl Masker {
    pub fn new() -> Self {
        Masker::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Values> {
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a secret value (each of its lines separately).
    pub fn add(&self, value: &str) {
        let mut v = self
            .inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut changed = false;
        for line in value.split('\n') {
            let line = line.trim_end_matches('\r');
            if line.trim().len() >= MIN_LEN && !v.values.iter().any(|x| x == line) {
                v.values.push(line.to_owned());
                changed = true;
            }
        }
        if changed {
            v.longest = v.values.iter().map(String::len).max().unwrap_or(0);
            v.finder = OnceLock::new();
        }
    }

    /// The length in bytes of the longest registered value (0 when there is none).
    pub fn longest(&self) -> usize {
        self.read().longest
    }

    /// The byte ranges of `text` covered by a registered value, merged and in order.
    fn covered(&self, text: &str) -> Vec<(usize, usize)> {
        let v = self.read();
        if v.values.is_empty() {
            return Vec::new();
        }
        if v.values.len() <= FEW {
            return merged(one_by_one(&v.values, text));
        }
        // Building fails only for patterns beyond the automaton's size limits; then nothing
        // would be masked, so the values are searched one by one.
        match v.finder.get_or_init(|| {
            // A contiguous NFA, not the DFA the builder would choose for a few values: as
            // fast on lines (the prefilter finds candidates either way) and made in a third
            // of the time, which a short job pays once.
            AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(&v.values)
                .ok()
        }) {
            Some(ac) => merged(all_found(ac, text)),
            None => merged(one_by_one(&v.values, text)),
        }
    }

    /// Hides every registered value in `text`.
    pub fn mask(&self, text: &str) -> String {
        let covered = self.covered(text);
        if covered.is_empty() {
            return text.to_owned();
        }
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (s, e) in covered {
            out.push_str(&text[at..s]);
            out.push_str("***");
            at = e;
        }
        out.push_str(&text[at..]);
        out
    }

    /// Whether `text` holds a registered value.
    pub fn reveals(&self, text: &str) -> bool {
        !self.covered(text).is_empty()
    }
}

/// Every occurrence of every value in `text`, overlapping ones too (the automaton's
/// standard semantics report them all).
fn all_found(ac: &AhoCorasick, text: &str) -> Vec<(usize, usize)> {
    ac.find_overlapping_iter(text)
        .map(|m| (m.start(), m.end()))
        .collect()
}

/// Every occurrence of every value in `text`, each value searched for on its own.
fn one_by_one(values: &[String], text: &str) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    for value in values {
        let mut from = 0;
        while let Some(i) = text[from..].find(value.as_str()) {
            ranges.push((from + i, from + i + value.len()));
            // The next occurrence may overlap this one.
            from += i + text[from + i..].chars().next().map_or(1, char::len_utf8);
        }
    }
    ranges
}

/// The ranges merged where they overlap or touch, in order.
fn merged(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Cuts a long line into pieces without ever cutting through a secret: a piece is masked
/// and given out only up to a point no secret occurrence can straddle; the rest waits for
/// the next piece of the line (at most the longest secret's length, so the memory held stays
/// bounded however long the line is).
#[derive(Debug, Default)]
pub struct LineCutter {
    carry: String,
}

impl LineCutter {
    /// Takes the next piece of a line (`complete`: the line ends with it) and returns the
    /// masked text that may be shown now, if any.
    pub fn piece(&mut self, masker: &Masker, piece: &str, complete: bool) -> Option<String> {
        let mut text = std::mem::take(&mut self.carry);
        text.push_str(piece);
        if complete {
            return Some(masker.mask(&text));
        }
        let hold = masker.longest().saturating_sub(1);
        let mut cut = text.len().saturating_sub(hold);
        // A secret that starts before the cut is whole in `text` (it ends within `hold`
        // bytes of its start): keep it on the held side.
        for (s, e) in masker.covered(&text) {
            if s < cut && e > cut {
                cut = s;
            }
        }
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        self.carry = text.split_off(cut);
        (!text.is_empty()).then(|| masker.mask(&text))
    }

    /// What is held back at the end of the output (the line ended without a newline).
    pub fn finish(&mut self, masker: &Masker) -> Option<String> {
        let text = std::mem::take(&mut self.carry);
        (!text.is_empty()).then(|| masker.mask(&text))
    }
}

/// Neutralises what a terminal would obey in `text`: control characters (C0, DEL, C1) are
/// shown in caret notation (`^[`, `^G`, `^J`), so an escape sequence that would set a
/// window title, write the clipboard or move the cursor is printed as harmless text, and a
/// carriage return or newline cannot make one log line look like two. Tabs stay, and so do
/// colours: an SGR sequence (`ESC [ digits ; ... m`) is kept as it is.
pub fn neutralise(text: &str) -> Cow<'_, str> {
    let clean = |c: char| c == '\t' || !(c.is_control());
    if text.chars().all(clean) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '\u{1b}'
            && let Some(len) = sgr_len(rest)
        {
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if clean(c) {
            out.push(c);
            continue;
        }
        match u32::from(c) {
            n @ 0..=0x1f => {
                out.push('^');
                out.push(char::from(b'@' + u8::try_from(n).unwrap_or(b'?')));
            }
            0x7f => out.push_str("^?"),
            n => out.push_str(&format!("<U+{n:04X}>")),
        }
    }
    Cow::Owned(out)
}

/// The length of the SGR sequence `text` starts with (`ESC [`, parameters of digits and
/// `;`, then `m`), if it starts with one.
fn sgr_len(text: &str) -> Option<usize> {
    let rest = text.strip_prefix("\u{1b}[")?;
    let params = rest
        .bytes()
        .take(64)
        .take_while(|b| b.is_ascii_digit() || *b == b';')
        .count();
    (rest.as_bytes().get(params) == Some(&b'm')).then_some(2 + params + 1)
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

    #[test]
    fn overlapping_secrets_leave_nothing_of_either() {
        let m = Masker::new();
        m.add("abcdef");
        m.add("defghi");
        assert_eq!(m.mask("<abcdefghi>"), "<***>");
        // Overlapping occurrences of one value.
        let m = Masker::new();
        m.add("aba");
        assert_eq!(m.mask("xababax"), "x***x");
    }

    #[test]
    fn each_value_searched_on_its_own_finds_what_the_automaton_finds() {
        let texts = [
            "",
            "nothing here",
            "xababax abcdefghi <abc> abcabc",
            "aaaa",
            "é-tok-ß tok tok",
            "secret1secret2 secret2secret1",
        ];
        let sets: [&[&str]; 5] = [
            &["aba"],
            &["abc", "abcdef"],
            &["abcdef", "defghi", "aba"],
            &["aa", "aaa", "é-tok"],
            &["secret1", "secret2", "t1se", "tok"],
        ];
        for set in sets {
            let values: Vec<String> = set.iter().map(|v| (*v).to_owned()).collect();
            let ac = AhoCorasick::builder()
                .kind(Some(AhoCorasickKind::ContiguousNFA))
                .build(&values)
                .expect("small patterns build");
            for text in texts {
                assert_eq!(
                    merged(one_by_one(&values, text)),
                    merged(all_found(&ac, text)),
                    "{set:?} in {text:?}"
                );
            }
            // And through the masker, whichever way it searches for this many values.
            let m = Masker::new();
            for v in set {
                m.add(v);
            }
            for text in texts {
                assert_eq!(
                    m.covered(text),
                    merged(all_found(&ac, text)),
                    "{set:?} in {text:?}"
                );
            }
        }
    }

    #[test]
    fn a_cut_line_never_splits_a_secret() {
        let m = Masker::new();
        m.add("s3cr3t-value");
        let mut cut = LineCutter::default();
        let mut shown = String::new();
        // The secret lies across the boundary of two pieces.
        shown.push_str(&cut.piece(&m, &"x".repeat(100), false).unwrap_or_default());
        shown.push_str(&cut.piece(&m, "yyys3cr3t", false).unwrap_or_default());
        shown.push_str(&cut.piece(&m, "-valuezzz", true).unwrap_or_default());
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert_eq!(shown, format!("{}yyy***zzz", "x".repeat(100)));
        // With no secrets nothing is held back.
        let none = Masker::new();
        assert_eq!(cut.piece(&none, "abc", false).as_deref(), Some("abc"));
        assert_eq!(cut.finish(&none), None);
    }

    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(neutralise("plain\ttext"), "plain\ttext");
        assert!(matches!(neutralise("plain"), Cow::Borrowed(_)));
        // Colours stay.
        assert_eq!(
            neutralise("\u{1b}[1;31mred\u{1b}[0m"),
            "\u{1b}[1;31mred\u{1b}[0m"
        );
        // A window title (OSC), the clipboard (OSC 52), a cursor move (CSI H), BEL, CR, LF.
        assert_eq!(
            neutralise("\u{1b}]0;title\u{7}x\u{1b}]52;c;aGk=\u{7}\u{1b}[2Ja\rb\nc"),
            "^[]0;title^Gx^[]52;c;aGk=^G^[[2Ja^Mb^Jc"
        );
        assert_eq!(neutralise("\u{7f}\u{9b}"), "^?<U+009B>");
    }
}
