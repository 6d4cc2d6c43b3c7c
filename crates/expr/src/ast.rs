//! The parsed form of an expression.

use crate::Value;

/// The functions of GitHub's expression language. Names are case-insensitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Func {
    Contains,
    StartsWith,
    EndsWith,
    Format,
    Join,
    ToJson,
    FromJson,
    HashFiles,
    Success,
    Always,
    Cancelled,
    Failure,
    Case,
}

impl Func {
    const ALL: [Func; 13] = [
        Func::Contains,
        Func::StartsWith,
        Func::EndsWith,
        Func::Format,
        Func::Join,
        Func::ToJson,
        Func::FromJson,
        Func::HashFiles,
        Func::Success,
        Func::Always,
        Func::Cancelled,
        Func::Failure,
        Func::Case,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Func::Contains => "contains",
            Func::StartsWith => "startsWith",
            Func::EndsWith => "endsWith",
            Func::Format => "format",
            Func::Join => "join",
            Func::ToJson => "toJSON",
            Func::FromJson => "fromJSON",
            Func::HashFiles => "hashFiles",
            Func::Success => "success",
            Func::Always => "always",
            Func::Cancelled => "cancelled",
            Func::Failure => "failure",
            Func::Case => "case",
        }
    }

    pub(crate) fn lookup(name: &str) -> Option<Func> {
        Func::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Minimum and maximum number of arguments, as registered in the runner.
    pub(crate) fn arity(self) -> (usize, usize) {
        match self {
            Func::Contains | Func::StartsWith | Func::EndsWith => (2, 2),
            Func::Format => (1, 255),
            Func::Join => (1, 2),
            Func::ToJson | Func::FromJson => (1, 1),
            Func::HashFiles => (1, 255),
            Func::Success | Func::Always | Func::Cancelled | Func::Failure => (0, 0),
            // Predicate and value pairs, then the default: an odd number (checked apart).
            Func::Case => (3, 255),
        }
    }

    pub(crate) fn is_status(self) -> bool {
        matches!(
            self,
            Func::Success | Func::Always | Func::Cancelled | Func::Failure
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    /// `null`, `true`, a number or a quoted string.
    Literal(Value),
    /// The name after `.`: indexes like a string literal.
    Property(String),
    /// `*` in `a.*` or `a[*]`.
    Wildcard,
    /// A context name such as `github`, lowercased.
    Context(String),
    Index(Box<Node>, Box<Node>),
    Not(Box<Node>),
    /// Chains are flattened, as in the runner: `a && b && c` is one node.
    And(Vec<Node>),
    Or(Vec<Node>),
    Compare(CmpOp, Box<Node>, Box<Node>),
    Call(Func, Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    /// Byte range of the token that made this node (the name of a context or function, the
    /// operator symbol, the literal), relative to the expression text.
    pub(crate) offset: usize,
    pub(crate) len: usize,
    /// Levels in the tree below and including this node; the runner limits it to 50.
    pub(crate) height: u32,
}

impl Node {
    pub(crate) fn leaf(kind: NodeKind, offset: usize, len: usize) -> Node {
        Node {
            kind,
            offset,
            len,
            height: 1,
        }
    }

    pub(crate) fn children(&self) -> Vec<&Node> {
        match &self.kind {
            NodeKind::Index(a, b) | NodeKind::Compare(_, a, b) => vec![a, b],
            NodeKind::Not(a) => vec![a],
            NodeKind::And(v) | NodeKind::Or(v) | NodeKind::Call(_, v) => v.iter().collect(),
            NodeKind::Literal(_)
            | NodeKind::Property(_)
            | NodeKind::Wildcard
            | NodeKind::Context(_) => Vec::new(),
        }
    }

    pub(crate) fn compute_height(&mut self) {
        self.height = 1 + self.children().iter().map(|c| c.height).max().unwrap_or(0);
    }

    /// Visits every node, parents before children, left to right.
    pub(crate) fn walk<'n>(&'n self, f: &mut dyn FnMut(&'n Node)) {
        f(self);
        for child in self.children() {
            child.walk(f);
        }
    }
}
