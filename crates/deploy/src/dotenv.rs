//! Dotenv files, read one way everywhere: a deploy environment's `env_file`, and `pipewright
//! run --secrets-file/--vars-file`. The syntax is `dotenvy`'s: `NAME=VALUE` lines, `#`
//! comments (also after a value), an optional `export`, single quotes for a literal value,
//! double quotes with `\` escapes, `$NAME`/`${NAME}` substituted in unquoted and
//! double-quoted values (by this process's environment variable, else an earlier line's,
//! else nothing), values over several lines inside quotes.
//!
//! Reading never touches this process's environment.

use std::path::{Path, PathBuf};

/// Why a dotenv file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    /// The cause is in the message, not a `source()`: callers show errors with their
    /// chains, and would show it twice.
    #[error("cannot read {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// The offending text is not repeated: the file may hold secrets.
    #[error(
        "{}:{line}: expected NAME=VALUE (a value with blanks needs quotes)",
        path.display()
    )]
    Syntax { path: PathBuf, line: usize },
}

/// The variables of the dotenv file at `path`, in the file's order.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, DotenvError> {
    let text = std::fs::read_to_string(path).map_err(|cause| DotenvError::Read {
        path: path.to_owned(),
        cause,
    })?;
    parse(&text).map_err(|line| DotenvError::Syntax {
        path: path.to_owned(),
        line,
    })
}

/// The variables of a dotenv file's text, or the (1-based) line where it stops being one.
fn parse(text: &str) -> Result<Vec<(String, String)>, usize> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(pair) => vars.push(pair),
            Err(e) => return Err(line_of(text, &e)),
        }
    }
    Ok(vars)
}

/// The line of `text` where `dotenvy` failed with `failure`. Its error holds the text of the
/// line (or of its value) but not its number: the number is that of the shortest run of
/// whole lines from the start that fails the same way. Only an error pays for this.
fn line_of(text: &str, failure: &dotenvy::Error) -> usize {
    let dotenvy::Error::LineParse(failed, at) = failure else {
        return 1;
    };
    // A quote left open runs to the end of the file: the line where it opened.
    if *at == failed.len() && text.ends_with(failed.as_str()) {
        return text[..text.len() - failed.len()].matches('\n').count() + 1;
    }
    let mut end = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        end += line.len();
        let first_error = dotenvy::from_read_iter(&text.as_bytes()[..end]).find_map(Result::err);
        if let Some(dotenvy::Error::LineParse(f, a)) = first_error
            && f == *failed
            && a == *at
        {
            return i + 1;
        }
    }
    text.matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn dotenv_files() {
        let v = parse("# c\nexport A=1\nB=\"two words\"\nC='x'\n\nD=\"a\\nb\"\nE= 5 # five\n");
        assert_eq!(
            v,
            Ok(pairs(&[
                ("A", "1"),
                ("B", "two words"),
                ("C", "x"),
                ("D", "a\nb"),
                ("E", "5")
            ]))
        );
        assert_eq!(
            parse("PW_T_A='it''s'\nB='$PW_T_A'\nC=${PW_T_A}-\n"),
            Ok(pairs(&[("PW_T_A", "its"), ("B", "$PW_T_A"), ("C", "its-")]))
        );
    }

    #[test]
    fn a_line_that_is_not_an_assignment_is_an_error_with_its_line() {
        assert_eq!(parse("# c\nexport A=1\nnot an assignment\nB=2\n"), Err(3));
        assert_eq!(parse("A=1\n\nB=two words\n"), Err(3));
        assert_eq!(parse("A=1\nB=\"x\ny\"\n-C=1\n"), Err(4));
        assert_eq!(parse("A=1\nB=\"open\nC=1\n"), Err(2));
        assert_eq!(parse("A=1\nB=\"x\"y z\n"), Err(2));
    }

    #[test]
    fn errors_name_the_file_and_line_but_not_the_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secrets.env");
        std::fs::write(&file, "TOKEN=abc\nPASSWORD=hunter2 hunter3\n").unwrap();
        let message = read(&file).unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "{}:2: expected NAME=VALUE (a value with blanks needs quotes)",
                file.display()
            )
        );
        let message = read(&dir.path().join("absent.env"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("cannot read "), "{message}");
        assert!(message.contains("absent.env"), "{message}");
    }
}
