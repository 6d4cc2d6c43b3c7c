//! What a build's Dockerfile asks of the machine, read before the engine gets it: the images
//! it starts from (`FROM`, `COPY --from`), which the engine would pull when missing, past the
//! broker's pull rules, and the labels it gives. Read as the classic builder reads it, and
//! refused where the reading could differ from the engine's (an `escape` directive, a
//! reference left with a `$`).

use serde_json::{Map, Value};

use super::Refusal;

/// The images the Dockerfile `text` starts from (not its own stages), with the build
/// arguments `args`; refused when it names a platform, a label others act on, or a
/// reference the broker cannot read for certain.
pub(crate) fn images(text: &str, args: &Map<String, Value>) -> Result<Vec<String>, Refusal> {
    let mut global: Vec<(String, String)> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut images = Vec::new();
    let mut seen_from = false;
    for line in logical_lines(text)? {
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "ARG" if !seen_from => {
                for decl in rest.split_whitespace() {
                    let (name, default) = decl.split_once('=').unwrap_or((decl, ""));
                    let value = args
                        .get(name)
                        .and_then(Value::as_str)
                        .map_or_else(|| unquote(default), str::to_owned);
                    global.push((name.to_owned(), value));
                }
            }
            "FROM" => {
                seen_from = true;
                let mut words = rest.split_whitespace().peekable();
                if let Some(flag) = words.next_if(|w| w.starts_with("--")) {
                    return Err(Refusal::new(format!(
                        "the build's `FROM {flag}` is not allowed to a job (a platform would \
                         replace a tag the machine has)"
                    )));
                }
                let image = substitute(words.next().unwrap_or_default(), &global)?;
                let stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&image));
                if !stage && !image.eq_ignore_ascii_case("scratch") {
                    images.push(image);
                }
                if let (Some(as_), Some(name)) = (words.next(), words.next())
                    && as_.eq_ignore_ascii_case("as")
                {
                    stages.push(name.to_ascii_lowercase());
                }
            }
            "COPY" | "ADD" => {
                for flag in rest.split_whitespace().take_while(|w| w.starts_with("--")) {
                    let Some(from) = flag.strip_prefix("--from=") else {
                        continue;
                    };
                    let from = unquote(from);
                    if from.contains('$') {
                        return Err(Refusal::new(format!(
                            "the build's `--from={from}` is not allowed to a job (a reference \
                             the broker cannot read for certain)"
                        )));
                    }
                    let stage = from.parse::<usize>().is_ok()
                        || stages.iter().any(|s| s.eq_ignore_ascii_case(&from));
                    if !stage {
                        images.push(from);
                    }
                }
            }
            "LABEL" => {
                let lower = rest.to_ascii_lowercase();
                if ["traefik.", "caddy", "pipewright.broker"]
                    .iter()
                    .any(|p| lower.contains(p))
                {
                    return Err(Refusal::new(format!(
                        "the build's `LABEL {rest}` is not allowed to a job (something on the \
                         machine may act on it)"
                    )));
                }
            }
            _ => {}
        }
    }
    Ok(images)
}

/// The Dockerfile's instructions, one per line: continuations joined, comments left out.
fn logical_lines(text: &str) -> Result<Vec<String>, Refusal> {
    let mut lines = Vec::new();
    let mut current = String::new();
    let mut directives = true;
    for raw in text.lines() {
        let trimmed = raw.trim();
        if directives {
            if let Some(d) = trimmed.strip_prefix('#') {
                if let Some((k, v)) = d.split_once('=')
                    && k.trim().eq_ignore_ascii_case("escape")
                    && v.trim() != "\\"
                {
                    return Err(Refusal::new(
                        "a Dockerfile's `escape` directive is not allowed to a job",
                    ));
                }
                continue;
            }
            directives = false;
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        lines.push(std::mem::take(&mut current));
    }
    if !current.trim().is_empty() {
        lines.push(current);
    }
    Ok(lines)
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'').to_owned()
}

/// `word` with `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alternative}` of `args`;
/// anything else with a `$` is refused.
fn substitute(word: &str, args: &[(String, String)]) -> Result<String, Refusal> {
    let lookup = |name: &str| {
        args.iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let mut out = String::new();
    let mut rest = unquote(word);
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let (expr, tail) = if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| unreadable(word))?;
            (&body[..end], &body[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let value = if let Some((name, default)) = expr.split_once(":-") {
            lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        } else if let Some((name, alternative)) = expr.split_once(":+") {
            lookup(name)
                .filter(|v| !v.is_empty())
                .map_or_else(String::new, |_| alternative.to_owned())
        } else if !expr.is_empty() && expr.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            lookup(expr).unwrap_or_default()
        } else {
            return Err(unreadable(word));
        };
        if value.contains('$') {
            return Err(unreadable(word));
        }
        out.push_str(&value);
        rest = tail.to_owned();
    }
    out.push_str(&rest);
    if out.is_empty() {
        return Err(unreadable(word));
    }
    Ok(out)
}

fn unreadable(word: &str) -> Refusal {
    Refusal::new(format!(
        "the build's `FROM {word}` is not allowed to a job (a reference the broker cannot read \
         for certain)"
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(text: &str) -> Result<Vec<String>, String> {
        images(text, &Map::new()).map_err(|r| r.to_string())
    }

    #[test]
    fn the_images_a_build_starts_from_are_found() {
        assert_eq!(read("FROM busybox\nRUN true\n").unwrap(), ["busybox"]);
        // Stages are the build's own; scratch is nothing.
        assert_eq!(
            read(
                "# syntax=docker/dockerfile:1\nFROM golang:1.22 AS build\nRUN go build\n\
                 FROM scratch\nCOPY --from=build /app /app\nCOPY --from=0 /x /x\n\
                 COPY --from=nginx:1 /etc/nginx /etc/nginx\nFROM BUILD\n"
            )
            .unwrap(),
            ["golang:1.22", "nginx:1"]
        );
        // Build arguments before the first FROM, their defaults and the job's values.
        let args: Map<String, Value> = json!({"TAG": "3"}).as_object().cloned().unwrap();
        assert_eq!(
            images(
                "ARG BASE=alpine\nARG TAG=1\nFROM ${BASE}:$TAG\nFROM ${MISSING:-debian}:12 \\\n  AS two\n",
                &args
            )
            .unwrap(),
            ["alpine:3", "debian:12"]
        );
    }

    #[test]
    fn what_would_pass_the_pull_rules_or_be_read_otherwise_is_refused() {
        for (text, says) in [
            ("FROM --platform=linux/arm64 postgres:16\n", "--platform"),
            ("FROM $(echo x)\n", "cannot read"),
            ("FROM ${A:?err}\n", "cannot read"),
            ("# escape=`\nFROM busybox\n", "escape"),
            ("FROM busybox\nCOPY --from=${X} /a /b\n", "--from"),
            (
                "FROM busybox\nLABEL traefik.http.routers.x.rule=Host(`a`)\n",
                "traefik",
            ),
        ] {
            let r = read(text);
            assert!(r.as_ref().is_err_and(|m| m.contains(says)), "{text}: {r:?}");
        }
    }
}
