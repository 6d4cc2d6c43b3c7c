//! The broker's own calls to the Docker engine (what it checks and lists before answering
//! a job, what it removes after): one request each on a connection of its own, bounded in
//! time and in the size of the answer.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use super::{MAX_BODY, full};

/// Asks the engine at `engine` for `path` (`GET`): its answer's status and JSON, or `None`
/// when it does not answer within 10 seconds.
pub(crate) async fn engine_get(engine: &Path, path: &str) -> Option<(StatusCode, Value)> {
    engine_call(engine, hyper::Method::GET, path).await
}

/// Sends `method` `path` (no body) to the engine at `engine`: its answer's status and JSON,
/// or `None` when it does not answer within 10 seconds.
pub(crate) async fn engine_call(
    engine: &Path,
    method: hyper::Method,
    path: &str,
) -> Option<(StatusCode, Value)> {
    engine_call_within(engine, method, path, MAX_BODY).await
}

/// [`engine_call`], reading up to `limit` bytes of the answer.
pub(crate) async fn engine_call_within(
    engine: &Path,
    method: hyper::Method,
    path: &str,
    limit: usize,
) -> Option<(StatusCode, Value)> {
    let ask = async {
        let stream = UnixStream::connect(engine).await.ok()?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .ok()?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "docker")
            .body(full(Bytes::new()))
            .ok()?;
        let response = sender.send_request(req).await.ok()?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .ok()?
            .to_bytes();
        Some((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), ask)
        .await
        .ok()
        .flatten()
}

/// Whether the engine has the image `reference` (any answer but "no such image" counts as
/// having it: the pull is refused when in doubt).
pub(crate) async fn engine_has_image(engine: &Path, reference: &str) -> bool {
    let encoded: String = form_urlencoded::byte_serialize(reference.as_bytes()).collect();
    engine_get(engine, &format!("/images/{encoded}/json"))
        .await
        .is_none_or(|(status, _)| status != StatusCode::NOT_FOUND)
}
