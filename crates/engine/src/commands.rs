//! Workflow commands (`::error file=a.py,line=3::message` on stdout) and file commands
//! (`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE`: `NAME=value` and `NAME<<DELIM` blocks).

use indexmap::IndexMap;

/// A workflow command found in a line of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    pub name: String,
    pub properties: IndexMap<String, String>,
    pub message: String,
}

/// Parses `::name k=v,k=v::message`; `None` if the line is not a command.
pub fn parse_command(line: &str) -> Option<Command> {
    let rest = line.trim_start().strip_prefix("::")?;
    let end = rest.find("::")?;
    let (head, message) = (&rest[..end], &rest[end + 2..]);
    let (name, props) = match head.split_once(' ') {
        Some((n, p)) => (n, p),
        None => (head, ""),
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return None;
    }
    let mut properties = IndexMap::new();
    for pair in props.split(',').filter(|p| !p.trim().is_empty()) {
        if let Some((k, v)) = pair.split_once('=') {
            properties.insert(k.trim().to_owned(), unescape_property(v));
        }
    }
    Some(Command {
        name: name.to_owned(),
        properties,
        message: unescape_data(message),
    })
}

fn unescape_data(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%25", "%")
}

fn unescape_property(s: &str) -> String {
    s.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
}

/// An error in a file command file, naming the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileCommandError {
    #[error("line {line}: `{text}` is neither `NAME=value` nor `NAME<<DELIMITER`")]
    Malformed { line: usize, text: String },
    #[error("line {line}: the delimiter `{delimiter}` opened here is never closed")]
    Unclosed { line: usize, delimiter: String },
    #[error("line {line}: a name must not be empty")]
    EmptyName { line: usize },
}

/// Parses the `NAME=value` / `NAME<<DELIM ... DELIM` format of `GITHUB_ENV`, `GITHUB_OUTPUT`
/// and `GITHUB_STATE`. Later assignments of a name override earlier ones.
pub fn parse_key_values(text: &str) -> Result<Vec<(String, String)>, FileCommandError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let line_no = i + 1;
        i += 1;
        if line.is_empty() {
            continue;
        }
        // GitHub checks for `=` first only when it comes before any `<<`.
        let eq = line.find('=');
        let heredoc = line.find("<<");
        match (eq, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let name = &line[..e];
                if name.is_empty() {
                    return Err(FileCommandError::EmptyName { line: line_no });
                }
                out.push((name.to_owned(), line[e + 1..].to_owned()));
            }
            (_, Some(h)) => {
                let name = &line[..h];
                let delimiter = &line[h + 2..];
                if name.is_empty() {
                    return Err(FileCommandError::EmptyName { line: line_no });
                }
                if delimiter.is_empty() {
                    return Err(FileCommandError::Malformed {
                        line: line_no,
                        text: line.to_owned(),
                    });
                }
                let mut value: Vec<&str> = Vec::new();
                let mut closed = false;
                while i < lines.len() {
                    let l = lines[i];
                    i += 1;
                    if l == delimiter {
                        closed = true;
                        break;
                    }
                    value.push(l);
                }
                if !closed {
                    return Err(FileCommandError::Unclosed {
                        line: line_no,
                        delimiter: delimiter.to_owned(),
                    });
                }
                out.push((name.to_owned(), value.join("\n")));
            }
            _ => {
                return Err(FileCommandError::Malformed {
                    line: line_no,
                    text: line.to_owned(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let c = parse_command("::error file=app.py,line=3,title=Bad%3A thing::it broke%0Ahere")
            .unwrap();
        assert_eq!(c.name, "error");
        assert_eq!(c.properties["file"], "app.py");
        assert_eq!(c.properties["title"], "Bad: thing");
        assert_eq!(c.message, "it broke\nhere");
        assert_eq!(parse_command("::endgroup::").unwrap().name, "endgroup");
        assert!(parse_command("no command").is_none());
        assert!(parse_command(":: x::").is_none());
    }

    #[test]
    fn key_values() {
        let kv = parse_key_values("A=1\nB<<EOF\nx\ny=z\nEOF\nC=a=b\n").unwrap();
        assert_eq!(
            kv,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x\ny=z".into()),
                ("C".into(), "a=b".into())
            ]
        );
        assert!(matches!(
            parse_key_values("B<<EOF\nx\n"),
            Err(FileCommandError::Unclosed { line: 1, .. })
        ));
        assert!(matches!(
            parse_key_values("oops\n"),
            Err(FileCommandError::Malformed { line: 1, .. })
        ));
    }
}
