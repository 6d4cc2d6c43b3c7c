//! Accepting connections with limits: at most `max_connections` at once (the rest wait in
//! the listen backlog, and the server says once a minute that the limit was reached), and a
//! connection that is idle for `idle_timeout` is closed: idle meaning no request being
//! answered and no byte read or written (a new connection that sends nothing, a client that
//! dribbles a request head, a kept-alive connection between requests). A request being
//! answered (a long poll, a followed log) keeps its connection. So idle or slow clients
//! cannot hold the server's file descriptors.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_connections: usize,
    pub(crate) idle_timeout: Duration,
}

/// How long open connections get to finish their requests once the server stops.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop`, then lets open connections finish what they
/// are doing (for at most [`DRAIN`]).
pub(crate) async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_warning: Option<tokio::time::Instant> = None;
    // HTTP/1 only (what the CLI, runners and forges speak): telling HTTP/2 apart would mean
    // waiting for the first bytes.
    let builder = Arc::new(hyper::server::conn::http1::Builder::new());
    let epoch = tokio::time::Instant::now();
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if last_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "the connection limit is reached: new connections wait until one closes"
                    );
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    () = stop.cancelled() => break,
                }
            }
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = stop.cancelled() => break,
        };
        let (tcp, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was taken: wait
                // a little rather than spin.
                tracing::warn!("accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // No Nagle: a small write after another (an SSE event, a long poll's answer) would
        // wait for the peer's delayed acknowledgement, up to 40 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("TCP_NODELAY: {e}");
        }
        let activity = Arc::new(Activity {
            epoch,
            last_ms: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
        });
        activity.touch();
        let io = TokioIo::new(Watched {
            inner: tcp,
            activity: activity.clone(),
        });
        let service = TowerToHyperService::new(Busy {
            inner: app.clone(),
            activity: activity.clone(),
        });
        let (builder, stop) = (builder.clone(), stop.clone());
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let conn = builder.serve_connection(io, service).with_upgrades();
            tokio::pin!(conn);
            let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
            loop {
                tokio::select! {
                    _ = conn.as_mut() => break,
                    _ = tick.tick() => {
                        if activity.idle_for() >= idle {
                            // Dropping the connection closes it.
                            break;
                        }
                    }
                    () = stop.cancelled() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = tokio::time::timeout(DRAIN, conn.as_mut()).await;
                        break;
                    }
                }
            }
            drop(permit);
        });
    }
    // Wait for the connections to end (each has at most DRAIN once told to stop).
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN + Duration::from_secs(1), slots.acquire_many(all)).await;
}

/// What a connection did last, and whether it is answering a request.
struct Activity {
    epoch: tokio::time::Instant,
    last_ms: AtomicU64,
    busy: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the connection has been idle (zero while a request is being answered).
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// A stream that notes each byte read or written as activity.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router, counting the requests of its connection being answered.
#[derive(Clone)]
struct Busy {
    inner: axum::Router,
    activity: Arc<Activity>,
}

/// Ends a request's count when its answer is made (or given up).
struct Answering(Arc<Activity>);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

impl<B> tower::Service<axum::http::Request<B>> for Busy
where
    B: axum::body::HttpBody<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        tower::Service::<axum::http::Request<B>>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, req: axum::http::Request<B>) -> Self::Future {
        self.activity.busy.fetch_add(1, Ordering::Relaxed);
        let answering = Answering(self.activity.clone());
        let future = self.inner.call(req.map(axum::body::Body::new));
        Box::pin(async move {
            let response = future.await;
            drop(answering);
            response
        })
    }
}
