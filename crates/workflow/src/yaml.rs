//! YAML as GitHub reads it, into a tree of nodes that keep their source positions.
//!
//! Scalars keep their text and style; typing (null, booleans, numbers) follows the YAML 1.2
//! core schema, which is what GitHub uses: `on`, `yes`, `no`, `y`, `n` are strings.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::diag::Diagnostic;

/// A position in the source: 1-based line and column (in characters), and byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
    pub offset: usize,
}

/// A range of the source. `end` is exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    /// Length in bytes (at least 1, so that a caret is always drawn).
    pub fn len(&self) -> usize {
        self.end.offset.saturating_sub(self.start.offset).max(1)
    }

    /// Always false: a span covers at least one byte for display purposes.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// How a scalar was written; only plain scalars are typed (null, bool, number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Quoted,
    Block,
}

/// A node of the YAML tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Scalar(String, Style),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// The YAML 1.2 core-schema type of a scalar, as GitHub sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(f64),
    String(&'a str),
}

impl Node {
    /// The scalar's text, whatever its type.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar(s, _) => Some(s),
            _ => None,
        }
    }

    /// The scalar typed by the core schema.
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.kind {
            NodeKind::Scalar(s, Style::Plain) => Some(type_plain(s)),
            NodeKind::Scalar(s, _) => Some(Scalar::String(s)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.scalar(), Some(Scalar::Null))
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// A mapping's value by key (exact, as GitHub's keys are case-sensitive).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// What kind of node this is, for error messages.
    pub fn describe(&self) -> &'static str {
        match &self.kind {
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
            NodeKind::Scalar(..) => match self.scalar() {
                Some(Scalar::Null) => "null",
                Some(Scalar::Bool(_)) => "a boolean",
                Some(Scalar::Number(_)) => "a number",
                _ => "a string",
            },
        }
    }

    /// The node as an expression-language value (no expression evaluation).
    pub fn to_value(&self) -> expr::Value {
        match &self.kind {
            NodeKind::Scalar(..) => match self.scalar() {
                Some(Scalar::Null) | None => expr::Value::Null,
                Some(Scalar::Bool(b)) => expr::Value::Bool(b),
                Some(Scalar::Number(n)) => expr::Value::Number(n),
                Some(Scalar::String(s)) => expr::Value::String(s.to_owned()),
            },
            NodeKind::Seq(items) => expr::Value::Array(items.iter().map(Node::to_value).collect()),
            NodeKind::Map(entries) => expr::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), v.to_value()))
                    .collect(),
            ),
        }
    }
}

/// Types a plain scalar by the YAML 1.2 core schema.
pub fn type_plain(s: &str) -> Scalar<'_> {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Number(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Number(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Scalar::Number(f64::NAN),
        _ => {}
    }
    if let Some(hex) = s.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return match u64::from_str_radix(hex, 16) {
            Ok(n) => Scalar::Number(n as f64),
            Err(_) => Scalar::String(s),
        };
    }
    if let Some(oct) = s.strip_prefix("0o")
        && !oct.is_empty()
        && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return match u64::from_str_radix(oct, 8) {
            Ok(n) => Scalar::Number(n as f64),
            Err(_) => Scalar::String(s),
        };
    }
    if is_core_number(s)
        && let Ok(n) = s.parse::<f64>()
    {
        return Scalar::Number(n);
    }
    Scalar::String(s)
}

/// `[-+]?[0-9]+` or `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_core_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - f;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let e = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == e {
            return false;
        }
    }
    i == b.len()
}

/// Maps the parser's character positions to byte offsets.
struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
    /// Per line, how many of its first bytes are ASCII: a column within them is its byte
    /// offset in the line, found without walking the line's characters (a long line of many
    /// nodes, such as a matrix's list, would be walked once per node).
    ascii: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(src: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        let ascii = starts
            .iter()
            .map(|&s| {
                let line = src.as_bytes()[s..]
                    .split(|&b| b == b'\n')
                    .next()
                    .unwrap_or(&[]);
                line.iter()
                    .position(|b| !b.is_ascii())
                    .unwrap_or(line.len())
            })
            .collect();
        LineIndex { src, starts, ascii }
    }

    fn pos(&self, m: &saphyr_parser::Marker) -> Pos {
        let line = m.line().max(1);
        let start = self.starts.get(line - 1).copied().unwrap_or(self.src.len());
        let rest = &self.src[start..];
        let byte_col = match self.ascii.get(line - 1) {
            Some(&ascii) if m.col() <= ascii => m.col(),
            _ => rest
                .char_indices()
                .nth(m.col())
                .map_or(rest.len(), |(i, _)| i),
        };
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
            offset: start + byte_col,
        }
    }

    /// The position of a byte offset.
    fn pos_of_offset(&self, offset: usize) -> Pos {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let col = self.src[start..offset].chars().count() + 1;
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            offset,
        }
    }
}

/// Computes the position of a byte offset in `src`.
pub fn pos_of_offset(src: &str, offset: usize) -> Pos {
    LineIndex::new(src).pos_of_offset(offset)
}

enum Frame {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

/// Nesting deeper than this is refused: no workflow needs it, and it bounds recursion later.
const MAX_DEPTH: usize = 256;

/// Parses one YAML document into a node tree. An empty document is an empty mapping.
pub fn load(src: &str) -> Result<Node, Diagnostic> {
    let index = LineIndex::new(src);
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    let scan_err = |e: ScanError| {
        let pos = index.pos(e.marker());
        Diagnostic::error(
            format!("invalid YAML: {}", e.info()),
            Span {
                start: pos,
                end: pos,
            },
        )
    };
    while let Some(ev) = parser.next_event() {
        let (ev, span) = ev.map_err(scan_err)?;
        let start = index.pos(&span.start);
        let end = index.pos(&span.end);
        let (node, anchor) = match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Diagnostic::error(
                        "a workflow file must hold one YAML document, this is a second one",
                        Span { start, end },
                    ));
                }
                continue;
            }
            Event::SequenceStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::error(
                        "YAML nested too deeply",
                        Span { start, end },
                    ));
                }
                stack.push(Frame::Seq(Vec::new(), start, anchor));
                continue;
            }
            Event::MappingStart(anchor, _) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Diagnostic::error(
                        "YAML nested too deeply",
                        Span { start, end },
                    ));
                }
                stack.push(Frame::Map(Vec::new(), None, start, anchor));
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, s, anchor)) => (
                    Node {
                        kind: NodeKind::Seq(items),
                        span: Span { start: s, end },
                    },
                    anchor,
                ),
                _ => {
                    return Err(Diagnostic::error(
                        "invalid YAML: unbalanced sequence",
                        Span { start, end },
                    ));
                }
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, _, s, anchor)) => (
                    Node {
                        kind: NodeKind::Map(entries),
                        span: Span { start: s, end },
                    },
                    anchor,
                ),
                _ => {
                    return Err(Diagnostic::error(
                        "invalid YAML: unbalanced mapping",
                        Span { start, end },
                    ));
                }
            },
            Event::Scalar(text, style, anchor, _tag) => {
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                (
                    Node {
                        kind: NodeKind::Scalar(text.into_owned(), style),
                        span: Span { start, end },
                    },
                    anchor,
                )
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(n) => {
                    let mut n = n.clone();
                    n.span = Span { start, end };
                    (n, 0)
                }
                None => {
                    return Err(Diagnostic::error(
                        "invalid YAML: alias to an unknown anchor",
                        Span { start, end },
                    ));
                }
            },
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending, ..)) => match pending.take() {
                None => {
                    if !matches!(node.kind, NodeKind::Scalar(..)) {
                        return Err(Diagnostic::error("mapping keys must be strings", node.span));
                    }
                    if let Some((first, _)) =
                        entries.iter().find(|(k, _)| k.as_str() == node.as_str())
                    {
                        let line = first.span.start.line;
                        return Err(Diagnostic::error(
                            format!(
                                "duplicate key `{}` (first defined on line {line})",
                                node.as_str().unwrap_or_default()
                            ),
                            node.span,
                        ));
                    }
                    *pending = Some(node);
                }
                Some(key) => entries.push((key, node)),
            },
        }
    }
    Ok(root.unwrap_or_else(|| {
        let p = index.pos_of_offset(0);
        Node {
            kind: NodeKind::Map(Vec::new()),
            span: Span { start: p, end: p },
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_reads_on_yes_no_as_strings() {
        let n = load("on: push\nyes: no\nx: true\ny: 3.10\n").unwrap();
        let m = n.as_map().unwrap();
        assert_eq!(m[0].0.scalar(), Some(Scalar::String("on")));
        assert_eq!(m[1].1.scalar(), Some(Scalar::String("no")));
        assert_eq!(m[2].1.scalar(), Some(Scalar::Bool(true)));
        assert_eq!(m[3].1.scalar(), Some(Scalar::Number(3.1)));
    }

    #[test]
    fn positions_are_one_based_with_byte_offsets() {
        let src = "a: 1\nbé: x\n";
        let n = load(src).unwrap();
        let (k, v) = &n.as_map().unwrap()[1];
        assert_eq!((k.span.start.line, k.span.start.col), (2, 1));
        assert_eq!((v.span.start.line, v.span.start.col), (2, 5));
        assert_eq!(&src[v.span.start.offset..v.span.end.offset], "x");
    }

    #[test]
    fn positions_on_a_long_line_and_after_a_wide_character_are_the_nodes_own() {
        // A long flow list (one line, many nodes), then a line with a character of more
        // than one byte before its nodes and after them.
        let items: Vec<String> = (0..300).map(|i| format!("v{i}")).collect();
        let src = format!("a: [{}]\nbé: [x, y]\nc: [z] # é\n", items.join(", "));
        let n = load(&src).unwrap();
        let m = n.as_map().unwrap();
        for (i, item) in m[0].1.as_seq().unwrap().iter().enumerate() {
            assert_eq!(
                &src[item.span.start.offset..item.span.end.offset],
                format!("v{i}")
            );
            assert_eq!(item.span.start.line, 1);
            let col = usize::try_from(item.span.start.col).unwrap();
            assert_eq!(col - 1, item.span.start.offset);
        }
        let line2 = src.find("bé").unwrap();
        let ys = m[1].1.as_seq().unwrap();
        assert_eq!(&src[ys[1].span.start.offset..ys[1].span.end.offset], "y");
        // Columns count characters: `bé: [x, ` is 8 of them, 9 bytes.
        assert_eq!((ys[1].span.start.line, ys[1].span.start.col), (2, 9));
        assert_eq!(ys[1].span.start.offset, line2 + 9);
        let z = &m[2].1.as_seq().unwrap()[0];
        assert_eq!(&src[z.span.start.offset..z.span.end.offset], "z");
        assert_eq!((z.span.start.line, z.span.start.col), (3, 5));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = load("a: 1\na: 2\n").unwrap_err();
        assert!(e.message.contains("duplicate key `a`"), "{}", e.message);
        assert_eq!(e.span.start.line, 2);
    }

    #[test]
    fn aliases_resolve() {
        let n = load("a: &x [1, 2]\nb: *x\n").unwrap();
        assert_eq!(n.get("b").unwrap().as_seq().unwrap().len(), 2);
    }
}
