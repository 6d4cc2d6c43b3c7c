//! Case-insensitive string operations with .NET `StringComparison.OrdinalIgnoreCase` semantics:
//! each character is compared by its simple (one-to-one) uppercase mapping, and ordering is by
//! UTF-16 code units, because that is how the runner compares strings.

use std::cmp::Ordering;

fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_uppercase();
    }
    // .NET uses the simple case mapping only; a mapping to several characters (`ß` -> `SS`)
    // leaves the character unchanged.
    // Nor does it map a non-ASCII character to ASCII (`ı` U+0131 and `ſ` U+017F stay).
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(u), None) if !u.is_ascii() => u,
        _ => c,
    }
}

/// The string with every character replaced by its simple uppercase mapping: equal for
/// strings that are equal ignoring case.
pub(crate) fn fold_str(s: &str) -> String {
    s.chars().map(fold).collect()
}

pub(crate) fn eq_ignore_case(a: &str, b: &str) -> bool {
    (a.len() == b.len() && a.eq_ignore_ascii_case(b)) || a.chars().map(fold).eq(b.chars().map(fold))
}

fn utf16_units(s: &str) -> impl Iterator<Item = u16> + '_ {
    s.chars().map(fold).flat_map(|c| {
        let mut buf = [0u16; 2];
        let n = c.encode_utf16(&mut buf).len();
        buf.into_iter().take(n)
    })
}

pub(crate) fn cmp_ignore_case(a: &str, b: &str) -> Ordering {
    utf16_units(a).cmp(utf16_units(b))
}

pub(crate) fn contains_ignore_case(haystack: &str, needle: &str) -> bool {
    fold_str(haystack).contains(&fold_str(needle))
}

pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    fold_str(s).starts_with(&fold_str(prefix))
}

pub(crate) fn ends_with_ignore_case(s: &str, suffix: &str) -> bool {
    fold_str(s).ends_with(&fold_str(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinal_ignore_case() {
        assert!(eq_ignore_case("Hello", "hELLO"));
        assert!(eq_ignore_case("ärger", "ÄRGER"));
        assert!(!eq_ignore_case("straße", "STRASSE"));
        assert_eq!(cmp_ignore_case("a", "B"), Ordering::Less);
        assert_eq!(cmp_ignore_case("abc", "ABC"), Ordering::Equal);
        assert_eq!(cmp_ignore_case("ab", "abc"), Ordering::Less);
        // `_` (0x5F) sorts after the uppercase letters it is compared with.
        assert_eq!(cmp_ignore_case("_", "a"), Ordering::Greater);
        assert!(contains_ignore_case("Hello World", "LO w"));
        assert!(starts_with_ignore_case("refs/heads/Main", "REFS/"));
        assert!(ends_with_ignore_case("file.TXT", ".txt"));
    }
}
