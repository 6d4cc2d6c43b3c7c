//! `actions/setup-node`: a Node.js already installed on the machine (on the job's `PATH`,
//! under nvm, n or a tool cache) of the version asked for, its `node`, `npm` and `npx`
//! first on the `PATH`; fails naming the versions it found. Global installs
//! (`npm install -g`) go into the job's own prefix, never the machine's; `cache: npm` keeps
//! npm's cache across runs.

use std::path::{Path, PathBuf};

use super::{ActionError, Call, versions};
use crate::job::JobState;
use crate::sink::Line;

/// The `node` programs to ask for their version: the job's `PATH`, nvm's (`NVM_DIR` or
/// `~/.nvm`), n's (`N_PREFIX` or `/usr/local/n`) and a tool cache's
/// (`RUNNER_TOOL_CACHE/node/<version>/x64`), from the job's environment.
fn candidates(env: &[(String, String)]) -> Vec<PathBuf> {
    let var = |k: &str| {
        env.iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| PathBuf::from(v))
    };
    let mut out = Vec::new();
    if let Some(paths) = var("PATH") {
        out.extend(std::env::split_paths(&paths).map(|d| d.join("node")));
    }
    let home = var("HOME");
    let mut roots: Vec<PathBuf> = Vec::new();
    roots.extend(var("NVM_DIR").map(|d| d.join("versions/node")));
    roots.extend(home.as_ref().map(|h| h.join(".nvm/versions/node")));
    roots.extend(var("N_PREFIX").map(|d| d.join("n/versions/node")));
    roots.push(PathBuf::from("/usr/local/n/versions/node"));
    for root in roots {
        if let Ok(rd) = std::fs::read_dir(&root) {
            out.extend(rd.flatten().map(|e| e.path().join("bin/node")));
        }
    }
    if let Some(cache) = var("RUNNER_TOOL_CACHE")
        && let Ok(rd) = std::fs::read_dir(cache.join("node"))
    {
        out.extend(rd.flatten().map(|e| e.path().join("x64/bin/node")));
    }
    out.retain(|p| p.is_file());
    out
}

async fn version_of(exe: &Path) -> Option<String> {
    let out = tokio::process::Command::new(exe)
        .arg("--version")
        .output()
        .await
        .ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_start_matches('v')
            .to_owned()
    })
}

/// The newest of `found` that `spec` asks for: a version prefix (`20`, `20.x`, `v18.19`),
/// `lts/*` (the newest even major), `latest`, `current` or `node`.
fn choose<'a>(spec: &str, found: &'a [(PathBuf, String)]) -> Option<&'a (PathBuf, String)> {
    let spec = spec.trim();
    let fits = |v: &str| match spec {
        "latest" | "current" | "node" | "" => true,
        "lts/*" => v
            .split('.')
            .next()
            .and_then(|m| m.parse::<u64>().ok())
            .is_some_and(|m| m % 2 == 0),
        s => versions::matches(s, v),
    };
    found
        .iter()
        .filter(|(_, v)| fits(v))
        .max_by(|a, b| versions::compare(&a.1, &b.1))
}

pub(super) async fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut spec = call.input("node-version");
    if spec.is_empty() {
        let file = call.input("node-version-file");
        let names: Vec<String> = if file.is_empty() {
            vec![".nvmrc".into(), ".node-version".into()]
        } else {
            vec![file]
        };
        for name in names {
            let path = crate::files::normalize(&state.workspace, state.home().as_deref(), &name);
            if let Some(v) = std::fs::read_to_string(&path).ok().and_then(|t| {
                t.lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(str::to_owned)
            }) {
                spec = v;
                break;
            }
        }
    }
    let mut found: Vec<(PathBuf, String)> = Vec::new();
    let mut seen = Vec::new();
    for exe in candidates(&state.run.host.base_env) {
        let Ok(real) = std::fs::canonicalize(&exe) else {
            continue;
        };
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        if let Some(v) = version_of(&exe).await {
            found.push((exe, v));
        }
    }
    let Some((exe, version)) = choose(&spec, &found).cloned() else {
        let have: Vec<&str> = found.iter().map(|(_, v)| v.as_str()).collect();
        return Err(ActionError::Failed(versions::not_installed(
            "Node", &spec, have,
        )));
    };
    // The chosen installation's programs, alone, first on the PATH.
    let bin = exe.parent().unwrap_or(Path::new("/")).to_path_buf();
    let shims = state.temp.join(format!("setup-node-{version}"));
    std::fs::create_dir_all(&shims).map_err(|e| ActionError::io(shims.display().to_string(), e))?;
    for name in ["node", "npm", "npx", "corepack"] {
        let target = bin.join(name);
        let link = shims.join(name);
        if target.exists() && std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(&target, &link)
                .map_err(|e| ActionError::io(link.display().to_string(), e))?;
        }
    }
    // `npm install -g` into the job's own prefix, whose bin comes first.
    let prefix = state.temp.join("npm-global");
    std::fs::create_dir_all(prefix.join("bin"))
        .map_err(|e| ActionError::io(prefix.display().to_string(), e))?;
    call.add_path(&shims)?;
    call.add_path(&prefix.join("bin"))?;
    call.set_env("NPM_CONFIG_PREFIX", &prefix.display().to_string())?;
    call.set_output("node-version", &format!("v{version}"))?;
    match call.input("cache").as_str() {
        "" => {}
        "npm" | "yarn" | "pnpm" => {
            call.keep_cache(&state.run.host.cache_dir.join("npm"), "NPM_CONFIG_CACHE")?;
        }
        other => {
            return Err(ActionError::Failed(format!(
                "cache `{other}` is not supported; use npm, yarn or pnpm"
            )));
        }
    }
    state.log(Line::Output(format!(
        "Using Node.js {version} at {}",
        exe.display()
    )));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_installation_the_spec_asks_for() {
        let found: Vec<(PathBuf, String)> = ["18.19.0", "20.11.1", "20.20.2", "21.7.0"]
            .iter()
            .map(|v| (PathBuf::from(format!("/n/{v}/bin/node")), (*v).to_owned()))
            .collect();
        let pick = |s: &str| choose(s, &found).map(|(_, v)| v.as_str());
        assert_eq!(pick("20"), Some("20.20.2"));
        assert_eq!(pick("20.x"), Some("20.20.2"));
        assert_eq!(pick("v20.11"), Some("20.11.1"));
        assert_eq!(pick("lts/*"), Some("20.20.2"));
        assert_eq!(pick("latest"), Some("21.7.0"));
        assert_eq!(pick("16"), None);
    }
}
