//! The node's one HTTP server: `/metrics` (Prometheus text), `/healthz` (the process is up)
//! and `/readyz` (the node can serve: 200 or 503 with the reasons).

use std::future::Future;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether the node is ready to serve traffic, and if not, why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Readiness {
    /// True when the node serves traffic.
    pub ready: bool,
    /// Human-readable reasons it is not ready (for example "no raft leader").
    pub reasons: Vec<String>,
}

impl Readiness {
    /// Ready, no reasons.
    pub fn ready() -> Self {
        Readiness {
            ready: true,
            reasons: Vec::new(),
        }
    }

    /// Not ready, for these reasons.
    pub fn not_ready<S: Into<String>>(reasons: impl IntoIterator<Item = S>) -> Self {
        Readiness {
            ready: false,
            reasons: reasons.into_iter().map(Into::into).collect(),
        }
    }
}

/// What the handlers read: the metrics handle and the current readiness.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the recorder for `/metrics`.
    pub metrics: PrometheusHandle,
    /// The latest readiness; the agent owns the sender.
    pub ready: watch::Receiver<Readiness>,
    /// Runs before each `/metrics` render (gauges read on demand, e.g. the config digest).
    pub on_scrape: Option<std::sync::Arc<dyn Fn() + Send + Sync>>,
}

/// The routes, for embedding or testing without a socket.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .with_state(state)
}

/// Serves the routes on `listener` until `shutdown` completes, then finishes in-flight
/// requests and returns.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = crate::idle::IdleListener {
        listener,
        limit: crate::idle::HTTP_IDLE,
    };
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn metrics(State(state): State<HttpState>) -> impl IntoResponse {
    if let Some(f) = &state.on_scrape {
        f();
    }
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        crate::metrics::render(&state.metrics),
    )
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<HttpState>) -> (StatusCode, String) {
    let readiness = state.ready.borrow().clone();
    if readiness.ready {
        return (StatusCode::OK, "ready".to_string());
    }
    let mut body = if readiness.reasons.is_empty() {
        "not ready".to_string()
    } else {
        readiness.reasons.join("\n")
    };
    body.push('\n');
    (StatusCode::SERVICE_UNAVAILABLE, body)
}

async fn not_found() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "not found\n")
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct Reply {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A minimal HTTP/1.1 client: one request per connection.
    async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("receive");
        let text = String::from_utf8(raw).expect("utf-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("header end");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line `{status_line}`"));
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        let reply = Reply {
            status,
            headers,
            body: body.to_string(),
        };
        assert_ne!(
            reply.header("transfer-encoding"),
            Some("chunked"),
            "bodies have a length"
        );
        reply
    }

    async fn start(
        ready: Readiness,
    ) -> (
        SocketAddr,
        watch::Sender<Readiness>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let recorder = crate::metrics::builder().expect("builder").build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("herald_http_test_total").increment(1);
        });
        let (ready_tx, ready_rx) = watch::channel(ready);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = HttpState {
            metrics: handle,
            ready: ready_rx,
            on_scrape: None,
        };
        let server = tokio::spawn(serve(listener, state, async move {
            let _ = stop_rx.await;
        }));
        (addr, ready_tx, stop_tx, server)
    }

    #[tokio::test]
    async fn paths_and_status_codes() {
        let (addr, _ready, stop, server) = start(Readiness::ready()).await;

        let r = request(addr, "GET", "/metrics").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some(METRICS_CONTENT_TYPE));
        assert!(r.body.contains("herald_http_test_total 1\n"), "{}", r.body);
        assert!(r.body.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(r.body.contains("herald_build_info{version="));

        let r = request(addr, "GET", "/healthz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let r = request(addr, "GET", "/readyz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ready"));
        for path in ["/", "/metricsx", "/healthz/extra", "/admin"] {
            assert_eq!(request(addr, "GET", path).await.status, 404, "{path}");
        }
        assert_eq!(request(addr, "POST", "/metrics").await.status, 405);

        stop.send(()).expect("server still running");
        server.await.expect("join").expect("clean shutdown");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "listener closed"
        );
    }

    #[tokio::test]
    async fn readiness_transitions() {
        let (addr, ready, stop, server) = start(Readiness::not_ready([
            "no raft leader",
            "config not applied",
        ]))
        .await;
        let r = request(addr, "GET", "/readyz").await;
        assert_eq!(r.status, 503);
        assert_eq!(r.body, "no raft leader\nconfig not applied\n");
        // healthz stays 200 while not ready
        assert_eq!(request(addr, "GET", "/healthz").await.status, 200);

        ready.send_replace(Readiness::not_ready(Vec::<String>::new()));
        let r = request(addr, "GET", "/readyz").await;
        assert_eq!((r.status, r.body.as_str()), (503, "not ready\n"));

        ready.send_replace(Readiness::ready());
        let r = request(addr, "GET", "/readyz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ready"));

        ready.send_replace(Readiness::not_ready(["shutting down"]));
        assert_eq!(request(addr, "GET", "/readyz").await.status, 503);
        stop.send(()).expect("server still running");
        server.await.expect("join").expect("clean shutdown");
    }

    /// The agent runs everything on an actix-rt System (current thread, inside a LocalSet).
    #[actix_rt::test]
    async fn serves_inside_actix_runtime() {
        let (addr, _ready, stop, server) = start(Readiness::ready()).await;
        let r = request(addr, "GET", "/healthz").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
        let recorder = crate::metrics::builder().expect("builder").build_recorder();
        let upkeep = crate::metrics::spawn_upkeep(recorder.handle());
        upkeep.abort();
        stop.send(()).expect("server still running");
        server.await.expect("join").expect("clean shutdown");
    }
}
