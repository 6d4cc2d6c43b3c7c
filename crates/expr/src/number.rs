//! Number conversions as the GitHub runner performs them.
//!
//! The runner is a .NET program: strings become numbers through `Double.TryParse` with a few
//! extra forms (hex `0x`, octal `0o`), and numbers become strings through `ToString("G15")`.
//! Both are reproduced here because they decide what `==` means between a string and a number
//! and what text a number turns into in a template.

use crate::casefold;

/// Converts a string to a number like the runner's `ExpressionUtility.ParseNumber`: trimmed,
/// empty is 0, decimal with optional sign/fraction/exponent, `0x` hex and `0o` octal as 32-bit
/// two's-complement integers, `Infinity`/`-Infinity`; anything else is NaN.
pub(crate) fn parse_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    if let Some(v) = parse_dotnet_double(t) {
        return v;
    }
    if let Some(hex) = t.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_radix_i32(hex, 16).map_or(f64::NAN, f64::from);
        }
        return f64::NAN;
    }
    if let Some(oct) = t.strip_prefix("0o") {
        if !oct.is_empty() && oct.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
            return parse_radix_i32(oct, 8).map_or(f64::NAN, f64::from);
        }
        return f64::NAN;
    }
    f64::NAN
}

/// `Int32.TryParse(.., AllowHexSpecifier)` and `Convert.ToInt32(.., 8)` both read the digits as
/// an unsigned 32-bit pattern and reinterpret it, so `0xffffffff` is -1; wider values fail.
fn parse_radix_i32(digits: &str, radix: u32) -> Option<i32> {
    let mut acc: u32 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        acc = acc.checked_mul(radix)?.checked_add(d)?;
    }
    // Reinterpreting the bit pattern is the point: .NET returns the two's-complement value.
    Some(i32::from_ne_bytes(acc.to_ne_bytes()))
}

/// `Double.TryParse(s, AllowLeadingSign | AllowDecimalPoint | AllowExponent, Invariant)` as in
/// .NET Core 3.0 and later (the runner's runtime): IEEE-correct rounding, overflow to
/// infinity, `-0` kept, trailing NUL characters tolerated, and the fallback that accepts
/// `Infinity`, `-Infinity` and `NaN` (ignoring case, with an optional sign).
pub(crate) fn parse_dotnet_double(s: &str) -> Option<f64> {
    let core = s.trim_end_matches('\0');
    if is_dotnet_decimal(core) {
        // The grammar checked above is a subset of what Rust's parser accepts.
        if let Ok(v) = core.parse::<f64>() {
            return Some(v);
        }
    }
    let eq = |a: &str, b: &str| casefold::eq_ignore_case(a, b);
    if eq(s, "Infinity") || eq(s, "+Infinity") {
        return Some(f64::INFINITY);
    }
    if eq(s, "-Infinity") {
        return Some(f64::NEG_INFINITY);
    }
    if eq(s, "NaN") || eq(s, "+NaN") || eq(s, "-NaN") {
        return Some(f64::NAN);
    }
    None
}

/// `[+-]? (digits ('.' digits*)? | '.' digits) ([eE] [+-]? digits)?`, ASCII digits only.
fn is_dotnet_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        digits += i - frac_start;
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// Formats a number like .NET's `double.ToString("G15", InvariantCulture)`: at most 15
/// significant digits (ties to even, as .NET's Dragon4 does), no trailing zeros, scientific
/// notation `1E+15` / `1E-05` when the exponent is at least 15 or below -4, `-0` for negative
/// zero, and `NaN`, `Infinity`, `-Infinity`.
pub(crate) fn format_number(x: f64) -> String {
    if x.is_nan() {
        return "NaN".to_owned();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    let sign = if x.is_sign_negative() { "-" } else { "" };
    if x == 0.0 {
        return format!("{sign}0");
    }
    // Rust's exact formatting gives the correctly rounded 15 significant digits.
    let sci = format!("{:.14e}", x.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let all: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let digits = all.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };

    if !(-4..15).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{dot}E{exp_sign}{:02}", exp.unsigned_abs());
    }
    if exp < 0 {
        let zeros = "0".repeat(exp.unsigned_abs() as usize - 1);
        return format!("{sign}0.{zeros}{digits}");
    }
    let int_len = exp as usize + 1;
    if digits.len() <= int_len {
        let zeros = "0".repeat(int_len - digits.len());
        format!("{sign}{digits}{zeros}")
    } else {
        let (int, frac) = digits.split_at(int_len);
        format!("{sign}{int}.{frac}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_g15() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.3"),
            (1e15, "1E+15"),
            (999_999_999_999_999.0, "999999999999999"),
            (123_456_789_012_345_678.0, "1.23456789012346E+17"),
            (0.0001, "0.0001"),
            (0.00001, "1E-05"),
            (1.5e-7, "1.5E-07"),
            (1e21, "1E+21"),
            (1e100, "1E+100"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (2147483647.0, "2147483647"),
            (1.0 / 3.0, "0.333333333333333"),
        ];
        for (x, want) in cases {
            assert_eq!(format_number(*x), *want, "{x}");
        }
    }

    #[test]
    fn parses_like_the_runner() {
        assert_eq!(parse_number(""), 0.0);
        assert_eq!(parse_number("  12 "), 12.0);
        assert_eq!(parse_number("0xff"), 255.0);
        assert_eq!(parse_number("0xffffffff"), -1.0);
        assert!(parse_number("0x100000000").is_nan());
        assert!(parse_number("0XFF").is_nan());
        assert_eq!(parse_number("0o17"), 15.0);
        assert_eq!(parse_number("1e3"), 1000.0);
        assert_eq!(parse_number(".5"), 0.5);
        assert_eq!(parse_number("1."), 1.0);
        assert_eq!(parse_number("-infinity"), f64::NEG_INFINITY);
        assert!(parse_number("1e").is_nan());
        assert!(parse_number("abc").is_nan());
        assert!(parse_number("1,000").is_nan());
        assert_eq!(parse_number("1\0"), 1.0);
    }
}
