//! The one duration grammar of pipewright's own configuration: `.pipewright/deploy.yml`
//! (`hooks.timeout`, `health.interval`, ...), the server's TOML (`poll_interval`,
//! `gc_interval`, `idle_timeout`, `registration_token_ttl`) and `--lock-wait`. Each caller
//! adds its own bounds (the server's intervals are at least a second) and names its key in
//! its error.
//!
//! Hand-written rather than `humantime`: that crate reads more than pipewright ever
//! documented (days, months, years, spaces between terms), and not the decimal fractions
//! (`1.5s`) deploy.yml has always taken.

use std::time::Duration;

/// Parses a duration: one or more terms, each a number and a unit, with nothing between
/// them; blanks around the whole are ignored.
///
/// ```text
/// duration = term { term }
/// term     = number unit
/// number   = digits [ "." [ digits ] ] | "." digits      (a decimal fraction)
/// unit     = "ms" | "s" | "m" | "h"
/// ```
///
/// So `500ms`, `2s`, `1.5s`, `3m`, `1h`, `1m30s` and `1h0.5m` are durations; `2` (no
/// unit), `5 m` (a blank inside), `1d` (no such unit), `-1s` and anything over `u64::MAX`
/// seconds are not. Terms add up, in any order. Fractions are exact to the nanosecond.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let nanos_per_unit: u128 = match unit {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        total = total.checked_add(term_nanos(number, nanos_per_unit)?)?;
        rest = after;
    }
    let secs = u64::try_from(total / 1_000_000_000).ok()?;
    let nanos = u32::try_from(total % 1_000_000_000).ok()?;
    Some(Duration::new(secs, nanos))
}

/// `number` (digits with at most one `.`, at least one digit) times `unit` nanoseconds.
fn term_nanos(number: &str, unit: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    // Digits past the 20th are below a nanosecond even for hours: ignored, which keeps the
    // arithmetic within u128.
    let fraction = &fraction[..fraction.len().min(20)];
    let fraction_nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().ok()?;
        let u32_len = u32::try_from(fraction.len()).ok()?;
        digits * unit / 10u128.pow(u32_len)
    };
    whole.checked_mul(unit)?.checked_add(fraction_nanos)
}

/// A duration as [`parse_duration`] reads it, in one unit: `20m`, `90s`, `1500ms`
/// (sub-millisecond parts are dropped).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn durations() {
        for (text, expected) in [
            ("500ms", ms(500)),
            ("2s", ms(2000)),
            ("1.5s", ms(1500)),
            ("3m", ms(180_000)),
            ("1h", ms(3_600_000)),
            ("1m30s", ms(90_000)),
            ("30s1m", ms(90_000)),
            ("1h0.5m", ms(3_630_000)),
            ("1.5m", ms(90_000)),
            ("0s", ms(0)),
            (" 2m ", ms(120_000)),
            (".5s", ms(500)),
            ("1.s", ms(1000)),
            ("0.001s", ms(1)),
            ("1.0000000005s", Some(Duration::new(1, 0))),
            ("2", None),
            ("30", None),
            ("s", None),
            ("", None),
            ("  ", None),
            (".s", None),
            ("1.2.3s", None),
            ("1x", None),
            ("10d", None),
            ("5 m", None),
            ("1m 30s", None),
            ("-1s", None),
            ("1e3s", None),
            ("1s2", None),
            ("99999999999999999999s", None),
            ("9999999999999999h", None),
        ] {
            assert_eq!(parse_duration(text), expected, "`{text}`");
        }
    }

    #[test]
    fn formatted_durations_read_back() {
        for d in [
            Duration::from_secs(30 * 60),
            Duration::from_secs(90),
            Duration::from_millis(1500),
        ] {
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
        assert_eq!(format_duration(Duration::from_secs(90)), "90s");
        assert_eq!(format_duration(Duration::from_secs(1800)), "30m");
    }
}
