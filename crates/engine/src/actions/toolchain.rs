//! `actions/setup-java` and `actions/setup-go`: a JDK or a Go toolchain already installed on
//! the machine, of the version asked for, its `bin` first on the `PATH` and its home in
//! `JAVA_HOME`/`GOROOT`; fails naming the versions it found. Nothing is downloaded. Java's
//! `distribution` picks among the JDKs of that version by their vendor (the `release`
//! file's `IMPLEMENTOR`); without one of that vendor, another is used with a warning. Go's
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
    /// A JDK's vendor, from its `release` file (`Eclipse Adoptium`, `Debian`); empty when
    /// it does not say.
    vendor: String,
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
            let vendor =
                implementor(&std::fs::read_to_string(home.join("release")).unwrap_or_default());
            out.push(Install {
                home,
                version,
                vendor,
            });
        }
    }
    out
}

/// The `IMPLEMENTOR` of a JDK's `release` file.
fn implementor(release: &str) -> String {
    release
        .lines()
        .find_map(|l| l.strip_prefix("IMPLEMENTOR="))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_default()
}

/// setup-java's distributions, each with the vendors (`IMPLEMENTOR`) whose JDKs it names.
const DISTRIBUTIONS: &[(&str, &[&str])] = &[
    ("temurin", &["Eclipse Adoptium", "AdoptOpenJDK"]),
    ("adopt", &["AdoptOpenJDK", "Eclipse Adoptium"]),
    ("adopt-hotspot", &["AdoptOpenJDK", "Eclipse Adoptium"]),
    ("adopt-openj9", &["AdoptOpenJDK", "Eclipse OpenJ9"]),
    ("zulu", &["Azul Systems"]),
    ("liberica", &["BellSoft"]),
    ("microsoft", &["Microsoft"]),
    ("corretto", &["Amazon.com"]),
    (
        "semeru",
        &["International Business Machines", "IBM", "Eclipse OpenJ9"],
    ),
    ("oracle", &["Oracle Corporation"]),
    ("dragonwell", &["Alibaba"]),
    ("sapmachine", &["SAP SE"]),
    ("graalvm", &["GraalVM", "Oracle Corporation"]),
    ("jetbrains", &["JetBrains"]),
];

/// The vendors a `distribution` input names: `None` for none given; an error for one
/// setup-java does not know.
fn vendors_of(distribution: &str) -> Result<Option<&'static [&'static str]>, ActionError> {
    let d = distribution.trim().to_ascii_lowercase();
    if d.is_empty() {
        return Ok(None);
    }
    DISTRIBUTIONS
        .iter()
        .find(|(name, _)| *name == d)
        .map(|(_, vendors)| Some(*vendors))
        .ok_or_else(|| {
            let known: Vec<&str> = DISTRIBUTIONS.iter().map(|(n, _)| *n).collect();
            ActionError::Failed(format!(
                "distribution `{distribution}` is not one setup-java knows; use one of: {}",
                known.join(", ")
            ))
        })
}

fn choose(tool: &str, spec: &str, found: &[Install]) -> Result<Install, ActionError> {
    choose_of(tool, spec, found, None).map(|(i, _)| i)
}

/// The newest install of the version asked for, one of `vendors` when there is one; and
/// whether it is of those vendors (always, when none are asked for).
fn choose_of(
    tool: &str,
    spec: &str,
    found: &[Install],
    vendors: Option<&[&str]>,
) -> Result<(Install, bool), ActionError> {
    let of_vendor =
        |i: &Install| vendors.is_none_or(|vs| vs.iter().any(|v| i.vendor.starts_with(v)));
    let newest = |pick: &dyn Fn(&Install) -> bool| {
        found
            .iter()
            .filter(|i| spec.is_empty() || versions::matches(spec, &i.version))
            .filter(|i| pick(i))
            .max_by(|a, b| versions::compare(&a.version, &b.version))
            .cloned()
    };
    if let Some(i) = newest(&of_vendor) {
        return Ok((i, true));
    }
    newest(&|_| true).map(|i| (i, false)).ok_or_else(|| {
        let have: Vec<&str> = found.iter().map(|i| i.version.as_str()).collect();
        ActionError::Failed(versions::not_installed(tool, spec, have))
    })
}

/// The first line of a version file in the workspace, if the input names one.
fn version_from_file(
    state: &JobState<'_>,
    call: &Call<'_>,
    input: &str,
) -> Result<String, ActionError> {
    let file = call.input(input);
    if file.is_empty() {
        return Ok(String::new());
    }
    let path = crate::files::normalize(&state.workspace, state.home().as_deref(), &file);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ActionError::Failed(format!(
            "`{input}`: cannot read {} ({e}); is the repository checked out?",
            path.display()
        ))
    })?;
    // go.mod's `go 1.22` line, or a file holding the version alone.
    Ok(text
        .lines()
        .map(str::trim)
        .find_map(|l| match l.strip_prefix("go ") {
            Some(v) => Some(v.trim().to_owned()),
            None if !l.is_empty() && !l.starts_with('#') && !l.contains(' ') => Some(l.to_owned()),
            None => None,
        })
        .unwrap_or_default())
}

pub(super) async fn java(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut spec = call.input("java-version");
    if spec.is_empty() {
        spec = version_from_file(state, call, "java-version-file")?;
    }
    let distribution = call.input("distribution");
    let vendors = vendors_of(&distribution)?;
    let env = &state.run.host.base_env;
    let mut roots = vec![PathBuf::from("/usr/lib/jvm")];
    roots.extend(var(env, "RUNNER_TOOL_CACHE").map(|c| c.join("Java")));
    let candidates = homes(env, "java", &["JAVA_HOME"], &roots);
    let found = installs(candidates, "java", &["-version"], java_version).await;
    let (jdk, as_asked) = choose_of("Java", &spec, &found, vendors)?;
    call.add_path(&jdk.home.join("bin"))?;
    let home = jdk.home.display().to_string();
    call.set_env("JAVA_HOME", &home)?;
    call.set_output("version", &jdk.version)?;
    call.set_output("path", &home)?;
    match call.input("cache").as_str() {
        "" => {}
        "maven" => {
            let dir = state.run.host.cache_dir.join("m2");
            std::fs::create_dir_all(&dir)
                .map_err(|e| ActionError::io(dir.display().to_string(), e))?;
            call.set_env(
                "MAVEN_OPTS",
                &format!("-Dmaven.repo.local={}", dir.display()),
            )?;
        }
        "gradle" => {
            call.keep_cache(&state.run.host.cache_dir.join("gradle"), "GRADLE_USER_HOME")?;
        }
        other => {
            return Err(ActionError::Failed(format!(
                "cache `{other}` is not supported; use maven or gradle"
            )));
        }
    }
    let vendor = if jdk.vendor.is_empty() {
        "an unnamed vendor"
    } else {
        jdk.vendor.as_str()
    };
    let shown = DISTRIBUTIONS
        .iter()
        .find(|(_, vs)| {
            vs.iter()
                .any(|v| !jdk.vendor.is_empty() && jdk.vendor.starts_with(v))
        })
        .map_or(jdk.vendor.to_ascii_lowercase(), |(n, _)| (*n).to_owned());
    call.set_output("distribution", &shown)?;
    if as_asked {
        state.log(Line::Output(format!(
            "Using Java {} ({vendor}) at {home}",
            jdk.version
        )));
    } else {
        state.log(Line::Annotation {
            level: crate::sink::Level::Warning,
            message: format!(
                "distribution `{distribution}` asked for, and this machine has no such JDK of Java {spec}: using Java {} built by {vendor} at {home} (nothing is downloaded)",
                jdk.version
            ),
            file: None,
            line: None,
        });
    }
    Ok(())
}

pub(super) async fn go(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let mut spec = call.input("go-version");
    if spec.is_empty() {
        spec = version_from_file(state, call, "go-version-file")?;
    }
    let env = &state.run.host.base_env;
    let mut roots = vec![PathBuf::from("/usr/lib/go")];
    if let Ok(rd) = std::fs::read_dir("/usr/lib") {
        roots.extend(
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("go-"))
                .map(|e| e.path()),
        );
    }
    // The tool cache's `go/<version>/x64`, as GitHub's images lay it out.
    if let Some(cache) = var(env, "RUNNER_TOOL_CACHE")
        && let Ok(rd) = std::fs::read_dir(cache.join("go"))
    {
        roots.extend(rd.flatten().map(|e| e.path()));
    }
    let mut candidates = homes(env, "go", &["GOROOT"], &roots);
    for extra in ["/usr/local/go", "/usr/lib/go"] {
        let p = PathBuf::from(extra);
        if p.join("bin/go").is_file() && !candidates.contains(&p) {
            candidates.push(p);
        }
    }
    let found = installs(candidates, "go", &["version"], go_version).await;
    let toolchain = choose("Go", &spec, &found)?;
    call.add_path(&toolchain.home.join("bin"))?;
    call.set_env("GOROOT", &toolchain.home.display().to_string())?;
    // Modules and builds in the job's directories, or the repository's cache when asked.
    let keep = call.input_or("cache", "true") == "true";
    let base = if keep {
        state.run.host.cache_dir.join("go")
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
                vendor: String::new(),
            })
            .collect();
        assert_eq!(choose("Java", "17", &found).unwrap().version, "17.0.15");
        assert_eq!(choose("Java", "", &found).unwrap().version, "21.0.2");
        assert_eq!(
            choose("Java", "11", &found).unwrap_err().to_string(),
            "Java 11 is not installed on this machine; found: 8.0.392, 17.0.15, 21.0.2"
        );
    }

    #[test]
    fn a_distribution_picks_among_the_jdks_of_the_version_by_vendor() {
        let jdk = |version: &str, vendor: &str| Install {
            home: PathBuf::from(format!("/jvm/{vendor}-{version}")),
            version: version.to_owned(),
            vendor: vendor.to_owned(),
        };
        let found = [
            jdk("21.0.4", "Azul Systems, Inc."),
            jdk("21.0.2", "Eclipse Adoptium"),
            jdk("17.0.15", "Debian"),
        ];
        let pick = |d: &str, spec: &str| {
            choose_of("Java", spec, &found, vendors_of(d).unwrap())
                .map(|(i, as_asked)| (i.vendor, as_asked))
                .unwrap()
        };
        assert_eq!(pick("temurin", "21"), ("Eclipse Adoptium".into(), true));
        assert_eq!(pick("Zulu", "21"), ("Azul Systems, Inc.".into(), true));
        // None of that vendor: the newest of the version, said to be another's.
        assert_eq!(pick("corretto", "21"), ("Azul Systems, Inc.".into(), false));
        assert_eq!(pick("temurin", "17"), ("Debian".into(), false));
        assert_eq!(pick("", "21"), ("Azul Systems, Inc.".into(), true));
        assert_eq!(
            vendors_of("openjdk").unwrap_err().to_string(),
            "distribution `openjdk` is not one setup-java knows; use one of: temurin, adopt, adopt-hotspot, adopt-openj9, zulu, liberica, microsoft, corretto, semeru, oracle, dragonwell, sapmachine, graalvm, jetbrains"
        );
        assert_eq!(
            implementor("JAVA_VERSION=\"21\"\nIMPLEMENTOR=\"BellSoft\"\n"),
            "BellSoft"
        );
    }
}
