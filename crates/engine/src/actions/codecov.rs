//! `codecov/codecov-action`: reads a Cobertura XML or LCOV report and records the line coverage
//! in the run report. Nothing is uploaded.

use std::path::{Path, PathBuf};

use super::{ActionError, Call};
use crate::job::JobState;
use crate::sink::Line;

/// Lines covered and lines measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Coverage {
    pub(crate) covered: u64,
    pub(crate) total: u64,
}

pub(super) fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut names: Vec<String> = call
        .input("files")
        .split([',', '\n'])
        .chain(call.input("file").split([',', '\n']))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let fail = call.flag("fail_ci_if_error", false)?;
    if names.is_empty() {
        names = find_reports(&state.workspace);
    }
    let mut total = Coverage::default();
    let mut read = 0;
    for n in &names {
        let path = crate::files::normalize(&state.workspace, state.home().as_deref(), n);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                if fail {
                    return Err(ActionError::io(
                        format!("coverage report {}", path.display()),
                        e,
                    ));
                }
                state.log(Line::Output(format!("skipping {}: {e}", path.display())));
                continue;
            }
        };
        let c = parse(&text).ok_or_else(|| {
            ActionError::Failed(format!(
                "{} is neither a Cobertura XML nor an LCOV report",
                path.display()
            ))
        });
        match c {
            Ok(c) => {
                total.covered += c.covered;
                total.total += c.total;
                read += 1;
            }
            Err(e) if fail => return Err(e),
            Err(e) => state.log(Line::Output(e.to_string())),
        }
    }
    if read == 0 {
        let msg = "no coverage report found (looked for coverage.xml, cobertura.xml, lcov.info)"
            .to_owned();
        if fail {
            return Err(ActionError::Failed(msg));
        }
        state.log(Line::Output(msg));
        return Ok(());
    }
    let pct = if total.total == 0 {
        0.0
    } else {
        total.covered as f64 * 100.0 / total.total as f64
    };
    state.coverage = Some((pct * 100.0).round() / 100.0);
    state.log(Line::Output(format!(
        "Coverage: {pct:.2}% of lines ({} of {}); recorded in the run report, nothing uploaded",
        total.covered, total.total
    )));
    Ok(())
}

fn find_reports(workspace: &Path) -> Vec<String> {
    let wanted = [
        "coverage.xml",
        "cobertura.xml",
        "lcov.info",
        "coverage.lcov",
    ];
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(workspace)
        .max_depth(4)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_type().is_file() && wanted.contains(&e.file_name().to_string_lossy().as_ref())
        })
        .map(|e| e.into_path())
        .collect();
    out.sort();
    out.into_iter().map(|p| p.display().to_string()).collect()
}

/// Parses a Cobertura XML (`lines-covered`/`lines-valid` or `line-rate` on `<coverage>`) or an
/// LCOV tracefile (`LH:`/`LF:` records).
pub(crate) fn parse(text: &str) -> Option<Coverage> {
    if let Some(start) = text.find("<coverage") {
        let tag_end = text[start..].find('>')? + start;
        let tag = &text[start..tag_end];
        let attr = |name: &str| -> Option<f64> {
            let pat = format!(" {name}=\"");
            let i = tag.find(&pat)? + pat.len();
            let j = tag[i..].find('"')? + i;
            tag[i..j].parse().ok()
        };
        if let (Some(c), Some(t)) = (attr("lines-covered"), attr("lines-valid")) {
            return Some(Coverage {
                covered: c as u64,
                total: t as u64,
            });
        }
        // Only a rate: keep it with four decimals.
        let rate = attr("line-rate")?;
        return Some(Coverage {
            covered: (rate * 10000.0).round() as u64,
            total: 10000,
        });
    }
    let mut cov = Coverage::default();
    let mut seen = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("LH:") {
            cov.covered += v.trim().parse::<u64>().ok()?;
            seen = true;
        } else if let Some(v) = line.strip_prefix("LF:") {
            cov.total += v.trim().parse::<u64>().ok()?;
            seen = true;
        }
    }
    seen.then_some(cov)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cobertura_and_lcov() {
        let x = r#"<?xml version="1.0" ?><coverage version="7" lines-valid="200" lines-covered="150" line-rate="0.75"></coverage>"#;
        assert_eq!(
            parse(x),
            Some(Coverage {
                covered: 150,
                total: 200
            })
        );
        let l =
            "SF:a.py\nDA:1,1\nLF:10\nLH:7\nend_of_record\nSF:b.py\nLF:10\nLH:3\nend_of_record\n";
        assert_eq!(
            parse(l),
            Some(Coverage {
                covered: 10,
                total: 20
            })
        );
        assert_eq!(parse("hello"), None);
    }
}
