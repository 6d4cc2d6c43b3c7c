//! `webfactory/ssh-agent`: starts an `ssh-agent` for the job, loads the given private keys into
//! it, exports `SSH_AUTH_SOCK` and `SSH_AGENT_PID` to later steps, and stops it after the job.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use super::{ActionError, Call, Post, register_post};
use crate::job::{JobState, PostCondition};
use crate::sink::Line;

pub(super) async fn run(state: &mut JobState<'_>, call: &Call<'_>) -> Result<(), ActionError> {
    let keys = call.required("ssh-private-key")?;
    let sock = state
        .temp
        .join(format!("ssh-agent-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let out = tokio::process::Command::new("ssh-agent")
        .arg("-s")
        .arg("-a")
        .arg(&sock)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| ActionError::io("cannot start ssh-agent (is OpenSSH installed?)", e))?;
    if !out.status.success() {
        return Err(ActionError::Failed(format!(
            "ssh-agent failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text
        .split(';')
        .find_map(|part| part.trim().strip_prefix("SSH_AGENT_PID="))
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or_else(|| ActionError::Failed(format!("cannot read ssh-agent's output: {text}")))?;
    register_post(
        state,
        "Stop ssh-agent".into(),
        Post::KillAgent(pid),
        PostCondition::Always,
    );
    // Each key block is added separately, as the action does.
    let mut added = 0;
    for key in split_keys(&keys) {
        let mut child = tokio::process::Command::new("ssh-add")
            .arg("-")
            .env("SSH_AUTH_SOCK", &sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| ActionError::io("ssh-add", e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(key.as_bytes())
                .await
                .map_err(|e| ActionError::io("ssh-add", e))?;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| ActionError::io("ssh-add", e))?;
        if !out.status.success() {
            return Err(ActionError::Failed(format!(
                "ssh-add refused a key: {}",
                state
                    .run
                    .masker()
                    .mask(String::from_utf8_lossy(&out.stderr).trim())
            )));
        }
        added += 1;
    }
    call.set_env("SSH_AUTH_SOCK", &sock.display().to_string())?;
    call.set_env("SSH_AGENT_PID", &pid.to_string())?;
    state.log(Line::Output(format!(
        "ssh-agent started (pid {pid}), {added} key(s) added"
    )));
    Ok(())
}

/// Splits several PEM/OpenSSH private keys pasted one after another.
fn split_keys(text: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        if line.contains("-----BEGIN") && !cur.trim().is_empty() {
            keys.push(std::mem::take(&mut cur));
        }
        cur.push_str(line.trim_end());
        cur.push('\n');
    }
    if !cur.trim().is_empty() {
        keys.push(cur);
    }
    keys
}
