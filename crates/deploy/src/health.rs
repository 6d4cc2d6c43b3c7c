//! The health check: an HTTP GET made on the host (like the seed's deploy script's `curl`),
//! repeated until it passes `successes` times in a row or the deadline passes.
//!
//! `reqwest`'s blocking client: the agent is a plain process without an async runtime. (A
//! blocking client must not be built or dropped inside one; the deployer, which the engine
//! runs on a blocking thread, never checks health itself: its agent on the host does.)

use std::io::Read;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::blocking::Client;

use crate::config::Health;

/// The most of a response's body that is searched for `contains`.
const BODY_LIMIT: u64 = 1 << 20;

/// Why a health check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("bad URL {url}")]
    BadUrl { url: String },
    #[error("cannot make an HTTP client: {reason}")]
    Client { reason: String },
    /// No answer: refused, unreachable, timed out, not HTTP.
    #[error("{url}: {reason}")]
    Request { url: String, reason: String },
    #[error("{url}: status {status}, expected {expected}")]
    Status {
        url: String,
        status: u16,
        expected: u16,
    },
    #[error("{url}: the body does not contain `{needle}`")]
    Body { url: String, needle: String },
    #[error("not healthy after {:.1}s: {last}", *.after_ms as f64 / 1e3)]
    NotHealthy {
        after_ms: u64,
        last: Box<HealthError>,
    },
}

/// `url` if a health check can request it: `http://host[:port][/path]`, without user
/// information. Only `http://`: the check is meant for the app's own port on its host.
pub fn check_url(url: &str) -> Result<Url, HealthError> {
    let bad = || HealthError::BadUrl {
        url: url.to_owned(),
    };
    let parsed = Url::parse(url).map_err(|_| bad())?;
    let has_host = parsed.host_str().is_some_and(|h| !h.is_empty());
    if parsed.scheme() != "http"
        || !has_host
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(bad());
    }
    Ok(parsed)
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

/// The client every probe of `h` uses: `timeout` for the whole request, no redirects
/// followed (a redirect is a status like any other), no proxy, and a new connection per
/// probe (each probe checks that the app accepts connections).
fn client(h: &Health) -> Result<Client, HealthError> {
    let timeout = Duration::from_millis(h.timeout_ms.max(1));
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .user_agent("pipewright")
        .build()
        .map_err(|e| HealthError::Client { reason: cause(&e) })
}

/// What went wrong, as its innermost cause says it ("Connection refused (os error 111)"):
/// reqwest's own message only repeats the URL.
fn cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut inner: &dyn std::error::Error = e;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// One GET: `Ok(())` if the status and body are as expected, else why not.
fn probe(client: &Client, url: &Url, h: &Health) -> Result<(), HealthError> {
    let failed = |e: &reqwest::Error| HealthError::Request {
        url: h.url.clone(),
        reason: cause(e),
    };
    let response = client.get(url.clone()).send().map_err(|e| failed(&e))?;
    let status = response.status().as_u16();
    if status != h.expect_status {
        return Err(HealthError::Status {
            url: h.url.clone(),
            status,
            expected: h.expect_status,
        });
    }
    if let Some(needle) = &h.contains {
        let mut body = Vec::new();
        response
            .take(BODY_LIMIT)
            .read_to_end(&mut body)
            .map_err(|e| match e.get_ref().and_then(|r| r.downcast_ref()) {
                Some(re) => failed(re),
                None => HealthError::Request {
                    url: h.url.clone(),
                    reason: e.to_string(),
                },
            })?;
        if !String::from_utf8_lossy(&body).contains(needle.as_str()) {
            return Err(HealthError::Body {
                url: h.url.clone(),
                needle: needle.clone(),
            });
        }
    }
    Ok(())
}

/// Probes every `interval` until `successes` passes in a row, or fails at the deadline with
/// the last reason.
pub fn wait_healthy(h: &Health, mut progress: impl FnMut(&HealthError)) -> Result<(), HealthError> {
    let url = check_url(&h.url)?;
    let client = client(h)?;
    let deadline = Instant::now() + Duration::from_millis(h.deadline_ms);
    let mut in_a_row = 0;
    loop {
        match probe(&client, &url, h) {
            Ok(()) => {
                in_a_row += 1;
                if in_a_row >= h.successes {
                    return Ok(());
                }
            }
            Err(why) => {
                in_a_row = 0;
                if Instant::now() >= deadline {
                    return Err(HealthError::NotHealthy {
                        after_ms: h.deadline_ms,
                        last: Box::new(why),
                    });
                }
                progress(&why);
            }
        }
        std::thread::sleep(Duration::from_millis(h.interval_ms));
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn variables_in_urls() {
        let env = |k: &str| (k == "PORT").then(|| "8001".to_owned());
        assert_eq!(expand("http://h:${PORT}/x", &env), "http://h:8001/x");
        assert_eq!(expand("${NOPE}/${PORT", &env), "${NOPE}/${PORT");
    }

    #[test]
    fn urls() {
        let u = check_url("http://127.0.0.1:8000/health").unwrap();
        assert_eq!(
            (u.host_str().unwrap(), u.port_or_known_default(), u.path()),
            ("127.0.0.1", Some(8000), "/health")
        );
        let u = check_url("http://localhost").unwrap();
        assert_eq!((u.port_or_known_default(), u.path()), (Some(80), "/"));
        assert!(check_url("http://[::1]:8000/").is_ok());
        for bad in [
            "https://x/",
            "http://:80/",
            "http://u:p@x/",
            "http://u@x/",
            "http://x:99999/",
            "http://a b/",
            "x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    /// A server answering each connection with `responses[i]` (the last one repeated).
    fn serve(responses: &'static [&'static str]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let r = responses[i.min(responses.len() - 1)];
                let _ = conn.write_all(r.as_bytes());
            }
        });
        format!("http://{addr}/health")
    }

    fn health(url: String) -> Health {
        Health {
            url,
            expect_status: 200,
            contains: Some("ok".into()),
            interval_ms: 10,
            timeout_ms: 1000,
            deadline_ms: 2000,
            successes: 2,
            monitor: crate::config::Watch::default(),
        }
    }

    #[test]
    fn a_check_passes_after_enough_good_answers_in_a_row() {
        let url = serve(&[
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nstarting",
            "HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}",
        ]);
        let mut seen = Vec::new();
        wait_healthy(&health(url.clone()), |e| seen.push(e.to_string())).unwrap();
        assert_eq!(
            seen,
            [
                format!("{url}: status 503, expected 200"),
                format!("{url}: the body does not contain `ok`"),
            ]
        );
    }

    #[test]
    fn redirects_are_not_followed_and_the_deadline_names_the_last_reason() {
        let url =
            serve(&["HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"]);
        let mut h = health(url.clone());
        h.deadline_ms = 100;
        let e = wait_healthy(&h, |_| {}).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("not healthy after 0.1s: {url}: status 302, expected 200")
        );
    }

    #[test]
    fn a_refused_connection_says_so() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        drop(listener);
        let mut h = health(url.clone());
        h.deadline_ms = 0;
        let e = wait_healthy(&h, |_| {}).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("not healthy after 0.0s: {url}: ")),
            "{e}"
        );
        assert!(e.ends_with(": Connection refused (os error 111)"), "{e}");
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let mut h = health(url.clone());
        h.timeout_ms = 200;
        h.deadline_ms = 0;
        let started = Instant::now();
        let e = wait_healthy(&h, |_| {}).unwrap_err().to_string();
        assert_eq!(e, format!("not healthy after 0.0s: {url}: timed out"));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
    }
}
