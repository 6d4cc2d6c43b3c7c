//! JSON as `toJSON()` writes it and `fromJSON()` reads it on GitHub.
//!
//! Writing follows the runner's `ToJson` function: two-space indentation, `": "` after keys,
//! numbers in the same `G15` form as string conversion, and Newtonsoft.Json's string escaping.
//!
//! Reading follows Newtonsoft.Json's `JsonTextReader` as the runner configures it: standard
//! JSON plus the leniencies that reader has (single-quoted strings, unquoted property names,
//! `NaN`/`Infinity`, trailing commas, empty array slots and `undefined` read as empty strings,
//! `0x` hex and leading-zero octal integers, text after the first value ignored), nesting
//! limited to 64, and object keys merged case-insensitively as GitHub's dictionaries do.
//! Comments and JavaScript constructors (`new Date()`) are rejected.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::casefold;
use crate::eval::Val;
use crate::number::{format_number, parse_dotnet_double};
use crate::{Map, Value};

/// The runner's `toJSON()` output for a value.
pub(crate) fn to_pretty(v: &Val<'_>) -> String {
    let mut out = String::new();
    write_val(&mut out, v, 0);
    out
}

pub(crate) fn value_to_pretty(v: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, v, 0);
    out
}

fn indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_val(out: &mut String, v: &Val<'_>, level: usize) {
    match v {
        Val::Ref(v) => write_value(out, v, level),
        Val::Owned(v) => write_value(out, v, level),
        Val::Filtered(items) => write_seq(out, items, level, |out, item, level| {
            write_val(out, item, level)
        }),
    }
}

fn write_seq<T>(
    out: &mut String,
    items: &[T],
    level: usize,
    write: impl Fn(&mut String, &T, usize),
) {
    if items.is_empty() {
        out.push_str("[]");
        return;
    }
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        indent(out, level + 1);
        write(out, item, level + 1);
    }
    indent(out, level);
    out.push(']');
}

fn write_value(out: &mut String, v: &Value, level: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&format_number(*n)),
        Value::String(s) => write_string(out, s),
        Value::Array(items) => write_seq(out, items, level, write_value),
        Value::Object(map) => {
            if map.is_empty() {
                out.push_str("{}");
                return;
            }
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, level + 1);
                write_string(out, k);
                out.push_str(": ");
                write_value(out, v, level + 1);
            }
            indent(out, level);
            out.push('}');
        }
    }
}

/// Newtonsoft.Json's default escaping: quotes, backslash, control characters, and the three
/// characters JavaScript treats as line ends (U+0085, U+2028, U+2029).
pub(crate) fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '\u{85}' | '\u{2028}' | '\u{2029}') => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The most containers Newtonsoft.Json reads nested inside each other.
const MAX_NESTING: usize = 64;

/// Parses `fromJSON()` input; the error is a description of the problem and where it is.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    let mut reader = Reader {
        src: text,
        pos: 0,
        depth: 0,
    };
    reader.skip_ws();
    match reader.peek() {
        None => Err(reader.error("Error reading JToken from JsonReader.")),
        // An empty value (`,`) is Newtonsoft's `undefined`, which becomes an empty string.
        Some(',') => Ok(Value::String(String::new())),
        Some(']') => {
            Err(reader.error("Error reading JToken from JsonReader. Unexpected token: EndArray."))
        }
        Some(_) => reader.value(),
    }
}

struct Reader<'s> {
    src: &'s str,
    pos: usize,
    depth: usize,
}

fn is_ws(c: char) -> bool {
    c.is_whitespace() || c == '\0'
}

fn ends_value(c: Option<char>) -> bool {
    c.is_none_or(|c| is_ws(c) || matches!(c, ',' | ']' | '}'))
}

impl Reader<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(is_ws) {
            self.bump();
        }
    }

    fn error(&self, message: &str) -> String {
        let before = &self.src[..self.pos];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
        format!("{message} Line {line}, position {column}.")
    }

    fn unexpected(&self, what: &str) -> String {
        match self.peek() {
            Some(c) => self.error(&format!(
                "Unexpected character encountered while parsing {what}: {c}."
            )),
            None => self.error(&format!("Unexpected end while parsing {what}.")),
        }
    }

    fn value(&mut self) -> Result<Value, String> {
        self.skip_ws();
        let Some(c) = self.peek() else {
            return Err(self.error("Unexpected end when reading JSON."));
        };
        match c {
            '{' => self.object(),
            '[' => self.array(),
            '"' | '\'' => self.string(c).map(Value::String),
            't' => self.keyword("true", Value::Bool(true)),
            'f' => self.keyword("false", Value::Bool(false)),
            'n' => self.keyword("null", Value::Null),
            'u' => self.keyword("undefined", Value::String(String::new())),
            'N' => self.keyword("NaN", Value::Number(f64::NAN)),
            'I' => self.keyword("Infinity", Value::Number(f64::INFINITY)),
            '-' if self.src[self.pos..].starts_with("-I") => {
                self.keyword("-Infinity", Value::Number(f64::NEG_INFINITY))
            }
            '/' => Err(self.error("Comments are not supported in fromJSON input.")),
            c if c == '-' || c == '.' || c.is_ascii_digit() => self.number(),
            _ => Err(self.unexpected("value")),
        }
    }

    fn keyword(&mut self, word: &str, value: Value) -> Result<Value, String> {
        if self.src[self.pos..].starts_with(word) {
            self.pos += word.len();
            if ends_value(self.peek()) {
                return Ok(value);
            }
        }
        Err(self.unexpected("value"))
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_hexdigit() || matches!(c, '-' | '+' | '.' | 'x' | 'X'))
        {
            self.bump();
        }
        if !(ends_value(self.peek()) || self.peek() == Some(')')) {
            return Err(self.unexpected("number"));
        }
        let text = &self.src[start..self.pos];
        let invalid = || self.error(&format!("Input string '{text}' is not a valid number."));
        let b = text.as_bytes();
        // A leading zero followed by more digits is hex (`0x1F`) or octal (`017`).
        if b.len() > 1 && b[0] == b'0' && !matches!(b[1], b'.' | b'e' | b'E') {
            let (digits, radix) = match text.get(..2) {
                Some("0x" | "0X") => (&text[2..], 16),
                _ => (text, 8),
            };
            return u64::from_str_radix(digits, radix)
                .map(|n| Value::Number(i64::from_ne_bytes(n.to_ne_bytes()) as f64))
                .map_err(|_| invalid());
        }
        if text.contains(['.', 'e', 'E']) {
            return match parse_dotnet_double(text) {
                Some(n)
                    if !n.is_nan()
                        && text
                            .bytes()
                            .all(|c| c.is_ascii_digit() || b".eE+-".contains(&c)) =>
                {
                    Ok(Value::Number(n))
                }
                _ => Err(invalid()),
            };
        }
        let digits = text.strip_prefix('-').unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return Err(invalid());
        }
        // Integers are read as integers, so `-0` is plain zero.
        let n: f64 = digits.parse().map_err(|_| invalid())?;
        Ok(Value::Number(if text.starts_with('-') && n != 0.0 {
            -n
        } else {
            n
        }))
    }

    fn string(&mut self, quote: char) -> Result<String, String> {
        self.bump();
        let mut out = String::new();
        let mut pending_high: Option<u32> = None;
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error(&format!(
                    "Unterminated string. Expected delimiter: {quote}."
                )));
            };
            if c != '\\' {
                if pending_high.take().is_some() {
                    out.push('\u{FFFD}');
                }
                if c == quote {
                    return Ok(out);
                }
                out.push(c);
                continue;
            }
            let Some(e) = self.bump() else {
                return Err(self.error("Unterminated string."));
            };
            let simple = match e {
                'b' => Some('\u{8}'),
                't' => Some('\t'),
                'n' => Some('\n'),
                'f' => Some('\u{c}'),
                'r' => Some('\r'),
                '\\' | '"' | '\'' | '/' => Some(e),
                'u' => None,
                _ => return Err(self.error(&format!("Bad JSON escape sequence: \\{e}."))),
            };
            if let Some(s) = simple {
                if pending_high.take().is_some() {
                    out.push('\u{FFFD}');
                }
                out.push(s);
                continue;
            }
            let hex = self
                .src
                .get(self.pos..self.pos + 4)
                .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            let Some(unit) = hex.and_then(|h| u32::from_str_radix(h, 16).ok()) else {
                return Err(self.error("Invalid Unicode escape sequence."));
            };
            self.pos += 4;
            match (pending_high.take(), unit) {
                (Some(high), 0xDC00..=0xDFFF) => {
                    let c = 0x10000 + ((high - 0xD800) << 10) + (unit - 0xDC00);
                    out.push(char::from_u32(c).unwrap_or('\u{FFFD}'));
                }
                (high, 0xD800..=0xDBFF) => {
                    if high.is_some() {
                        out.push('\u{FFFD}');
                    }
                    pending_high = Some(unit);
                }
                (high, unit) => {
                    if high.is_some() {
                        out.push('\u{FFFD}');
                    }
                    out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                }
            }
        }
    }

    fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.error(&format!(
                "The reader's MaxDepth of {MAX_NESTING} has been exceeded."
            )));
        }
        self.bump();
        Ok(())
    }

    fn array(&mut self) -> Result<Value, String> {
        self.enter()?;
        let mut items = Vec::new();
        loop {
            // Expecting a value.
            self.skip_ws();
            match self.peek() {
                Some(']') => break,
                Some(',') => {
                    items.push(Value::String(String::new()));
                    self.bump();
                    continue;
                }
                None => return Err(self.error("Unexpected end when reading JSON.")),
                Some(_) => items.push(self.value()?),
            }
            // After a value.
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => break,
                None => return Err(self.error("Unexpected end when reading JSON.")),
                Some(c) => {
                    return Err(self.error(&format!(
                        "After parsing a value an unexpected character was encountered: {c}."
                    )));
                }
            }
        }
        self.bump();
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, String> {
        self.enter()?;
        // Exact duplicates replace in place first (Newtonsoft's JObject), then keys that differ
        // only in case merge, keeping the first spelling (GitHub's dictionary).
        let mut exact = Map::new();
        loop {
            self.skip_ws();
            let name = match self.peek() {
                Some('}') => break,
                None => return Err(self.error("Unexpected end when reading JSON.")),
                Some(q @ ('"' | '\'')) => self.string(q)?,
                Some(c) if c.is_alphanumeric() || c == '_' || c == '$' => {
                    let start = self.pos;
                    while self
                        .peek()
                        .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$')
                    {
                        self.bump();
                    }
                    if !self.peek().is_some_and(|c| is_ws(c) || c == ':') {
                        return Err(self.unexpected("property name"));
                    }
                    self.src[start..self.pos].to_owned()
                }
                Some(c) => {
                    return Err(self.error(&format!("Invalid property identifier character: {c}.")));
                }
            };
            self.skip_ws();
            if self.peek() != Some(':') {
                let got = self.peek().map_or_else(String::new, String::from);
                return Err(self.error(&format!(
                    "Invalid character after parsing property name. Expected ':' but got: {got}."
                )));
            }
            self.bump();
            self.skip_ws();
            let value = if self.peek() == Some(',') {
                Value::String(String::new())
            } else {
                self.value()?
            };
            exact.insert(name, value);
            self.skip_ws();
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => break,
                None => return Err(self.error("Unexpected end when reading JSON.")),
                Some(c) => {
                    return Err(self.error(&format!(
                        "After parsing a value an unexpected character was encountered: {c}."
                    )));
                }
            }
        }
        self.bump();
        self.depth -= 1;
        let mut merged = Map::new();
        let mut positions: HashMap<String, usize> = HashMap::new();
        for (k, v) in exact {
            let folded = casefold::fold_str(&k);
            match positions.get(&folded) {
                Some(&i) => {
                    if let Some((_, slot)) = merged.get_index_mut(i) {
                        *slot = v;
                    }
                }
                None => {
                    positions.insert(folded, merged.len());
                    merged.insert(k, v);
                }
            }
        }
        Ok(Value::Object(merged))
    }
}
