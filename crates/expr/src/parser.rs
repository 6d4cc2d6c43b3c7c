//! Operator-precedence parser, modelled on the runner's `ExpressionParser`.
//!
//! It uses explicit operator and operand stacks rather than recursion, so no input (say ten
//! thousand `(`) can exhaust the call stack; the tree it builds is at most 50 levels deep,
//! GitHub's limit, which bounds every later recursive walk.

use crate::Value;
use crate::ast::{CmpOp, Func, Node, NodeKind};
use crate::error::ParseError;
use crate::lexer::{Kind, Lexer, Op, TokValue, Token};

/// The runner's limits (`ExpressionConstants`).
pub(crate) const MAX_DEPTH: u32 = 50;
pub(crate) const MAX_LENGTH: usize = 21_000;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub(crate) source: String,
    pub(crate) root: Node,
    /// Where `source` starts in the string it was cut from (a template or condition), so that
    /// [`crate::check`] can report positions in that string.
    pub(crate) base: usize,
}

/// Parses the text of an expression (what is inside `${{ }}`, without the braces).
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    parse_at(src, 0)
}

pub(crate) fn parse_at(src: &str, base: usize) -> Result<Expr, ParseError> {
    match Parser::new(src).run() {
        Ok(root) => Ok(Expr {
            source: src.to_owned(),
            root,
            base,
        }),
        Err(e) => Err(e.shifted(base)),
    }
}

/// "Located at position N" in the runner counts characters from 1.
pub(crate) fn located(description: &str, src: &str, start: usize, end: usize) -> ParseError {
    let position = src[..start].chars().count() + 1;
    let raw = &src[start..end];
    ParseError::new(
        format!("{description}: '{raw}'. Located at position {position} within expression: {src}"),
        start,
        end - start,
    )
}

struct Parser<'s> {
    src: &'s str,
    lexer: Lexer<'s>,
    operands: Vec<Node>,
    operators: Vec<Token>,
    last: Option<Token>,
    too_deep: bool,
}

impl<'s> Parser<'s> {
    fn new(src: &'s str) -> Self {
        Parser {
            src,
            lexer: Lexer::new(src),
            operands: Vec::new(),
            operators: Vec::new(),
            last: None,
            too_deep: false,
        }
    }

    fn run(mut self) -> Result<Node, ParseError> {
        if self.src.encode_utf16().count() > MAX_LENGTH {
            return Err(ParseError::new(
                format!("Exceeded max expression length {MAX_LENGTH}"),
                0,
                self.src.len(),
            ));
        }
        while let Some(token) = self.lexer.next_token() {
            if token.kind == Kind::Unexpected {
                return Err(located(
                    "Unexpected symbol",
                    self.src,
                    token.start,
                    token.end,
                ));
            }
            if token.kind.is_operator() {
                self.push_operator(token.clone())?;
            } else {
                self.push_operand(&token)?;
            }
            self.last = Some(token);
        }
        let Some(last) = self.last.clone() else {
            return Err(ParseError::new(
                "An expression was expected",
                0,
                self.src.len(),
            ));
        };
        if !self.operators.is_empty() {
            let unexpected_last = match last.kind {
                Kind::EndGroup | Kind::EndIndex | Kind::EndParams => false,
                Kind::Function => true,
                kind => kind.is_operator(),
            };
            if unexpected_last || self.lexer.has_unclosed() {
                return Err(self.unexpected_end(&last));
            }
        }
        while !self.operators.is_empty() {
            self.flush_top()?;
        }
        if self.operands.len() != 1 {
            return Err(self.unexpected_end(&last));
        }
        if self.too_deep {
            return Err(ParseError::new(
                format!("Exceeded max expression depth {MAX_DEPTH}"),
                0,
                self.src.len(),
            ));
        }
        self.operands
            .pop()
            .ok_or_else(|| self.unexpected_end(&last))
    }

    fn unexpected_end(&self, last: &Token) -> ParseError {
        located(
            "Unexpected end of expression",
            self.src,
            last.start,
            last.end,
        )
    }

    fn push_operand(&mut self, token: &Token) -> Result<(), ParseError> {
        let raw = &self.src[token.start..token.end];
        let kind = match (&token.kind, &token.value) {
            (Kind::Function, _) => match Func::lookup(raw) {
                Some(f) => NodeKind::Call(f, Vec::new()),
                None => {
                    return Err(located(
                        "Unrecognized function",
                        self.src,
                        token.start,
                        token.end,
                    ));
                }
            },
            (Kind::NamedValue, _) => NodeKind::Context(raw.to_ascii_lowercase()),
            (Kind::PropertyName, _) => NodeKind::Property(raw.to_owned()),
            (Kind::Wildcard, _) => NodeKind::Wildcard,
            (Kind::Null, _) => NodeKind::Literal(Value::Null),
            (_, TokValue::Bool(b)) => NodeKind::Literal(Value::Bool(*b)),
            (_, TokValue::Number(n)) => NodeKind::Literal(Value::Number(*n)),
            (_, TokValue::Str(s)) => NodeKind::Literal(Value::String(s.clone())),
            _ => {
                return Err(located(
                    "Unexpected symbol",
                    self.src,
                    token.start,
                    token.end,
                ));
            }
        };
        self.operands
            .push(Node::leaf(kind, token.start, token.end - token.start));
        Ok(())
    }

    fn push_operator(&mut self, token: Token) -> Result<(), ParseError> {
        if token.kind.is_left_to_right() {
            let precedence = token.kind.precedence();
            while let Some(top) = self.operators.last() {
                let opens = matches!(
                    top.kind,
                    Kind::StartGroup | Kind::StartIndex | Kind::StartParams | Kind::Separator
                );
                if precedence <= top.kind.precedence() && !opens {
                    self.flush_top()?;
                } else {
                    break;
                }
            }
        }
        let closing = matches!(
            token.kind,
            Kind::EndGroup | Kind::EndIndex | Kind::EndParams
        );
        self.operators.push(token);
        if closing {
            self.flush_top()?;
        }
        Ok(())
    }

    fn pop_operator(&mut self, expected: Kind) -> Result<Token, ParseError> {
        match self.operators.pop() {
            Some(t) if t.kind == expected => Ok(t),
            Some(t) => Err(located("Unexpected symbol", self.src, t.start, t.end)),
            None => Err(ParseError::new(
                "Unexpected end of expression",
                self.src.len(),
                0,
            )),
        }
    }

    fn pop_operands(&mut self, count: usize, at: &Token) -> Result<Vec<Node>, ParseError> {
        if self.operands.len() < count {
            return Err(self.unexpected_end(at));
        }
        Ok(self.operands.split_off(self.operands.len() - count))
    }

    /// Pushes a finished container node, unless it would make the tree deeper than GitHub
    /// allows: then a placeholder goes in its place and the error is reported once the whole
    /// expression has been read, as the runner checks depth only after a successful parse.
    fn push_container(&mut self, mut node: Node) {
        node.compute_height();
        if node.height > MAX_DEPTH {
            self.too_deep = true;
            node = Node::leaf(NodeKind::Literal(Value::Null), node.offset, node.len);
        }
        self.operands.push(node);
    }

    fn flush_top(&mut self) -> Result<(), ParseError> {
        let Some(top) = self.operators.last().cloned() else {
            return Ok(());
        };
        match top.kind {
            Kind::EndGroup => {
                self.pop_operator(Kind::EndGroup)?;
                self.pop_operator(Kind::StartGroup)?;
                Ok(())
            }
            Kind::EndIndex => {
                self.pop_operator(Kind::EndIndex)?;
                let open = self.pop_operator(Kind::StartIndex)?;
                let mut pair = self.pop_operands(2, &open)?;
                let key = pair.pop();
                let target = pair.pop();
                if let (Some(target), Some(key)) = (target, key) {
                    let kind = NodeKind::Index(Box::new(target), Box::new(key));
                    self.push_container(Node::leaf(kind, open.start, open.end - open.start));
                }
                Ok(())
            }
            Kind::EndParams => self.flush_end_params(),
            Kind::Dereference => {
                let op = self.pop_operator(Kind::Dereference)?;
                let mut pair = self.pop_operands(2, &op)?;
                let key = pair.pop();
                let target = pair.pop();
                if let (Some(target), Some(key)) = (target, key) {
                    let kind = NodeKind::Index(Box::new(target), Box::new(key));
                    self.push_container(Node::leaf(kind, op.start, op.end - op.start));
                }
                Ok(())
            }
            Kind::Operator(op) => {
                let token = self.pop_operator(top.kind)?;
                let (offset, len) = (token.start, token.end - token.start);
                if op == Op::Not {
                    let mut operand = self.pop_operands(1, &token)?;
                    if let Some(a) = operand.pop() {
                        self.push_container(Node::leaf(NodeKind::Not(Box::new(a)), offset, len));
                    }
                    return Ok(());
                }
                let mut pair = self.pop_operands(2, &token)?;
                let (Some(right), Some(left)) = (pair.pop(), pair.pop()) else {
                    return Err(self.unexpected_end(&token));
                };
                let kind = match op {
                    Op::And => {
                        NodeKind::And(flatten(left, right, |k| matches!(k, NodeKind::And(_))))
                    }
                    Op::Or => NodeKind::Or(flatten(left, right, |k| matches!(k, NodeKind::Or(_)))),
                    _ => {
                        let cmp = match op {
                            Op::Eq => CmpOp::Eq,
                            Op::Ne => CmpOp::Ne,
                            Op::Lt => CmpOp::Lt,
                            Op::Le => CmpOp::Le,
                            Op::Gt => CmpOp::Gt,
                            _ => CmpOp::Ge,
                        };
                        NodeKind::Compare(cmp, Box::new(left), Box::new(right))
                    }
                };
                self.push_container(Node::leaf(kind, offset, len));
                Ok(())
            }
            _ => Err(located("Unexpected symbol", self.src, top.start, top.end)),
        }
    }

    fn flush_end_params(&mut self) -> Result<(), ParseError> {
        let close = self.pop_operator(Kind::EndParams)?;
        let no_args = self
            .last
            .as_ref()
            .is_some_and(|t| t.kind == Kind::StartParams);
        let args = if no_args {
            Vec::new()
        } else {
            let mut count = 1;
            while self
                .operators
                .last()
                .is_some_and(|t| t.kind == Kind::Separator)
            {
                self.operators.pop();
                count += 1;
            }
            self.pop_operands(count, &close)?
        };
        self.pop_operator(Kind::StartParams)?;
        let Some(mut call) = self.operands.pop() else {
            return Err(self.unexpected_end(&close));
        };
        let NodeKind::Call(func, params) = &mut call.kind else {
            return Err(located(
                "Unexpected symbol",
                self.src,
                close.start,
                close.end,
            ));
        };
        *params = args;
        let (min, max) = func.arity();
        let count = params.len();
        let name = &self.src[call.offset..call.offset + call.len];
        let problem = if count < min || count > max {
            let which = if count < min { "Too few" } else { "Too many" };
            let expects = if min == max {
                format!("{min}")
            } else {
                format!("{min} to {max}")
            };
            Some(format!(
                "{which} parameters supplied to function '{name}': it takes {expects}, got {count}."
            ))
        } else if *func == Func::Case && count % 2 == 0 {
            Some(format!(
                "Even number of parameters supplied, requires an odd number of parameters: '{name}'."
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            let position = self.src[..call.offset].chars().count() + 1;
            return Err(ParseError::new(
                format!(
                    "{problem} Located at position {position} within expression: {}",
                    self.src
                ),
                call.offset,
                call.len,
            ));
        }
        self.push_container(call);
        Ok(())
    }
}

/// Builds the operand list of `&&`/`||`, merging nested nodes of the same operator as the
/// runner does (which matters for the depth limit).
fn flatten(left: Node, right: Node, same: impl Fn(&NodeKind) -> bool) -> Vec<Node> {
    let mut out = Vec::new();
    for node in [left, right] {
        if same(&node.kind) {
            if let NodeKind::And(children) | NodeKind::Or(children) = node.kind {
                out.extend(children);
            }
        } else {
            out.push(node);
        }
    }
    out
}

impl Expr {
    /// The expression text, as parsed.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether `success()`, `failure()`, `always()` or `cancelled()` appears anywhere.
    pub fn uses_status_function(&self) -> bool {
        let mut found = false;
        self.root.walk(&mut |n| {
            if let NodeKind::Call(f, _) = &n.kind {
                found |= f.is_status();
            }
        });
        found
    }

    /// The contexts referenced (`github`, `env`, ...), lowercased, without duplicates, in order
    /// of first appearance.
    pub fn context_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        self.root.walk(&mut |n| {
            if let NodeKind::Context(name) = &n.kind
                && !names.contains(name)
            {
                names.push(name.clone());
            }
        });
        names
    }

    /// Property paths read from contexts: `needs.build.outputs.x` and `needs['build'].result`
    /// give `["needs", "build", "outputs", "x"]` and `["needs", "build", "result"]`. A path
    /// stops before the first index that is not a property name or string literal (`*`, a
    /// number, a computed value). The context name is lowercased; property names keep their
    /// case (GitHub matches them case-insensitively). One path per access, in source order.
    pub fn references(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        collect_references(&self.root, &mut out);
        out
    }
}

fn literal_key(node: &Node) -> Option<&str> {
    match &node.kind {
        NodeKind::Property(s) | NodeKind::Literal(Value::String(s)) => Some(s),
        _ => None,
    }
}

fn collect_references(node: &Node, out: &mut Vec<Vec<String>>) {
    match &node.kind {
        NodeKind::Context(name) => out.push(vec![name.clone()]),
        NodeKind::Index(..) => {
            let mut keys = Vec::new();
            let mut base = node;
            while let NodeKind::Index(target, key) = &base.kind {
                keys.push(key.as_ref());
                base = target;
            }
            keys.reverse();
            if let NodeKind::Context(name) = &base.kind {
                let mut path = vec![name.clone()];
                path.extend(keys.iter().map_while(|k| literal_key(k)).map(str::to_owned));
                out.push(path);
            } else {
                collect_references(base, out);
            }
            for key in keys {
                collect_references(key, out);
            }
        }
        _ => {
            for child in node.children() {
                collect_references(child, out);
            }
        }
    }
}
