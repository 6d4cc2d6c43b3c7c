//! Compose deployments, the deployer's side: the images of `services_to_build` are built
//! with this machine's Docker engine from the release's own compose file, tagged by content
//! (`<project>-<service>:<image id>`), and saved (`docker save`, unpacked) into a directory
//! that joins the release as `.pipewright-compose/`, beside `images.yml`, the compose file
//! that names them. No registry: the host loads them from the release. An unpacked save is
//! one file per layer, so a layer an earlier release already took to the host is hard-linked
//! there, not sent again.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use workflow::yaml::{self, Node};

use crate::config::Compose;
use crate::error::{Error, Result};
use crate::protocol::Event;

/// The directory a Compose release's pipewright files are in.
pub const DIR: &str = ".pipewright-compose";
/// The compose file that names the built images, used after the release's own.
pub const IMAGES_FILE: &str = ".pipewright-compose/images.yml";
/// The built images, as `docker save` writes them, unpacked.
pub const IMAGES_DIR: &str = ".pipewright-compose/images";

/// The names Compose looks for when it is given no file, in its order.
const DEFAULT_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The compose file of the release in `dir`: `compose_file`, or the first of Compose's own
/// default names there (`docker-compose.yml` when there is none, for the error to name).
pub fn file_in(dir: &Path, c: &Compose) -> String {
    if !c.file.is_empty() {
        return c.file.clone();
    }
    DEFAULT_FILES
        .iter()
        .find(|f| dir.join(f).is_file())
        .unwrap_or(&"docker-compose.yml")
        .to_string()
}

/// The built images of a release, staged for the upload.
pub struct Staged {
    /// Holds `.pipewright-compose/`.
    pub root: tempfile::TempDir,
    /// `(service, tag)`.
    pub images: Vec<(String, String)>,
}

/// How one service's image is built, read from its `build`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BuildSpec {
    context: PathBuf,
    dockerfile: Option<String>,
    args: Vec<String>,
    target: Option<String>,
}

/// Checks the release's compose file and builds, tags and saves the images of
/// `services_to_build`; `None` when there is nothing to build.
pub fn stage(
    artifact: &Path,
    c: &Compose,
    report: &mut dyn FnMut(&Event),
) -> Result<Option<Staged>> {
    let file_name = file_in(artifact, c);
    let file = artifact.join(&file_name);
    let text = fs::read_to_string(&file).map_err(|e| {
        Error::Refused(format!(
            "the compose file `{file_name}` is not in the artifact {}: {e}",
            artifact.display()
        ))
    })?;
    let root = yaml::load(&text).map_err(|d| {
        Error::Refused(format!(
            "{file_name}:{}:{}: {}",
            d.span.start.line, d.span.start.col, d.message
        ))
    })?;
    if c.build.is_empty() {
        return Ok(None);
    }
    let base = file.parent().unwrap_or(artifact).to_owned();
    let specs: Vec<(String, BuildSpec)> = c
        .build
        .iter()
        .map(|name| Ok((name.clone(), build_spec(&root, name, &file_name, &base)?)))
        .collect::<Result<_>>()?;
    let staged = tempfile::tempdir().map_err(Error::io("cannot create a directory in", "/tmp"))?;
    let images_dir = staged.path().join(IMAGES_DIR);
    fs::create_dir_all(&images_dir).map_err(Error::io("cannot create", &images_dir))?;
    let mut images = Vec::new();
    for (name, spec) in &specs {
        let t = Instant::now();
        // Tagged as it is built, under a name of this build's own: an image without a tag
        // could go to another user's `docker image prune` before it gets its own.
        let building = format!(
            "{}-{name}:building-{}-{}",
            c.project,
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let id = build(name, spec, &building, staged.path(), report)?;
        let hex = id.trim_start_matches("sha256:");
        let tag = format!("{}-{name}:{}", c.project, &hex[..hex.len().min(12)]);
        let tagged = docker(
            &["tag", &building, &tag],
            &format!("tag the image of `{name}`"),
        );
        // Only the name goes: the image keeps the tag it was given.
        let untagged = docker(&["rmi", &building], &format!("untag `{building}`"));
        tagged?;
        if let Err(e) = untagged {
            report(&Event::Message {
                text: format!("{e} (the image is tagged {tag} all the same)"),
            });
        }
        report(&Event::Message {
            text: format!(
                "built `{name}` as {tag} ({:.2}s)",
                t.elapsed().as_secs_f64()
            ),
        });
        images.push((name.clone(), tag));
    }
    let t = Instant::now();
    save(&images, &images_dir)?;
    report(&Event::Message {
        text: format!(
            "saved {} image(s) into the release ({:.2}s)",
            images.len(),
            t.elapsed().as_secs_f64()
        ),
    });
    let mut services = serde_json::Map::new();
    for (name, tag) in &images {
        services.insert(name.clone(), serde_json::json!({ "image": tag }));
    }
    let mut doc = serde_json::Map::new();
    // Compose 1 wants every file of a project at the same format version.
    if let Some(v) = root.get("version").and_then(Node::as_str) {
        doc.insert("version".into(), v.into());
    }
    doc.insert("services".into(), services.into());
    let path = staged.path().join(IMAGES_FILE);
    let json = serde_json::to_vec_pretty(&doc).map_err(|e| Error::Protocol(e.to_string()))?;
    fs::write(&path, json).map_err(Error::io("cannot write", &path))?;
    Ok(Some(Staged {
        root: staged,
        images,
    }))
}

/// A service's `build`: a context path, or `{context, dockerfile, args, target}`.
fn build_spec(root: &Node, name: &str, file: &str, base: &Path) -> Result<BuildSpec> {
    let (key, service) = root
        .get("services")
        .and_then(Node::as_map)
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some(name)))
        .ok_or_else(|| {
            Error::Refused(format!(
                "`services_to_build` names `{name}`, which `{file}` does not define"
            ))
        })?;
    let line = key.span.start.line;
    let Some(build) = merged(service, "build") else {
        return Err(Error::Refused(format!(
            "{file}:{line}: service `{name}` has no `build`, so pipewright cannot build its image; remove it from `services_to_build`"
        )));
    };
    let mut spec = BuildSpec {
        context: PathBuf::from("."),
        dockerfile: None,
        args: Vec::new(),
        target: None,
    };
    if build.as_map().is_none() {
        spec.context = PathBuf::from(build.as_str().unwrap_or("."));
    } else {
        if let Some(c) = build.get("context").and_then(Node::as_str) {
            spec.context = PathBuf::from(c);
        }
        spec.dockerfile = build
            .get("dockerfile")
            .and_then(Node::as_str)
            .map(str::to_owned);
        spec.target = build
            .get("target")
            .and_then(Node::as_str)
            .map(str::to_owned);
        if let Some(args) = build.get("args") {
            if let Some(m) = args.as_map() {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    match v.as_str().filter(|_| !v.is_null()) {
                        Some(v) => spec.args.push(format!("{k}={v}")),
                        None => spec.args.push(k.to_owned()),
                    }
                }
            } else if let Some(items) = args.as_seq() {
                spec.args
                    .extend(items.iter().filter_map(Node::as_str).map(str::to_owned));
            }
        }
    }
    let context = base.join(&spec.context);
    let inside = match (context.canonicalize(), base.canonicalize()) {
        (Ok(c), Ok(b)) => c.starts_with(b),
        _ => false,
    };
    if !inside {
        return Err(Error::Refused(format!(
            "{file}:{line}: the build context `{}` of `{name}` is not a directory inside the release",
            spec.context.display()
        )));
    }
    spec.context = context;
    Ok(spec)
}

/// A mapping's value by key, or else from the mappings its YAML merge key (`<<: *base`, or
/// `<<: [*a, *b]`, the first that has it) brings in, as Compose reads `x-` templates.
fn merged<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    if let Some(v) = node.get(key) {
        return Some(v);
    }
    let base = node.get("<<")?;
    match base.as_seq() {
        Some(items) => items.iter().find_map(|b| merged(b, key)),
        None => merged(base, key),
    }
}

/// `docker build`, the image tagged `tag`; returns the image id.
fn build(
    name: &str,
    spec: &BuildSpec,
    tag: &str,
    scratch: &Path,
    report: &mut dyn FnMut(&Event),
) -> Result<String> {
    let iid = scratch.join(format!("iid-{name}"));
    let mut c = Command::new("docker");
    c.arg("build").arg("--iidfile").arg(&iid).arg("-t").arg(tag);
    if let Some(f) = &spec.dockerfile {
        c.arg("-f").arg(spec.context.join(f));
    }
    for a in &spec.args {
        c.arg("--build-arg").arg(a);
    }
    if let Some(t) = &spec.target {
        c.arg("--target").arg(t);
    }
    c.arg(&spec.context).stdin(Stdio::null());
    let mut attempt = 1;
    loop {
        let out = c.output().map_err(|e| {
            Error::Refused(format!(
                "cannot run `docker build` for `{name}` (is Docker installed here?): {e}"
            ))
        })?;
        if out.status.success() {
            break;
        }
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // A cached layer removed while the build stood on it (a `docker image prune` or
        // `rmi` elsewhere on the machine) fails the build half-way; built again, the layer
        // is made anew. Only Docker's own last words count, never what the build's steps
        // printed.
        if attempt < BUILD_ATTEMPTS && lost_a_layer(&String::from_utf8_lossy(&out.stderr)) {
            attempt += 1;
            report(&Event::Message {
                text: format!(
                    "building `{name}` lost a cached layer to another user of the Docker engine; building it again (attempt {attempt} of {BUILD_ATTEMPTS})"
                ),
            });
            continue;
        }
        return Err(Error::Refused(format!(
            "building the image of `{name}` failed ({}{}):\n{}",
            out.status,
            if attempt > 1 {
                format!(", attempt {attempt}")
            } else {
                String::new()
            },
            last_lines(&text, 20)
        )));
    }
    let id = fs::read_to_string(&iid).map_err(Error::io("cannot read", &iid))?;
    let _ = fs::remove_file(&iid);
    Ok(id.trim().to_owned())
}

/// How many times a build that lost a cached layer under it is tried.
const BUILD_ATTEMPTS: u32 = 3;

/// Whether a failed build's standard error ends with Docker telling of a cached layer
/// removed under it by someone else (the legacy builder: moby/moby#36901), not of a fault
/// in what is built.
fn lost_a_layer(stderr: &str) -> bool {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| {
            l.starts_with("failed to export image: failed to set parent ")
                && l.contains(": unknown parent image ID ")
        })
}

/// `docker save TAG... | tar -x -C DIR`.
fn save(images: &[(String, String)], dir: &Path) -> Result<()> {
    let mut save = Command::new("docker")
        .arg("save")
        .args(images.iter().map(|(_, t)| t))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Refused(format!("cannot run `docker save`: {e}")))?;
    let Some(stdout) = save.stdout.take() else {
        return Err(Error::Refused("`docker save` gave no output".into()));
    };
    let tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(dir)
        .stdin(Stdio::from(stdout))
        .stderr(Stdio::piped())
        .output()
        .map_err(Error::io("cannot run tar into", dir))?;
    let saved = save
        .wait_with_output()
        .map_err(|e| Error::Refused(format!("`docker save` failed: {e}")))?;
    if !saved.status.success() {
        return Err(Error::Refused(format!(
            "`docker save` failed ({}): {}",
            saved.status,
            String::from_utf8_lossy(&saved.stderr).trim()
        )));
    }
    if !tar.status.success() {
        return Err(Error::Refused(format!(
            "unpacking the saved images failed: {}",
            String::from_utf8_lossy(&tar.stderr).trim()
        )));
    }
    Ok(())
}

/// `docker ARGS`' output; an error saying it could not `what`, with Docker's words.
fn docker(args: &[&str], what: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Refused(format!("cannot run docker to {what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Refused(format!(
            "cannot {what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The last `n` lines of a text.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The image tags a release's `images.yml` names.
pub fn release_images(release_dir: &Path) -> Vec<String> {
    let Ok(text) = fs::read(release_dir.join(IMAGES_FILE)) else {
        return Vec::new();
    };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    doc["services"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|s| s["image"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_build_that_lost_a_cached_layer_is_told_from_a_broken_one() {
        // Docker's legacy builder on standard error, its cached `WORKDIR` layer removed by
        // another `rmi` (as CI saw it).
        let lost = "DEPRECATED: The legacy builder is deprecated and will be removed in a future release.\n\
            \n\
            failed to export image: failed to set parent sha256:062e34: unknown parent image ID sha256:062e34\n";
        assert!(lost_a_layer(lost));
        let broken = "COPY failed: file not found in build context or excluded by .dockerignore: stat inner_architect: file does not exist\n";
        assert!(!lost_a_layer(broken));
        // A step that printed those words and then failed is a failed build, not retried.
        let step_said = "failed to export image: failed to set parent sha256:1: unknown parent image ID sha256:1\n\
            The command '/bin/sh -c ./selftest' returned a non-zero code: 1\n";
        assert!(!lost_a_layer(step_said));
    }

    #[test]
    fn without_compose_file_the_release_s_own_default_name_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let c = Compose {
            file: String::new(),
            project: "p".into(),
            build: Vec::new(),
            drain_ms: 0,
        };
        assert_eq!(file_in(dir.path(), &c), "docker-compose.yml");
        fs::write(dir.path().join("docker-compose.yml"), "").unwrap();
        fs::write(dir.path().join("compose.yml"), "").unwrap();
        assert_eq!(file_in(dir.path(), &c), "compose.yml");
        let named = Compose {
            file: "stack/prod.yml".into(),
            ..c
        };
        assert_eq!(file_in(dir.path(), &named), "stack/prod.yml");
    }

    #[test]
    fn a_build_is_a_context_or_a_mapping_and_must_stay_in_the_release() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("web")).unwrap();
        let root = yaml::load(
            "services:\n  web:\n    build:\n      context: web\n      dockerfile: Dockerfile.prod\n      args: {A: '1', B: null}\n      target: run\n  worker:\n    build: .\n  db:\n    image: postgres:15\n  out:\n    build: ..\n",
        )
        .unwrap();
        // A build brought in by a merge key, as an `x-` template is.
        let templated = yaml::load(
            "x-app: &app\n  build:\n    context: web\nservices:\n  worker:\n    <<: *app\n    command: work\n  beat:\n    <<: [{image: x}, *app]\n",
        )
        .unwrap();
        for name in ["worker", "beat"] {
            let spec = build_spec(&templated, name, "c.yml", dir.path()).unwrap();
            assert_eq!(spec.context, dir.path().join("web"), "{name}");
        }
        let web = build_spec(&root, "web", "c.yml", dir.path()).unwrap();
        assert_eq!(web.context, dir.path().join("web"));
        assert_eq!(web.dockerfile.as_deref(), Some("Dockerfile.prod"));
        assert_eq!(web.args, ["A=1", "B"]);
        assert_eq!(web.target.as_deref(), Some("run"));
        assert_eq!(
            build_spec(&root, "worker", "c.yml", dir.path())
                .unwrap()
                .context,
            dir.path().join(".")
        );
        let err = |name: &str| {
            build_spec(&root, name, "c.yml", dir.path())
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("db"),
            "c.yml:10: service `db` has no `build`, so pipewright cannot build its image; remove it from `services_to_build`"
        );
        assert_eq!(
            err("cache"),
            "`services_to_build` names `cache`, which `c.yml` does not define"
        );
        assert_eq!(
            err("out"),
            "c.yml:12: the build context `..` of `out` is not a directory inside the release"
        );
    }
}
