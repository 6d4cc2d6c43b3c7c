//! `actions/setup-python`: uses an interpreter already installed on the host (on the PATH, or
//! under pyenv) of the version asked for; fails naming the versions it found. `cache: pip`
//! points pip at a cache directory kept across runs.

use std::path::{Path, PathBuf};

use super::{ActionError, Call, versions};
use crate::job::JobState;
use crate::sink::Line;

/// An interpreter and its full version.
#[derive(Debug, Clone)]
struct Found {
    exe: PathBuf,
    version: String,
}

/// The interpreters on the job's `PATH`, and those of pyenv (`PYENV_ROOT`, `~/.pyenv`, or
/// the root of pyenv's shims on the `PATH`): the job's environment decides, not this
/// process's (a confined job's process starts from an empty one).
fn candidates(env: &[(String, String)]) -> Vec<PathBuf> {
    let var = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| std::ffi::OsString::from(v))
    };
    let mut out = Vec::new();
    let mut pyenv_roots: Vec<PathBuf> = Vec::new();
    if let Some(paths) = var("PATH") {
        for dir in std::env::split_paths(&paths) {
            // pyenv shims resolve through pyenv's global choice; the versions are listed below.
            if dir.ends_with(".pyenv/shims") {
                pyenv_roots.extend(dir.parent().map(Path::to_path_buf));
                continue;
            }
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.filter_map(Result::ok) {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let is_python = name == "python"
                        || name == "python3"
                        || name.strip_prefix("python3.").is_some_and(|m| {
                            !m.is_empty() && m.chars().all(|c| c.is_ascii_digit())
                        });
                    if is_python {
                        out.push(e.path());
                    }
                }
            }
        }
    }
    pyenv_roots.extend(var("PYENV_ROOT").map(PathBuf::from));
    pyenv_roots.extend(var("HOME").map(|h| PathBuf::from(h).join(".pyenv")));
    pyenv_roots.dedup();
    for root in pyenv_roots {
        if let Ok(rd) = std::fs::read_dir(root.join("versions")) {
            for e in rd.filter_map(Result::ok) {
                out.push(e.path().join("bin").join("python3"));
            }
        }
    }
    out
}

async fn version_of(exe: &Path) -> Option<String> {
    let out = tokio::process::Command::new(exe)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .await
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub(super) async fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut spec = call.input("python-version");
    if spec.is_empty() {
        let file = call.input("python-version-file");
        let file = if file.is_empty() {
            ".python-version".to_owned()
        } else {
            file
        };
        let path = crate::files::normalize(&state.workspace, state.home().as_deref(), &file);
        spec = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| {
                t.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
            })
            .unwrap_or_default();
    }
    let mut found: Vec<Found> = Vec::new();
    for exe in candidates(&state.run.host.base_env) {
        if let Ok(real) = std::fs::canonicalize(&exe) {
            if found
                .iter()
                .any(|f| std::fs::canonicalize(&f.exe).ok().as_ref() == Some(&real))
            {
                continue;
            }
        } else {
            continue;
        }
        if let Some(version) = version_of(&exe).await {
            found.push(Found { exe, version });
        }
    }
    // Several specs may be given, one a line: the last one is the default python.
    let specs: Vec<&str> = spec
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut chosen: Option<Found> = None;
    for s in specs.iter().copied().chain(specs.is_empty().then_some("3")) {
        let best = found
            .iter()
            .filter(|f| versions::matches(s, &f.version))
            .max_by(|a, b| versions::compare(&a.version, &b.version))
            .cloned();
        match best {
            Some(f) => chosen = Some(f),
            None => {
                let have: Vec<&str> = found.iter().map(|f| f.version.as_str()).collect();
                return Err(ActionError::Failed(versions::not_installed(
                    "Python", s, have,
                )));
            }
        }
    }
    let Some(py) = chosen else {
        return Err(ActionError::Failed("no Python version asked for".into()));
    };
    // A virtual environment over the chosen interpreter (its packages visible), first on
    // the PATH: `python`, `python3` and `pip` are the chosen interpreter, and `pip install`
    // goes into the environment, whoever the job runs as and whatever the system says of
    // its own Python (PEP 668), as on GitHub, where setup-python's Python takes packages.
    let shims = state.temp.join(format!("setup-python-{}", py.version));
    let venv_python = shims.join("bin").join("python");
    if !venv_python.exists() {
        let made = tokio::process::Command::new(&py.exe)
            .args(["-m", "venv", "--system-site-packages", "--without-pip"])
            .arg(&shims)
            .output()
            .await
            .map_err(|e| ActionError::io(py.exe.display().to_string(), e))?;
        if !made.status.success() {
            return Err(ActionError::Failed(format!(
                "{} cannot make a virtual environment: {}",
                py.exe.display(),
                String::from_utf8_lossy(&made.stderr).trim()
            )));
        }
    }
    for name in ["pip", "pip3"] {
        let script = format!(
            "#!/bin/sh\nexec '{}' -m pip \"$@\"\n",
            venv_python.display()
        );
        let p = shims.join("bin").join(name);
        std::fs::write(&p, script).map_err(|e| ActionError::io(p.display().to_string(), e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| ActionError::io(p.display().to_string(), e))?;
    }
    let shims = shims.join("bin");
    call.add_path(&shims)?;
    let location = py
        .exe
        .parent()
        .and_then(Path::parent)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    call.set_env("pythonLocation", &location)?;
    call.set_output("python-version", &py.version)?;
    call.set_output("python-path", &venv_python.display().to_string())?;
    if call.input("cache") == "pip" {
        call.keep_cache(&state.run.host.cache_dir.join("pip"), "PIP_CACHE_DIR")?;
    } else if !call.input("cache").is_empty() {
        return Err(ActionError::Failed(format!(
            "cache `{}` is not supported; use `pip`",
            call.input("cache")
        )));
    }
    state.log(Line::Output(format!(
        "Using Python {} at {}",
        py.version,
        py.exe.display()
    )));
    Ok(())
}
