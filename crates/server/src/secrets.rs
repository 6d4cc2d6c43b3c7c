//! Secrets at rest: sealed with ChaCha20-Poly1305 under a key kept in the data directory
//! (`secret.key`, made on first start, mode 0600) or given as `PIPEWRIGHT_SECRET_KEY` (64 hex
//! digits). The name and scope are bound to the ciphertext as associated data, so a sealed
//! value copied to another name or scope does not open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secret key: {0}")]
    Key(String),
    #[error("cannot read or write the key file {path}: {source}")]
    KeyFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("secret `{0}` does not open with this server's key")]
    Open(String),
    #[error("the operating system gave no random bytes: {0}")]
    Random(#[source] getrandom::Error),
    #[error("sealing failed")]
    Seal,
}

pub(crate) struct Sealer {
    cipher: ChaCha20Poly1305,
    /// The key of jobs' tokens, derived from the secret key (every server sharing the
    /// database has it, so a job's token holds on all of them).
    job_key: [u8; 32],
}

/// What starts a job's token (the rest: the job's id and a MAC).
pub(crate) const JOB_TOKEN_PREFIX: &str = "pwj_";

fn hmac(key: &[u8], data: &[u8]) -> Result<[u8; 32], SecretError> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| SecretError::Key("HMAC refused the key".into()))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// Random bytes from the operating system; never a fallback (a nonce of zeros, used twice,
/// would give the key away).
fn random_bytes<const N: usize>() -> Result<[u8; N], SecretError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(SecretError::Random)?;
    Ok(b)
}

fn aad(repo: &str, environment: &str, name: &str) -> Vec<u8> {
    format!("pipewright-secret\0{repo}\0{environment}\0{name}").into_bytes()
}

impl Sealer {
    /// The key from `PIPEWRIGHT_SECRET_KEY`, else the key file, created if missing.
    pub(crate) fn load(
        env_key: Option<&str>,
        key_file: &std::path::Path,
    ) -> Result<Sealer, SecretError> {
        let key: Vec<u8> = match env_key {
            Some(k) => hex::decode(k.trim()).map_err(|_| {
                SecretError::Key("PIPEWRIGHT_SECRET_KEY must be 64 hex digits".into())
            })?,
            None => match std::fs::read(key_file) {
                Ok(bytes) => hex::decode(String::from_utf8_lossy(&bytes).trim()).map_err(|_| {
                    SecretError::Key(format!("{} must hold 64 hex digits", key_file.display()))
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let k: [u8; 32] = random_bytes()?;
                    use std::io::Write;
                    use std::os::unix::fs::OpenOptionsExt;
                    let mut f = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(key_file)
                        .map_err(|source| SecretError::KeyFile {
                            path: key_file.to_owned(),
                            source,
                        })?;
                    f.write_all(hex::encode(k).as_bytes()).map_err(|source| {
                        SecretError::KeyFile {
                            path: key_file.to_owned(),
                            source,
                        }
                    })?;
                    k.to_vec()
                }
                Err(source) => {
                    return Err(SecretError::KeyFile {
                        path: key_file.to_owned(),
                        source,
                    });
                }
            },
        };
        if key.len() != 32 {
            return Err(SecretError::Key(
                "the key must be 32 bytes (64 hex digits)".into(),
            ));
        }
        Ok(Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
            job_key: hmac(&key, b"pipewright job tokens")?,
        })
    }

    /// The token of `job` while it holds `lease`: `pwj_<job>_<MAC of job and lease>`. A new
    /// lease (another attempt) makes another token; a job that is not running has none.
    pub(crate) fn job_token(&self, job: i64, lease: &str) -> Result<String, SecretError> {
        let mac = hmac(&self.job_key, format!("{job}\0{lease}").as_bytes())?;
        Ok(format!("{JOB_TOKEN_PREFIX}{job}_{}", hex::encode(mac)))
    }

    /// The job a token claims to be of (checked with [`Sealer::job_token`] against the job's
    /// lease).
    pub(crate) fn job_of_token(token: &str) -> Option<i64> {
        token
            .strip_prefix(JOB_TOKEN_PREFIX)?
            .split('_')
            .next()?
            .parse()
            .ok()
    }

    /// nonce (12 bytes) || ciphertext.
    pub(crate) fn seal(
        &self,
        repo: &str,
        environment: &str,
        name: &str,
        value: &str,
    ) -> Result<Vec<u8>, SecretError> {
        let nonce: [u8; 12] = random_bytes()?;
        let aad = aad(repo, environment, name);
        let ct = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend(ct);
        Ok(out)
    }

    pub(crate) fn open(
        &self,
        repo: &str,
        environment: &str,
        name: &str,
        sealed: &[u8],
    ) -> Result<String, SecretError> {
        if sealed.len() < 12 {
            return Err(SecretError::Open(name.to_owned()));
        }
        let (nonce, ct) = sealed.split_at(12);
        let aad = aad(repo, environment, name);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .map_err(|_| SecretError::Open(name.to_owned()))?;
        String::from_utf8(pt).map_err(|_| SecretError::Open(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let d = std::env::temp_dir().join(format!("pw-key-{}", std::process::id()));
        let _ = std::fs::remove_file(&d);
        let s = Sealer::load(None, &d).unwrap();
        let sealed = s.seal("acme/app", "production", "KEY", "v4lue").unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("v4lue"));
        assert_eq!(
            s.open("acme/app", "production", "KEY", &sealed).unwrap(),
            "v4lue"
        );
        assert!(s.open("acme/app", "staging", "KEY", &sealed).is_err());
        // The same key file opens it again.
        let s2 = Sealer::load(None, &d).unwrap();
        assert_eq!(
            s2.open("acme/app", "production", "KEY", &sealed).unwrap(),
            "v4lue"
        );
        let _ = std::fs::remove_file(&d);
    }
}
