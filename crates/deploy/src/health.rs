//! The health check: a plain HTTP/1.1 GET made on the host (like the seed's deploy script's
//! `curl`), repeated until it passes `successes` times in a row or the deadline passes.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::config::Health;

/// An `http://host[:port]/path` URL: all a health check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(s: &str) -> Option<Url> {
        let rest = s.strip_prefix("http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, p.parse().ok()?),
            _ => (authority, 80),
        };
        if host.is_empty() || host.contains(['@', ' ']) {
            return None;
        }
        Some(Url {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            path: path.to_owned(),
        })
    }
}

/// Replaces `${NAME}` with `lookup(NAME)` (the host's variables), leaving unknown ones.
pub fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        match rest[i + 2..].find('}') {
            Some(j) => {
                let name = &rest[i + 2..i + 2 + j];
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => out.push_str(&rest[i..i + 3 + j]),
                }
                rest = &rest[i + 3 + j..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// One GET: `Ok(())` if the status and body are as expected, else why not.
pub fn probe(h: &Health) -> Result<(), String> {
    let url = Url::parse(&h.url).ok_or_else(|| format!("bad URL {}", h.url))?;
    let timeout = Duration::from_millis(h.timeout_ms.max(1));
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", h.url))?
        .next()
        .ok_or_else(|| format!("{}: no address", h.url))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("{}: {e}", h.url))?;
    let started = Instant::now();
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nConnection: close\r\nUser-Agent: pipewright\r\n\r\n",
        url.path, url.host, url.port
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("{}: {e}", h.url))?;
    let mut body = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if started.elapsed() > timeout {
            return Err(format!("{}: timed out", h.url));
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                body.extend_from_slice(&buf[..n]);
                if body.len() > 1 << 20 {
                    break;
                }
            }
            Err(e) => return Err(format!("{}: {e}", h.url)),
        }
    }
    let text = String::from_utf8_lossy(&body);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{}: not an HTTP response", h.url))?;
    if status != h.expect_status {
        return Err(format!(
            "{}: status {status}, expected {}",
            h.url, h.expect_status
        ));
    }
    if let Some(needle) = &h.contains {
        let content = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        if !content.contains(needle.as_str()) {
            return Err(format!("{}: the body does not contain `{needle}`", h.url));
        }
    }
    Ok(())
}

/// Probes every `interval` until `successes` passes in a row, or fails at the deadline with
/// the last reason.
pub fn wait_healthy(h: &Health, mut progress: impl FnMut(&str)) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(h.deadline_ms);
    let mut in_a_row = 0;
    loop {
        match probe(h) {
            Ok(()) => {
                in_a_row += 1;
                if in_a_row >= h.successes {
                    return Ok(());
                }
            }
            Err(why) => {
                in_a_row = 0;
                if Instant::now() >= deadline {
                    return Err(format!(
                        "not healthy after {:.1}s: {why}",
                        h.deadline_ms as f64 / 1e3
                    ));
                }
                progress(&why);
            }
        }
        std::thread::sleep(Duration::from_millis(h.interval_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_in_urls() {
        let env = |k: &str| (k == "PORT").then(|| "8001".to_owned());
        assert_eq!(expand("http://h:${PORT}/x", &env), "http://h:8001/x");
        assert_eq!(expand("${NOPE}/${PORT", &env), "${NOPE}/${PORT");
    }

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8000/health").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8000, "/health")
        );
        let u = Url::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(Url::parse("https://x/").is_none());
        assert!(Url::parse("http://:80/").is_none());
    }
}
