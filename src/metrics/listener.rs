//! The optional `/metrics` endpoint (`[metrics] listen`): a minimal HTTP/1.1 responder on the
//! daemon's runtime that answers `GET /metrics` with [`super::render`] (OpenMetrics when the
//! `Accept` header asks for it, as Prometheus does, the text format otherwise) and closes the
//! connection.
//!
//! It is another client of the owner task, like the D-Bus service: it asks for the status
//! over the same request channel and reads the health from the same watch, so it holds no
//! state and cannot slow the owner down beyond one status request per scrape. Anyone who can
//! reach the port can scrape (Prometheus' own exporters work the same way): bind it to
//! loopback or a management address. Requests are read with a size limit and a deadline and
//! connections are capped, so a slow or hostile client cannot hold the daemon's descriptors
//! or memory.

use super::Format;
use crate::bus::{Health, Request};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};

/// A request head larger than this is refused: a scraper sends a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// A client that has not sent its request head or read the answer by then is dropped.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// Connections served at once; more wait in the kernel's accept queue.
const MAX_CONNECTIONS: usize = 8;

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen for metrics on {address}: {source}")]
pub struct ListenError {
    address: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// The endpoint, bound and serving on the runtime until dropped.
pub struct MetricsEndpoint {
    address: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsEndpoint {
    /// Binds `address` and serves scrapes from `requests` (the owner task) and `health`.
    pub async fn start(
        address: SocketAddr,
        requests: mpsc::Sender<Request>,
        health: watch::Receiver<Health>,
    ) -> Result<MetricsEndpoint, ListenError> {
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ListenError { address, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| ListenError { address, source })?;
        let task = tokio::spawn(serve(listener, requests, health));
        Ok(MetricsEndpoint { address, task })
    }

    /// Where it listens (with the port the kernel chose for port 0).
    pub fn address(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    requests: mpsc::Sender<Request>,
    health: watch::Receiver<Health>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning on the error.
                tracing::warn!("metrics endpoint: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let requests = requests.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _ =
                tokio::time::timeout(CONNECTION_DEADLINE, answer(stream, &requests, &health)).await;
        });
    }
}

/// Reads one request head and writes one response; errors just end the connection.
async fn answer(
    mut stream: TcpStream,
    requests: &mpsc::Sender<Request>,
    health: &watch::Receiver<Health>,
) -> std::io::Result<()> {
    let Some(head) = read_head(&mut stream).await? else {
        respond(&mut stream, "413 Content Too Large", "text/plain", b"").await?;
        // Closing with the rest of the request unread would reset the connection, and the
        // client could lose the answer before reading it: read it away first (a lingering
        // close), within the connection's deadline.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        return Ok(());
    };
    let response = match route(&head) {
        Route::Metrics => {
            let (reply, answer) = oneshot::channel();
            let status = match requests.send(Request::Status { reply }).await {
                Ok(()) => answer.await.ok(),
                Err(_) => None,
            };
            match status {
                Some(status) => {
                    let format = Format::negotiate(header(&head, b"accept"));
                    let body = super::render(&status, &health.borrow(), format);
                    return respond(
                        &mut stream,
                        "200 OK",
                        format.content_type(),
                        body.as_bytes(),
                    )
                    .await;
                }
                None => ("503 Service Unavailable", "the daemon is stopping\n"),
            }
        }
        Route::NotFound => ("404 Not Found", "banhound serves /metrics only\n"),
        Route::WrongMethod => ("405 Method Not Allowed", "only GET\n"),
        Route::Malformed => ("400 Bad Request", "not an HTTP/1 request\n"),
    };
    respond(&mut stream, response.0, "text/plain", response.1.as_bytes()).await
}

/// The request head up to its blank line, or `None` when it exceeds [`MAX_REQUEST_HEAD`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buffer = [0u8; 1024];
    loop {
        let n = stream.read(&mut buffer).await?;
        if n == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&buffer[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_REQUEST_HEAD {
            return Ok(None);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    WrongMethod,
    Malformed,
}

/// Where the request line of `head` goes. The query string is ignored, as exporters do
/// (Prometheus may add parameters).
fn route(head: &[u8]) -> Route {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::Malformed;
    };
    if !version.starts_with(b"HTTP/1.") {
        return Route::Malformed;
    }
    if method != b"GET" {
        return Route::WrongMethod;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// The value of the first header `name` (lower case) in `head`, empty when there is none.
fn header<'a>(head: &'a [u8], name: &[u8]) -> &'a [u8] {
    head.split(|&b| b == b'\n')
        .skip(1)
        .find_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            line[..colon]
                .eq_ignore_ascii_case(name)
                .then(|| line[colon + 1..].trim_ascii())
        })
        .unwrap_or_default()
}

async fn respond(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_by_name_in_any_case() {
        let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nACCEPT:  text/plain \r\n\r\n";
        assert_eq!(header(head, b"accept"), b"text/plain");
        assert_eq!(header(head, b"host"), b"x");
        assert_eq!(header(head, b"user-agent"), b"");
        // The request line is not a header, whatever it holds.
        assert_eq!(
            header(b"GET /accept:x HTTP/1.1\r\n\r\n", b"get /accept"),
            b""
        );
    }

    #[test]
    fn only_get_of_metrics_is_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"HEAD /metrics HTTP/1.1\r\n\r\n"), Route::WrongMethod);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"GET /metrics/../x HTTP/1.1\r\n\r\n"),
            Route::NotFound
        );
        assert_eq!(route(b"POST /metrics HTTP/1.1\r\n\r\n"), Route::WrongMethod);
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::Malformed);
        assert_eq!(route(b"\x00\xff garbage"), Route::Malformed);
        assert_eq!(route(b""), Route::Malformed);
    }
}
