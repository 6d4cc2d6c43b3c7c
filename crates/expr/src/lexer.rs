//! The tokenizer, a faithful model of the runner's `LexicalAnalyzer`.
//!
//! GitHub's lexer decides most of the syntax: it knows which token may follow which, and
//! turns anything out of place into an "unexpected symbol". The parser after it only has to
//! arrange operators by precedence. Keeping the same split keeps our error positions and
//! accepted inputs identical to GitHub's.

use crate::number::parse_number;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `(` grouping.
    StartGroup,
    /// `[`.
    StartIndex,
    /// `(` of a function call.
    StartParams,
    /// `)` closing a group.
    EndGroup,
    /// `]`.
    EndIndex,
    /// `)` closing a function call.
    EndParams,
    /// `,` between function arguments.
    Separator,
    /// `.` property access.
    Dereference,
    /// `*` filter.
    Wildcard,
    Operator(Op),
    Null,
    Boolean,
    Number,
    String,
    /// A name after `.`.
    PropertyName,
    /// A name followed by `(`.
    Function,
    /// Any other name: a context such as `github`.
    NamedValue,
    Unexpected,
}

impl Kind {
    pub(crate) fn is_operator(self) -> bool {
        matches!(
            self,
            Kind::StartGroup
                | Kind::StartIndex
                | Kind::StartParams
                | Kind::EndGroup
                | Kind::EndIndex
                | Kind::EndParams
                | Kind::Separator
                | Kind::Dereference
                | Kind::Operator(_)
        )
    }

    pub(crate) fn precedence(self) -> u8 {
        match self {
            Kind::StartGroup => 20,
            Kind::StartIndex | Kind::StartParams | Kind::Dereference => 19,
            Kind::Operator(op) => match op {
                Op::Not => 16,
                Op::Gt | Op::Ge | Op::Lt | Op::Le => 11,
                Op::Eq | Op::Ne => 10,
                Op::And => 6,
                Op::Or => 5,
            },
            Kind::EndGroup | Kind::EndIndex | Kind::EndParams | Kind::Separator => 1,
            _ => 0,
        }
    }

    /// Left-to-right operators flush pending operators of higher or equal precedence; `!` is
    /// right-to-left and `(` never flushes.
    pub(crate) fn is_left_to_right(self) -> bool {
        self.is_operator() && !matches!(self, Kind::StartGroup | Kind::Operator(Op::Not))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokValue {
    None,
    Bool(bool),
    Number(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    /// Byte range of the raw token text.
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) value: TokValue,
}

pub(crate) struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    last: Option<Kind>,
    unclosed: Vec<Kind>,
}

/// Characters that end a number or a name.
fn is_boundary(c: char) -> bool {
    matches!(
        c,
        '(' | '[' | ')' | ']' | ',' | '.' | '!' | '>' | '<' | '=' | '&' | '|'
    ) || c.is_whitespace()
}

/// `[a-zA-Z_][a-zA-Z0-9_-]*`: the names the runner accepts for contexts, properties and
/// functions.
pub(crate) fn is_legal_keyword(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

const AFTER_VALUE: &[Option<Kind>] = &[
    Some(Kind::EndGroup),
    Some(Kind::EndParams),
    Some(Kind::EndIndex),
    Some(Kind::Wildcard),
    Some(Kind::Null),
    Some(Kind::Boolean),
    Some(Kind::Number),
    Some(Kind::String),
    Some(Kind::PropertyName),
    Some(Kind::NamedValue),
];

const AT_OPERAND_START: &[Option<Kind>] = &[
    None,
    Some(Kind::Separator),
    Some(Kind::StartIndex),
    Some(Kind::StartGroup),
    Some(Kind::StartParams),
];

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s str) -> Self {
        Lexer {
            src,
            pos: 0,
            last: None,
            unclosed: Vec::new(),
        }
    }

    /// Whether a `(`, `[` or function `(` is still open.
    pub(crate) fn has_unclosed(&self) -> bool {
        !self.unclosed.is_empty()
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    pub(crate) fn next_token(&mut self) -> Option<Token> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let c = self.peek()?;
        let start = self.pos;
        let token = match c {
            '(' => {
                self.bump();
                let kind = if self.last == Some(Kind::Function) {
                    Kind::StartParams
                } else {
                    Kind::StartGroup
                };
                self.create(kind, start, TokValue::None)
            }
            '[' => {
                self.bump();
                self.create(Kind::StartIndex, start, TokValue::None)
            }
            ')' => {
                self.bump();
                let kind = if self.unclosed.last() == Some(&Kind::StartParams) {
                    Kind::EndParams
                } else {
                    Kind::EndGroup
                };
                self.create(kind, start, TokValue::None)
            }
            ']' => {
                self.bump();
                self.create(Kind::EndIndex, start, TokValue::None)
            }
            ',' => {
                self.bump();
                self.create(Kind::Separator, start, TokValue::None)
            }
            '*' => {
                self.bump();
                self.create(Kind::Wildcard, start, TokValue::None)
            }
            '\'' => self.read_string(),
            '!' | '>' | '<' | '=' | '&' | '|' => self.read_operator(),
            '.' => {
                let number_position = matches!(
                    self.last,
                    None | Some(
                        Kind::Separator
                            | Kind::StartGroup
                            | Kind::StartIndex
                            | Kind::StartParams
                            | Kind::Operator(_)
                    )
                );
                if number_position {
                    self.read_number()
                } else {
                    self.bump();
                    self.create(Kind::Dereference, start, TokValue::None)
                }
            }
            '-' | '+' | '0'..='9' => self.read_number(),
            _ => self.read_keyword(),
        };
        self.last = Some(token.kind);
        Some(token)
    }

    fn read_number(&mut self) -> Token {
        let start = self.pos;
        self.bump();
        while let Some(c) = self.peek() {
            if is_boundary(c) && c != '.' {
                break;
            }
            self.bump();
        }
        let n = parse_number(&self.src[start..self.pos]);
        if n.is_nan() {
            return self.unexpected(start);
        }
        self.create(Kind::Number, start, TokValue::Number(n))
    }

    fn read_keyword(&mut self) -> Token {
        let start = self.pos;
        self.bump();
        while self.peek().is_some_and(|c| !is_boundary(c)) {
            self.bump();
        }
        let word = &self.src[start..self.pos];
        if !is_legal_keyword(word) {
            return self.unexpected(start);
        }
        if self.last == Some(Kind::Dereference) {
            return self.create(Kind::PropertyName, start, TokValue::None);
        }
        // Literal keywords are case-sensitive in the runner (ordinal comparison).
        match word {
            "null" => return self.create(Kind::Null, start, TokValue::None),
            "true" => return self.create(Kind::Boolean, start, TokValue::Bool(true)),
            "false" => return self.create(Kind::Boolean, start, TokValue::Bool(false)),
            "NaN" => return self.create(Kind::Number, start, TokValue::Number(f64::NAN)),
            "Infinity" => return self.create(Kind::Number, start, TokValue::Number(f64::INFINITY)),
            _ => {}
        }
        let rest = &self.src[self.pos..];
        if rest.trim_start().starts_with('(') {
            self.create(Kind::Function, start, TokValue::None)
        } else {
            self.create(Kind::NamedValue, start, TokValue::None)
        }
    }

    fn read_string(&mut self) -> Token {
        let start = self.pos;
        self.bump();
        let mut value = String::new();
        let mut closed = false;
        while let Some(c) = self.peek() {
            self.bump();
            if c == '\'' {
                if self.peek() != Some('\'') {
                    closed = true;
                    break;
                }
                self.bump();
            }
            value.push(c);
        }
        if closed {
            self.create(Kind::String, start, TokValue::Str(value))
        } else {
            self.unexpected(start)
        }
    }

    fn read_operator(&mut self) -> Token {
        let start = self.pos;
        let rest = &self.src[start..];
        let two = [
            ("!=", Op::Ne),
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("==", Op::Eq),
            ("&&", Op::And),
            ("||", Op::Or),
        ];
        for (text, op) in two {
            if rest.starts_with(text) {
                self.pos += 2;
                return self.create(Kind::Operator(op), start, TokValue::None);
            }
        }
        let one = [('!', Op::Not), ('>', Op::Gt), ('<', Op::Lt)];
        self.bump();
        for (ch, op) in one {
            if rest.starts_with(ch) {
                return self.create(Kind::Operator(op), start, TokValue::None);
            }
        }
        while self.peek().is_some_and(|c| !is_boundary(c)) {
            self.bump();
        }
        self.unexpected(start)
    }

    fn unexpected(&self, start: usize) -> Token {
        Token {
            kind: Kind::Unexpected,
            start,
            end: self.pos,
            value: TokValue::None,
        }
    }

    fn last_is(&self, allowed: &[Option<Kind>]) -> bool {
        allowed.contains(&self.last)
    }

    /// Applies the runner's rules about which token may follow which, and tracks nesting.
    fn create(&mut self, kind: Kind, start: usize, value: TokValue) -> Token {
        let legal = match kind {
            Kind::StartGroup | Kind::Operator(Op::Not) => {
                self.last_is(AT_OPERAND_START) || matches!(self.last, Some(Kind::Operator(_)))
            }
            Kind::StartIndex | Kind::Dereference => self.last_is(&[
                Some(Kind::EndGroup),
                Some(Kind::EndParams),
                Some(Kind::EndIndex),
                Some(Kind::Wildcard),
                Some(Kind::PropertyName),
                Some(Kind::NamedValue),
            ]),
            Kind::StartParams => self.last == Some(Kind::Function),
            Kind::EndGroup | Kind::EndIndex | Kind::Separator | Kind::Operator(_) => {
                self.last_is(AFTER_VALUE)
            }
            Kind::EndParams => self.last_is(AFTER_VALUE) || self.last == Some(Kind::StartParams),
            Kind::Wildcard => self.last_is(&[Some(Kind::StartIndex), Some(Kind::Dereference)]),
            Kind::Null
            | Kind::Boolean
            | Kind::Number
            | Kind::String
            | Kind::Function
            | Kind::NamedValue => {
                self.last_is(AT_OPERAND_START) || matches!(self.last, Some(Kind::Operator(_)))
            }
            Kind::PropertyName => self.last == Some(Kind::Dereference),
            Kind::Unexpected => false,
        };
        if !legal {
            return self.unexpected(start);
        }
        let token = Token {
            kind,
            start,
            end: self.pos,
            value,
        };
        let top = self.unclosed.last().copied();
        match kind {
            Kind::StartGroup | Kind::StartIndex | Kind::StartParams => self.unclosed.push(kind),
            Kind::EndGroup | Kind::EndIndex | Kind::EndParams => {
                let opener = match kind {
                    Kind::EndGroup => Kind::StartGroup,
                    Kind::EndIndex => Kind::StartIndex,
                    _ => Kind::StartParams,
                };
                if top != Some(opener) {
                    return self.unexpected(start);
                }
                self.unclosed.pop();
            }
            Kind::Separator if top != Some(Kind::StartParams) => return self.unexpected(start),
            _ => {}
        }
        token
    }
}
