//! `actions/upload-artifact` and `actions/download-artifact` (v3 and v4 inputs) through the
//! run's local artifact store: `<run dir>/artifacts/<name>/`.

use std::path::PathBuf;

use super::{ActionError, Call};
use crate::job::JobState;
use crate::sink::{Level, Line};

fn store(state: &JobState<'_>) -> PathBuf {
    state.run.host.run_dir.join("artifacts")
}

/// Why `name` is not an artifact name, if it is not: GitHub's rules (no `" : < > | * ? \ /`),
/// and no name that is a path of its own (`.`, `..`, a leading dot), no control
/// characters, at most 255 bytes. Servers check what runners send with this too.
pub fn artifact_name_error(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 255 {
        return Some(format!(
            "artifact name `{name}` is not valid: it must have 1 to 255 bytes"
        ));
    }
    if name.starts_with('.')
        || name.chars().any(char::is_control)
        || name.contains(['"', ':', '<', '>', '|', '*', '?', '\\', '/'])
    {
        return Some(format!(
            "artifact name `{}` is not valid: it must not start with a dot nor contain \" : < > | * ? \\ / or control characters",
            crate::mask::neutralise(name)
        ));
    }
    None
}

fn major(version: &str) -> u32 {
    version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(4)
}

pub(super) fn upload(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    version: &str,
) -> Result<(), ActionError> {
    let name = call.input_or("name", "artifact");
    let name = if name.is_empty() {
        "artifact".to_owned()
    } else {
        name
    };
    if let Some(e) = artifact_name_error(&name) {
        return Err(ActionError::Failed(e));
    }
    let path = call.required("path")?;
    let found = crate::files::search(&state.workspace, state.home().as_deref(), &path)?;
    if found.files.is_empty() {
        let msg = format!(
            "no files were found with the provided path: {}. No artifacts will be uploaded.",
            path.trim()
        );
        return match call.input_or("if-no-files-found", "warn").as_str() {
            "error" => Err(ActionError::Failed(msg)),
            "ignore" => Ok(()),
            _ => {
                state.log(Line::Annotation {
                    level: Level::Warning,
                    message: msg,
                    file: None,
                    line: None,
                });
                Ok(())
            }
        };
    }
    let dest = store(state).join(&name);
    let overwrite = call.flag("overwrite", false)?;
    // v4 artifacts are immutable: a second upload under one name is an error; v3 merged.
    if dest.exists() && major(version) >= 4 {
        if overwrite {
            std::fs::remove_dir_all(&dest)
                .map_err(|e| ActionError::io(dest.display().to_string(), e))?;
        } else {
            return Err(ActionError::Failed(format!(
                "an artifact named `{name}` was already uploaded in this run; use another name or `overwrite: true`"
            )));
        }
    }
    let bytes = crate::files::copy_files(&found.files, &found.root, &dest)
        .map_err(|e| ActionError::io(format!("upload of artifact `{name}`"), e))?;
    state.log(Line::Output(format!(
        "Uploaded artifact `{name}`: {} file(s), {bytes} bytes",
        found.files.len()
    )));
    call.set_output("artifact-id", &name)?;
    Ok(())
}

pub(super) fn download(
    state: &mut JobState<'_>,
    call: &Call<'_>,
    _version: &str,
) -> Result<(), ActionError> {
    let base = crate::files::normalize(
        &state.workspace,
        state.home().as_deref(),
        &call.input_or("path", "."),
    );
    let store = store(state);
    let name = call.input("name");
    if !name.is_empty() {
        if let Some(e) = artifact_name_error(&name) {
            return Err(ActionError::Failed(e));
        }
        let src = store.join(&name);
        if !src.is_dir() {
            return Err(ActionError::Failed(format!(
                "artifact `{name}` was not found in this run (uploaded so far: {})",
                list(&store).join(", ")
            )));
        }
        crate::files::copy_tree(&src, &base)
            .map_err(|e| ActionError::io(format!("download of `{name}`"), e))?;
        state.log(Line::Output(format!(
            "Downloaded artifact `{name}` to {}",
            base.display()
        )));
    } else {
        let pattern = call.input("pattern");
        let merge = call.flag("merge-multiple", false)?;
        let pat = if pattern.is_empty() {
            None
        } else {
            Some(
                plan::filter::Pattern::new(&pattern, plan::filter::PatternKind::Ref).map_err(
                    |e| ActionError::Failed(format!("invalid `pattern`: {}", e.message)),
                )?,
            )
        };
        for a in list(&store) {
            if pat.as_ref().is_some_and(|p| !p.matches(&a)) {
                continue;
            }
            let dest = if merge { base.clone() } else { base.join(&a) };
            crate::files::copy_tree(&store.join(&a), &dest)
                .map_err(|e| ActionError::io(format!("download of `{a}`"), e))?;
            state.log(Line::Output(format!(
                "Downloaded artifact `{a}` to {}",
                dest.display()
            )));
        }
    }
    call.set_output("download-path", &base.display().to_string())?;
    Ok(())
}

fn list(store: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(store)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
