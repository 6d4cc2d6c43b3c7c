//! `pipewright validate`: every diagnostic of every file, `file:line:col` with the source line.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::cli::ValidateArgs;
use crate::repo;

/// Whether to colour output on stderr.
pub(crate) fn color_stderr() -> bool {
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}

/// Parses a file and prints its diagnostics; returns (errors, warnings, parsed).
pub(crate) fn check_file(
    path: &std::path::Path,
    shown: &str,
) -> Result<(usize, usize, workflow::Parsed)> {
    let src = match std::fs::read_to_string(path) {
        Ok(s) => s,
        Err(e) => bail!("cannot read {shown}: {e}"),
    };
    let parsed = workflow::parse(&src);
    let color = color_stderr();
    let (mut errors, mut warnings) = (0, 0);
    for d in &parsed.diagnostics {
        if d.is_error() {
            errors += 1;
        } else {
            warnings += 1;
        }
        eprint!("{}", workflow::render(d, shown, &src, color));
    }
    Ok((errors, warnings, parsed))
}

pub(crate) fn run(args: &ValidateArgs) -> Result<u8> {
    let cwd = std::env::current_dir()?;
    let root = repo::Repo::discover(&cwd)
        .map(|r| r.root)
        .unwrap_or_else(|_| cwd.clone());
    let files: Vec<PathBuf> = if args.files.is_empty() {
        let files = repo::workflow_files(&root)?;
        if files.is_empty() {
            bail!(
                "no workflow files in {}",
                root.join(".github/workflows").display()
            );
        }
        files
    } else {
        args.files.clone()
    };
    let (mut errors, mut warnings) = (0, 0);
    for f in &files {
        let shown = repo::display_path(f, &cwd);
        let (e, w, parsed) = check_file(f, &shown)?;
        errors += e;
        warnings += w;
        // The actions it needs, and where each would come from.
        if e == 0
            && let Some(wf) = parsed.workflow
            && wf
                .jobs
                .values()
                .any(|j| j.steps.iter().any(|s| s.uses.is_some()))
        {
            println!("{shown}:");
            crate::run_cmd::print_actions(&wf, &root, false, "  ");
        }
    }
    let plural = |n: usize, w: &str| {
        if n == 1 {
            format!("{n} {w}")
        } else {
            format!("{n} {w}s")
        }
    };
    if errors > 0 {
        eprintln!(
            "{} checked: {}, {}",
            plural(files.len(), "file"),
            plural(errors, "error"),
            plural(warnings, "warning")
        );
        return Ok(1);
    }
    println!(
        "{} checked: no errors{}",
        plural(files.len(), "file"),
        if warnings > 0 {
            format!(", {}", plural(warnings, "warning"))
        } else {
            String::new()
        }
    );
    Ok(0)
}
