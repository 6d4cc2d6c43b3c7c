//! UPLOAD: the release the deployer streams, received into `releases/<id>.partial` and
//! renamed into place once every file matches the manifest.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::Steps;
use crate::error::{Error, Result};
use crate::manifest::{self, Entry, Manifest};
use crate::protocol::{Event, Upload, recv};

impl<R: BufRead, W: Write> Steps<'_, R, W> {
    /// Receives the release into `releases/<id>.partial`, hard-linking files that an earlier
    /// release already has, verifies every received file against the manifest and renames
    /// the directory into place.
    pub(super) fn upload(&mut self, id: &str) -> Result<()> {
        let partial = self.layout.partial(id);
        fs::create_dir_all(&partial).map_err(Error::io("cannot create", &partial))?;
        let manifest = match recv::<Upload>(&mut self.ch.input) {
            Ok(Some(Upload::Manifest { manifest })) => manifest,
            Ok(None) => return Err(Error::Disconnected),
            Ok(Some(_)) => return Err(Error::Protocol("expected the manifest".into())),
            Err(e) => return Err(Error::Protocol(e.to_string())),
        };
        // Files of earlier releases by content, the current release first.
        let mut known: HashMap<(String, u32), PathBuf> = HashMap::new();
        let mut ids = self.layout.release_ids();
        if let Some(cur) = self.layout.current_id() {
            ids.retain(|i| *i != cur);
            ids.push(cur);
        }
        for rid in ids.iter().rev() {
            let dir = self.layout.release(rid);
            if let Some(m) = Manifest::read_from_release(&dir) {
                for e in m.entries {
                    if let Entry::File {
                        path, mode, hash, ..
                    } = e
                    {
                        known.entry((hash, mode)).or_insert_with(|| dir.join(path));
                    }
                }
            }
        }
        let mut need: HashMap<String, (String, u32)> = HashMap::new();
        let mut dirs = Vec::new();
        let mut linked = 0;
        for e in &manifest.entries {
            if !manifest::is_safe_path(e.path()) {
                return Err(Error::Protocol(format!("unsafe path `{}`", e.path())));
            }
            let dst = partial.join(e.path());
            match e {
                Entry::Dir { mode, .. } => {
                    fs::create_dir_all(&dst).map_err(Error::io("cannot create", &dst))?;
                    dirs.push((dst, *mode));
                }
                Entry::Symlink { target, .. } => {
                    std::os::unix::fs::symlink(target, &dst)
                        .map_err(Error::io("cannot create", &dst))?;
                }
                Entry::File {
                    path, mode, hash, ..
                } => {
                    if let Some(src) = known.get(&(hash.clone(), *mode))
                        && fs::hard_link(src, &dst).is_ok()
                    {
                        linked += 1;
                    } else {
                        need.insert(path.clone(), (hash.clone(), *mode));
                    }
                }
            }
        }
        let mut paths: Vec<String> = need.keys().cloned().collect();
        paths.sort();
        self.ch.emit(&Event::Need { paths, linked });
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match recv::<Upload>(&mut self.ch.input) {
                Ok(Some(Upload::File { path, size })) => {
                    let Some((hash, mode)) = need.remove(&path) else {
                        return Err(Error::Protocol(format!("unexpected file `{path}`")));
                    };
                    let dst = partial.join(&path);
                    let f = fs::File::create(&dst).map_err(Error::io("cannot create", &dst))?;
                    let mut w = BufWriter::with_capacity(1 << 16, f);
                    let mut h = blake3::Hasher::new();
                    let mut left = size;
                    while left > 0 {
                        let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
                        let n = self
                            .ch
                            .input
                            .read(&mut buf[..want])
                            .map_err(|_| Error::Disconnected)?;
                        if n == 0 {
                            return Err(Error::Disconnected);
                        }
                        h.update(&buf[..n]);
                        w.write_all(&buf[..n])
                            .map_err(Error::io("cannot write", &dst))?;
                        left -= n as u64;
                    }
                    let f = w.into_inner().map_err(|e| Error::Io {
                        what: "cannot write",
                        path: dst.clone(),
                        source: e.into_error(),
                    })?;
                    drop(f);
                    if h.finalize().to_hex().as_str() != hash {
                        return Err(Error::Checksum { path });
                    }
                    fs::set_permissions(&dst, fs::Permissions::from_mode(mode))
                        .map_err(Error::io("cannot set the mode of", &dst))?;
                }
                Ok(Some(Upload::Commit)) => break,
                Ok(Some(Upload::Manifest { .. })) => {
                    return Err(Error::Protocol("a second manifest".into()));
                }
                Ok(None) | Err(_) => return Err(Error::Disconnected),
            }
        }
        if let Some(missing) = need.keys().next() {
            return Err(Error::Protocol(format!("`{missing}` was never sent")));
        }
        for (d, mode) in dirs.iter().rev() {
            fs::set_permissions(d, fs::Permissions::from_mode(*mode))
                .map_err(Error::io("cannot set the mode of", d))?;
        }
        let mbytes = serde_json::to_vec(&manifest).unwrap_or_default();
        let mpath = partial.join(manifest::FILE_NAME);
        fs::write(&mpath, mbytes).map_err(Error::io("cannot write", &mpath))?;
        // One sync of the whole filesystem rather than one per file: the release must be on
        // disk before its name says it is complete.
        let dirf = fs::File::open(&partial).map_err(Error::io("cannot open", &partial))?;
        rustix::fs::syncfs(&dirf).map_err(|e| Error::Io {
            what: "cannot sync",
            path: partial.clone(),
            source: e.into(),
        })?;
        let dst = self.layout.release(id);
        fs::rename(&partial, &dst).map_err(Error::io("cannot rename", &dst))
    }
}
