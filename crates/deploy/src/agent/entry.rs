//! The host's own entry point: after each deploy or rollback that ends healthy, the agent
//! leaves `PATH/deploy.sh` and the settings it ran with (`PATH/.pipewright/settings.json`),
//! so that an operator logged in to the host can run `./deploy.sh rollback`, `releases` or
//! `status` there without the deployer or a CI server, under the same lock, journal and
//! history (`pipewright deploy-host`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::error::{Error, Result};
use crate::release::Layout;

/// The settings file under the deploy path's `.pipewright/`.
pub fn settings_file(path: &Path) -> PathBuf {
    Layout::new(path).meta().join("settings.json")
}

/// The entry script's name in the deploy path.
pub const SCRIPT: &str = "deploy.sh";

/// Writes the settings (mode 0600: the environment's variables may hold secrets) and the
/// entry script calling `agent` (this very binary), each by rename, so that neither is ever
/// seen half written.
pub(crate) fn write(settings: &Settings, agent: &Path) -> Result<()> {
    let root = Path::new(&settings.path);
    let file = settings_file(root);
    let json = serde_json::to_vec_pretty(settings).map_err(|e| Error::Protocol(e.to_string()))?;
    write_file(&file, &json, 0o600)?;
    write_file(&root.join(SCRIPT), script(root, agent).as_bytes(), 0o755)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(Error::io("cannot write", &tmp))?;
    f.write_all(bytes)
        .map_err(Error::io("cannot write", &tmp))?;
    // The mode given at creation is masked by the umask: set it as asked.
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))
        .map_err(Error::io("cannot set the mode of", &tmp))?;
    fs::rename(&tmp, path).map_err(Error::io("cannot rename", path))
}

/// The script: the agent's path and the deploy path are fixed when it is written.
fn script(root: &Path, agent: &Path) -> String {
    format!(
        "#!/bin/sh
# Written by pipewright at each healthy deploy or rollback: this environment's releases on
# this host, without the deployer, under the same lock and history.
#   ./deploy.sh status                           the live release, the lock, the last command
#   ./deploy.sh releases [--json]                every release, newest first
#   ./deploy.sh rollback [--to RELEASE] [--with-db] [--lock-wait 30s]
exec {agent} deploy-host --path {root} \"$@\"
",
        agent = quote(&agent.to_string_lossy()),
        root = quote(&root.to_string_lossy()),
    )
}

/// Single-quotes a word for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Reads the settings the last healthy deploy or rollback left under `path`.
pub fn read(path: &Path) -> Result<Settings> {
    let file = settings_file(path);
    let bytes = fs::read(&file).map_err(Error::io("cannot read", &file))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "{} is not what pipewright wrote: {e}",
            file.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_quotes_its_paths() {
        let s = script(
            Path::new("/srv/it's"),
            Path::new("/srv/it's/.pipewright/bin/pw"),
        );
        assert!(
            s.contains(
                r"exec '/srv/it'\''s/.pipewright/bin/pw' deploy-host --path '/srv/it'\''s' "
            ),
            "{s}"
        );
    }
}
