//! `actions/setup-java` and `actions/setup-go`: a JDK or a Go toolchain already installed on
//! the machine, of the version asked for, its `bin` first on the `PATH` and its home in
//! `JAVA_HOME`/`GOROOT`; fails naming the versions it found. Nothing is downloaded. Go's
//! module and build caches are the job's own, or kept across runs with `cache: true`.

use std::path::{Path, PathBuf};

use super::{ActionError, Call, versions};
use crate::job::JobState;
use crate::sink::Line;

/// An installation: its home (`JAVA_HOME`, `GOROOT`) and its version (`17.0.15`, `1.22.1`).
#[derive(Debug, Clone, PartialEq)]
struct Install {
    home: PathBuf,
    version: String,
}

fn var(env: &[(String, String)], k: &str) -> Option<PathBuf> {
    env.iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| PathBuf::from(v))
}

/// Homes holding `bin/<program>`: the job's `PATH` (each directory's parent), the
/// variables named, the directories under `roots`.
fn homes(
    env: &[(String, String)],
    program: &str,
    vars: &[&str],
    roots: &[PathBuf],
) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    if let Some(paths) = var(env, "PATH") {
        for dir in std::env::split_paths(&paths) {
            if let Ok(real) = std::fs::canonicalize(dir.join(program))
                && let Some(home) = real.parent().and_then(Path::parent)
            {
                out.push(home.to_path_buf());
            }
        }
    }
    out.extend(vars.iter().filter_map(|v| var(env, v)));
    for root in roots {
        if let Ok(rd) = std::fs::read_dir(root) {
            out.extend(rd.flatten().map(|e| e.path()));
        }
    }
    let mut seen = Vec::new();
    out.retain(|h| {
        let real = std::fs::canonicalize(h).unwrap_or_else(|_| h.clone());
        let fresh = h.join("bin").join(program).is_file() && !seen.contains(&real);
        seen.push(real);
        fresh
    });
    out
}

/// `java -version`'s version, with the old `1.8.0_392` as `8.0.392`.
fn java_version(text: &str) -> Option<String> {
    let quoted = text.split('"').nth(1)?;
    let v = quoted.replace('_', ".");
    Some(match v.strip_prefix("1.") {
        Some(rest) if v.starts_with("1.8") || v.starts_with("1.7") => rest.to_owned(),
        _ => v,
    })
}

/// `go version`'s version: `go version go1.22.1 linux/amd64` → `1.22.1`.
fn go_version(text: &str) -> Option<String> {
    text.split_whitespace()
        .find_map(|w| {
            w.strip_prefix("go")
                .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        })
        .map(str::to_owned)
}

async fn installs(
    candidates: Vec<PathBuf>,
    program: &str,
    args: &[&str],
    parse: fn(&str) -> Option<String>,
) -> Vec<Install> {
    let mut out = Vec::new();
    for home in candidates {
        let Ok(o) = tokio::process::Command::new(home.join("bin").join(program))
            .args(args)
            .output()
            .await
        else {
            continue;
        };
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if let Some(version) = parse(&text) {
            out.push(Install { home, version });
        }
    }
    out
}

fn choose(tool: &str, spec: &str, found: &[Install]) -> Result<Install, ActionError> {
    found
        .iter()
        .filter(|i| spec.is_empty() || versions::matches(spec, &i.version))
        .max_by(|a, b| versions::compare(&a.version, &b.version))
        .cloned()
        .ok_or_else(|| {
            let have: Vec<&str> = found.iter().map(|i| i.version.as_str()).collect();
            ActionError::Failed(versions::not_installed(tool, spec, have))
        })
}

/// The first line of a version file in the workspace, if the input names one.
fn version_from_file(state: &JobState<'_>, call: &Call<'_>, input: &str) -> String {
    let file = call.input(input);
    if file.is_empty() {
        return String::new();
    }
    let path = crate::files::normalize(&state.workspace, state.home().as_deref(), &file);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // go.mod's `go 1.22` line, or a file holding the version alone.
    text.lines()
        .map(str::trim)
        .find_map(|l| match l.strip_prefix("go ") {
            Some(v) => Some(v.trim().to_owned()),
            None if !l.is_empty() && !l.starts_with('#') && !l.contains(' ') => Some(l.to_owned()),
            None => None,
        })
        .unwrap_or_default()
}

pub(super) async fn java(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut spec = call.input("java-version");
    if spec.is_empty() {
        spec = version_from_file(state, call, "java-version-file");
    }
    let env = &state.run.base_env;
    let mut roots = vec![PathBuf::from("/usr/lib/jvm")];
    roots.extend(var(env, "RUNNER_TOOL_CACHE").map(|c| c.join("Java")));
    let candidates = homes(env, "java", &["JAVA_HOME"], &roots);
    let found = installs(candidates, "java", &["-version"], java_version).await;
    let jdk = choose("Java", &spec, &found)?;
    call.add_path(&jdk.home.join("bin"))?;
    let home = jdk.home.display().to_string();
    call.set_env("JAVA_HOME", &home)?;
    call.set_output("version", &jdk.version)?;
    call.set_output("path", &home)?;
    match call.input("cache").as_str() {
        "" => {}
        "maven" => {
            let dir = state.run.cache_dir.join("m2");
            std::fs::create_dir_all(&dir)
                .map_err(|e| ActionError::io(dir.display().to_string(), e))?;
            call.set_env(
                "MAVEN_OPTS",
                &format!("-Dmaven.repo.local={}", dir.display()),
            )?;
        }
        "gradle" => {
            call.keep_cache(&state.run.cache_dir.join("gradle"), "GRADLE_USER_HOME")?;
        }
        other => {
            return Err(ActionError::Failed(format!(
                "cache `{other}` is not supported; use maven or gradle"
            )));
        }
    }
    state.log(Line::Output(format!(
        "Using Java {} at {home} (distribution `{}` asked for: the installed JDK is used as it is)",
        jdk.version,
        call.input("distribution")
    )));
    Ok(())
}

pub(super) async fn go(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut spec = call.input("go-version");
    if spec.is_empty() {
        spec = version_from_file(state, call, "go-version-file");
    }
    let env = &state.run.base_env;
    let mut roots = vec![PathBuf::from("/usr/lib/go")];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        roots.extend(
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("go-"))
                .map(|e| e.path()),
        );
    }
    roots.extend(var(env, "RUNNER_TOOL_CACHE").map(|c| c.join("go")));
    let mut candidates = homes(env, "go", &["GOROOT"], &roots);
    for extra in ["/usr/local/go", "/usr/lib/go"] {
        let p = PathBuf::from(extra);
        if p.join("bin/go").is_file() && !candidates.contains(&p) {
            candidates.push(p);
        }
    }
    // Each root's own directories (a tool cache's `<version>/x64`) too.
    let nested: Vec<PathBuf> = candidates
        .iter()
        .map(|c| c.join("x64"))
        .filter(|c| c.join("bin/go").is_file())
        .collect();
    candidates.extend(nested);
    let found = installs(candidates, "go", &["version"], go_version).await;
    let toolchain = choose("Go", &spec, &found)?;
    call.add_path(&toolchain.home.join("bin"))?;
    call.set_env("GOROOT", &toolchain.home.display().to_string())?;
    // Modules and builds in the job's directories, or the repository's cache when asked.
    let keep = call.input_or("cache", "true") == "true";
    let base = if keep {
        state.run.cache_dir.join("go")
    } else {
        state.temp.join("go")
    };
    for (name, sub) in [
        ("GOPATH", "path"),
        ("GOMODCACHE", "path/pkg/mod"),
        ("GOCACHE", "build"),
    ] {
        let dir = base.join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| ActionError::io(dir.display().to_string(), e))?;
        call.set_env(name, &dir.display().to_string())?;
    }
    call.add_path(&base.join("path/bin"))?;
    call.set_output("go-version", &toolchain.version)?;
    state.log(Line::Output(format!(
        "Using Go {} at {}",
        toolchain.version,
        toolchain.home.display()
    )));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_as_the_tools_print_them() {
        assert_eq!(
            java_version("openjdk version \"17.0.15\" 2025-04-15\nOpenJDK Runtime"),
            Some("17.0.15".into())
        );
        assert_eq!(
            java_version("java version \"1.8.0_392\"\n"),
            Some("8.0.392".into())
        );
        assert_eq!(
            go_version("go version go1.22.1 linux/amd64\n"),
            Some("1.22.1".into())
        );
        assert_eq!(go_version("bash: go: not found"), None);
    }

    #[test]
    fn the_newest_install_the_spec_asks_for_else_what_there_is() {
        let found: Vec<Install> = ["17.0.15", "21.0.2", "8.0.392"]
            .iter()
            .map(|v| Install {
                home: PathBuf::from(format!("/jvm/{v}")),
                version: (*v).to_owned(),
            })
            .collect();
        assert_eq!(choose("Java", "17", &found).unwrap().version, "17.0.15");
        assert_eq!(choose("Java", "", &found).unwrap().version, "21.0.2");
        assert_eq!(
            choose("Java", "11", &found).unwrap_err().to_string(),
            "Java 11 is not installed on this machine; found: 8.0.392, 17.0.15, 21.0.2"
        );
    }
}
