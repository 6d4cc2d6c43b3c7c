//! GitHub's filter patterns: the globs of `on.<event>.<branches|tags|paths>` and their
//! `-ignore` twins, as described by the "Filter pattern cheat sheet".
//!
//! The syntax is a hybrid of shell globs and regular expressions:
//!
//! | token   | meaning                                                                  |
//! |---------|--------------------------------------------------------------------------|
//! | `*`     | zero or more characters other than `/`                                   |
//! | `**`    | zero or more characters, `/` included                                    |
//! | `**/`   | at a segment start: zero or more directories (`a/**/b` matches `a/b`)   |
//! | `?`     | zero or one of the *preceding* character (regex style, not a glob `?`)   |
//! | `+`     | one or more of the *preceding* character                                 |
//! | `[...]` | one ASCII letter or digit, listed or in a range such as `0-9a-f`         |
//! | `\`     | makes the next special character (`* ? + [ ] \ !`) literal               |
//! | `!`     | as the first character only: a negative pattern                          |
//!
//! A pattern must match the whole name (or the whole path from the repository root) and
//! matching is case-sensitive. Consequences worth knowing: `*` never crosses a `/`, so `'*'`
//! matches `README.md` but not `docs/README.md`; `docs/**` matches what is inside `docs`
//! but not a file named `docs`; a pattern ending in `/` matches only names ending in `/`,
//! which no changed-file path does; and `.` is an ordinary character.
//!
//! Matching compiles each pattern to a small Thompson NFA and simulates it over the input,
//! so the cost is O(pattern × input) whatever the pattern: no backtracking, hence no
//! exponential blow-up on patterns such as `*a*a*a*a*b`.

use std::fmt;

/// Which filter a pattern belongs to.
///
/// GitHub documents one syntax for branch, tag and path filters and evaluates them the
/// same way at run time (linters may reject characters that cannot occur in a Git ref,
/// but GitHub does not), so the kind does not change matching. It is kept so callers
/// and diagnostics can tell the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PatternKind {
    /// `branches`, `branches-ignore`, `tags`, `tags-ignore`: matched against the short ref
    /// name (`main`, `v1.2.3`), not `refs/heads/main`.
    Ref,
    /// `paths`, `paths-ignore`: matched against paths relative to the repository root.
    Path,
}

/// A pattern that GitHub would reject.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    /// What is wrong, for a person.
    pub message: String,
    /// Byte offset into the pattern as written (a leading `!` included).
    pub offset: usize,
}

impl PatternError {
    fn new(offset: usize, message: impl Into<String>) -> PatternError {
        PatternError {
            message: message.into(),
            offset,
        }
    }
}

/// One compiled filter pattern.
#[derive(Clone)]
pub struct Pattern {
    source: String,
    kind: PatternKind,
    negated: bool,
    program: Vec<Inst>,
}

impl fmt::Debug for Pattern {
    // The compiled program is noise in test failures; the source says everything.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pattern")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("negated", &self.negated)
            .finish()
    }
}

impl Pattern {
    /// Compiles one pattern, `!` prefix included.
    pub fn new(src: &str, kind: PatternKind) -> Result<Pattern, PatternError> {
        if src.is_empty() {
            return Err(PatternError::new(0, "a filter pattern cannot be empty"));
        }
        let (negated, body, base) = match src.strip_prefix('!') {
            Some(rest) => (true, rest, 1),
            None => (false, src, 0),
        };
        if body.is_empty() {
            return Err(PatternError::new(
                src.len(),
                "a negative pattern needs something after '!'",
            ));
        }
        let pieces = parse(body, base)?;
        Ok(Pattern {
            source: src.to_owned(),
            kind,
            negated,
            program: compile(&pieces),
        })
    }

    /// Whether the pattern started with `!`.
    pub fn is_negated(&self) -> bool {
        self.negated
    }

    /// The pattern as written, `!` included.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The filter kind the pattern was compiled for.
    pub fn kind(&self) -> PatternKind {
        self.kind
    }

    /// Whether the whole of `s` matches the pattern. A leading `!` is ignored here:
    /// [`Filter`] gives negation its meaning.
    pub fn matches(&self, s: &str) -> bool {
        run(&self.program, s)
    }
}

/// An ordered list of patterns, as written under one filter key.
#[derive(Debug, Clone)]
pub struct Filter {
    patterns: Vec<Pattern>,
}

impl Filter {
    /// Compiles every pattern; on failure, reports the index of the first bad one.
    pub fn new(patterns: &[String], kind: PatternKind) -> Result<Filter, (usize, PatternError)> {
        let patterns = patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Pattern::new(p, kind).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter { patterns })
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// GitHub's ordered evaluation: the last pattern that matches decides, included if it is
    /// positive, excluded if it is negative; nothing matching means not included. So a `!`
    /// pattern only removes what earlier patterns let in, and a later positive pattern can
    /// let it back in.
    ///
    /// GitHub asks for at least one positive pattern next to `!` ones; a filter made only of
    /// negative patterns is accepted here and matches nothing.
    pub fn matches(&self, s: &str) -> bool {
        self.patterns
            .iter()
            .rev()
            .find(|p| p.matches(s))
            .is_some_and(|p| !p.negated)
    }

    /// For `branches`/`tags`/`paths`: true if at least one item is included. No items (no
    /// changed files) gives false, and GitHub then does not run the workflow.
    pub fn matches_any(&self, items: &[String]) -> bool {
        items.iter().any(|item| self.matches(item))
    }

    /// For `paths-ignore` (and the other `-ignore` keys): true if every item is matched, in
    /// which case the workflow does not run. No items gives true, which agrees with GitHub
    /// not running a workflow when no file changed.
    pub fn matches_all(&self, items: &[String]) -> bool {
        items.iter().all(|item| self.matches(item))
    }
}

/// What a single consuming NFA step accepts.
#[derive(Debug, Clone, PartialEq)]
enum Class {
    Char(char),
    /// Inclusive ranges; single characters are ranges of one.
    Set(Vec<(char, char)>),
    NotSlash,
    Any,
}

impl Class {
    fn accepts(&self, c: char) -> bool {
        match self {
            Class::Char(x) => *x == c,
            Class::Set(ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi),
            Class::NotSlash => c != '/',
            Class::Any => true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Repeat {
    One,
    ZeroOrOne,
    OneOrMore,
    ZeroOrMore,
}

/// One unit of a parsed pattern.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    Atom(Class, Repeat),
    /// `**/` at the start of a segment: empty, or anything ending in `/`. Without it
    /// `**/README.md` could not match a root `README.md`, which the cheat sheet says it does.
    Dirs,
}

#[derive(Debug, Clone)]
enum Inst {
    Consume(Class, usize),
    Split(usize, usize),
    Match,
}

fn parse(body: &str, base: usize) -> Result<Vec<Piece>, PatternError> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut chars = body.char_indices().peekable();
    // `**/` is only "any directories" where a segment starts, so `a**/b` keeps `**` as a plain
    // any-characters wildcard followed by a literal `/`.
    let mut at_segment_start = true;
    while let Some((i, c)) = chars.next() {
        let offset = base + i;
        let mut next_segment_start = false;
        match c {
            '*' => {
                if chars.next_if(|&(_, n)| n == '*').is_some() {
                    if at_segment_start && chars.next_if(|&(_, n)| n == '/').is_some() {
                        pieces.push(Piece::Dirs);
                        next_segment_start = true;
                    } else {
                        pieces.push(Piece::Atom(Class::Any, Repeat::ZeroOrMore));
                    }
                } else {
                    pieces.push(Piece::Atom(Class::NotSlash, Repeat::ZeroOrMore));
                }
            }
            '?' | '+' => {
                let repeat = if c == '?' {
                    Repeat::ZeroOrOne
                } else {
                    Repeat::OneOrMore
                };
                match pieces.last_mut() {
                    Some(Piece::Atom(Class::Char(_) | Class::Set(_), r @ Repeat::One)) => {
                        *r = repeat;
                    }
                    _ => {
                        // Nothing repeatable precedes it (a wildcard, another quantifier or the
                        // start): GitHub treats such patterns as broken, so refuse them rather
                        // than guess a meaning.
                        return Err(PatternError::new(
                            offset,
                            format!(
                                "'{c}' must follow a character or a [...] set it repeats; \
                                 escape it as '\\{c}' to match it literally"
                            ),
                        ));
                    }
                }
            }
            '[' => {
                let set = parse_set(&mut chars, offset, base)?;
                pieces.push(Piece::Atom(Class::Set(set), Repeat::One));
            }
            '\\' => {
                // Only special characters can be escaped; elsewhere a backslash is itself,
                // since file names may contain one.
                match chars.next_if(|&(_, n)| is_special(n)) {
                    Some((_, n)) => pieces.push(Piece::Atom(Class::Char(n), Repeat::One)),
                    None => pieces.push(Piece::Atom(Class::Char('\\'), Repeat::One)),
                }
            }
            '/' => {
                pieces.push(Piece::Atom(Class::Char('/'), Repeat::One));
                next_segment_start = true;
            }
            _ => pieces.push(Piece::Atom(Class::Char(c), Repeat::One)),
        }
        at_segment_start = next_segment_start;
    }
    Ok(pieces)
}

fn is_special(c: char) -> bool {
    matches!(c, '*' | '?' | '+' | '[' | ']' | '\\' | '!')
}

/// Parses the inside of `[...]`; the iterator stands just after the `[` at `open`.
fn parse_set(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    open: usize,
    base: usize,
) -> Result<Vec<(char, char)>, PatternError> {
    let mut ranges = Vec::new();
    loop {
        let Some((i, c)) = chars.next() else {
            return Err(PatternError::new(open, "'[' is never closed by ']'"));
        };
        let offset = base + i;
        if c == ']' {
            if ranges.is_empty() {
                return Err(PatternError::new(
                    open,
                    "'[]' is empty: list at least one character",
                ));
            }
            return Ok(ranges);
        }
        // The cheat sheet allows only letters and digits in a set, and ranges within a-z,
        // A-Z or 0-9; anything else (`[!x]`, `[^x]`, `[\d]`, `[._]`) is not GitHub syntax.
        if !c.is_ascii_alphanumeric() {
            return Err(PatternError::new(
                offset,
                format!(
                    "'{c}' cannot appear in [...]: only letters, digits and ranges such as a-z"
                ),
            ));
        }
        if chars.next_if(|&(_, n)| n == '-').is_none() {
            ranges.push((c, c));
            continue;
        }
        match chars.next_if(|&(_, n)| n != ']') {
            None => {
                return Err(PatternError::new(
                    offset,
                    format!("the range starting at '{c}' has no end"),
                ));
            }
            Some((_, end)) => {
                let same_class = (c.is_ascii_lowercase() && end.is_ascii_lowercase())
                    || (c.is_ascii_uppercase() && end.is_ascii_uppercase())
                    || (c.is_ascii_digit() && end.is_ascii_digit());
                if !same_class {
                    return Err(PatternError::new(
                        offset,
                        format!("'{c}-{end}' is not a range within a-z, A-Z or 0-9"),
                    ));
                }
                if c > end {
                    return Err(PatternError::new(
                        offset,
                        format!("'{c}-{end}' is backwards: write '{end}-{c}'"),
                    ));
                }
                ranges.push((c, end));
            }
        }
    }
}

fn compile(pieces: &[Piece]) -> Vec<Inst> {
    let mut prog = Vec::with_capacity(pieces.len() * 2 + 1);
    for piece in pieces {
        let pc = prog.len();
        match piece {
            Piece::Atom(class, Repeat::One) => prog.push(Inst::Consume(class.clone(), pc + 1)),
            Piece::Atom(class, Repeat::ZeroOrOne) => {
                prog.push(Inst::Split(pc + 1, pc + 2));
                prog.push(Inst::Consume(class.clone(), pc + 2));
            }
            Piece::Atom(class, Repeat::OneOrMore) => {
                prog.push(Inst::Consume(class.clone(), pc + 1));
                prog.push(Inst::Split(pc, pc + 2));
            }
            Piece::Atom(class, Repeat::ZeroOrMore) => {
                prog.push(Inst::Split(pc + 1, pc + 2));
                prog.push(Inst::Consume(class.clone(), pc));
            }
            Piece::Dirs => {
                // (any* '/')?
                prog.push(Inst::Split(pc + 1, pc + 4));
                prog.push(Inst::Split(pc + 2, pc + 3));
                prog.push(Inst::Consume(Class::Any, pc + 1));
                prog.push(Inst::Consume(Class::Char('/'), pc + 4));
            }
        }
    }
    prog.push(Inst::Match);
    prog
}

/// A set of NFA states; `mark` makes insertion O(1) without clearing between steps.
struct StateSet {
    states: Vec<usize>,
    mark: Vec<usize>,
    generation: usize,
}

impl StateSet {
    fn new(len: usize) -> StateSet {
        StateSet {
            states: Vec::new(),
            mark: vec![usize::MAX; len],
            generation: 0,
        }
    }

    fn clear(&mut self, generation: usize) {
        self.states.clear();
        self.generation = generation;
    }

    /// Adds `start` and everything reachable from it without consuming input.
    fn add(&mut self, prog: &[Inst], start: usize, stack: &mut Vec<usize>) {
        stack.push(start);
        while let Some(pc) = stack.pop() {
            if self.mark[pc] == self.generation {
                continue;
            }
            self.mark[pc] = self.generation;
            match &prog[pc] {
                Inst::Split(a, b) => {
                    stack.push(*b);
                    stack.push(*a);
                }
                Inst::Consume(..) | Inst::Match => self.states.push(pc),
            }
        }
    }
}

fn run(prog: &[Inst], s: &str) -> bool {
    let mut stack = Vec::new();
    let mut current = StateSet::new(prog.len());
    let mut next = StateSet::new(prog.len());
    let mut generation = 0;
    current.clear(generation);
    current.add(prog, 0, &mut stack);
    for c in s.chars() {
        generation += 1;
        next.clear(generation);
        for &pc in &current.states {
            if let Inst::Consume(class, to) = &prog[pc]
                && class.accepts(c)
            {
                next.add(prog, *to, &mut stack);
            }
        }
        if next.states.is_empty() {
            return false;
        }
        std::mem::swap(&mut current, &mut next);
    }
    current
        .states
        .iter()
        .any(|&pc| matches!(prog[pc], Inst::Match))
}
