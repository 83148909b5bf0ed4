//! The HTTP admin listener (`--http-listen`): `/metrics` for Prometheus, `/healthz` and
//! `/readyz` for probes that cannot speak gRPC, and a live dashboard at `/` with the JSON
//! endpoints it reads (`/api/…`). The only module that knows HTTP (axum); it reads the
//! service's state and never changes it.
//!
//! TLS and the admin token are the gRPC listener's: with `--tls-cert` this listener speaks TLS
//! too (and asks for client certificates with `--tls-client-ca`); `/api/…` answers only with
//! `authorization: Bearer <admin token>` (the scheme in any case), since its rows name clients. `/metrics` carries no
//! client key (labels are rules, tiers, reasons) and the probes nothing, so they are open, as
//! envoyproxy/ratelimit's and Limitador's are.

mod assets;
mod dashboard;
pub mod guard;
pub mod metrics;
pub mod tls;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::service::database::DatabaseError;
use crate::service::handles::Handles;

/// What the listener reads: the service's handle bundle.
type Shared = Arc<Handles>;

/// Why an `/api/…` call failed; the status is chosen here, once.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A bad query parameter: 400, naming it.
    #[error("{0}")]
    BadRequest(String),
    /// No or a wrong token: 401.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// The database is down or failed: 503, the panel shows it and tries again on its next refresh.
    #[error("the history is unavailable: {0}")]
    Database(#[from] DatabaseError),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Database(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = axum::Json(serde_json::json!({ "error": self.to_string() }));
        (status, body).into_response()
    }
}

type ApiResult = Result<axum::Json<serde_json::Value>, HttpError>;

/// Every route.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/api/overview", get(dashboard::overview))
        .route("/api/timeline", get(dashboard::timeline))
        .route("/api/buckets", get(dashboard::buckets))
        .route("/api/forecasts", get(dashboard::forecasts))
        .route("/api/anomalies", get(dashboard::anomalies))
        .route("/api/changes", get(dashboard::changes))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/", get(assets::index))
        .route("/assets/{name}", get(assets::file))
        .merge(api)
        .layer(middleware::map_response(security_headers))
        .with_state(state)
}

/// What every response tells the browser: run only this origin's scripts (none inline), load
/// nothing from elsewhere, never be framed (clickjacking), never sniff a type, send no referrer.
/// Styles may be inline: the charting library sizes its elements with style attributes.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; font-src 'self'; connect-src 'self'; base-uri 'none'; \
             form-action 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn require_token(
    State(s): State<Shared>,
    request: Request,
    next: Next,
) -> Result<Response, HttpError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok());
    s.admin.accepts(header).map_err(HttpError::Unauthorized)?;
    Ok(next.run(request).await)
}

async fn metrics_text(State(s): State<Shared>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(metrics::CONTENT_TYPE),
    );
    (headers, metrics::render(&s)).into_response()
}

/// 200 once the rules are loaded (what gRPC health calls SERVING), else 503; the body says what
/// is and is not ready either way.
async fn readyz(State(s): State<Shared>) -> Response {
    let ready = *s.ready.borrow();
    let status = if ready.rules_loaded {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": ready.rules_loaded,
        "rules_loaded": ready.rules_loaded,
        "lstm_loaded": ready.lstm_loaded,
        "shared_counters": ready.shared_counters,
        "fleet_learning": ready.fleet_learning,
    });
    (status, axum::Json(body)).into_response()
}

/// Serves until `shutdown` completes, then lets calls in flight finish. Connections are capped
/// and must send their request heads in time (`guard`).
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: guard::HttpLimits,
    state: Shared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    match tls {
        Some(config) => {
            let listener = guard::Guarded::new(tls::TlsListener::new(listener, config)?, limits);
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                // Dashboards poll every few seconds: small replies, no batching delay.
                let _ = tcp.set_nodelay(true);
            });
            axum::serve(guard::Guarded::new(listener, limits), app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    }
}

/// How long the dashboard's page waits between refreshes (the page reads it from here).
pub const REFRESH: Duration = Duration::from_secs(5);
