//! The promotion-decision route, health, metrics and the shared body-reading rules
//! (content type, size, slow clients); no route here decides anything itself.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::errors::{json_response, ApiError, Internal};
use super::Server;
use crate::evaluator::SignedDecision;
use crate::request::{parse_strict, PromotionRequest};

/// Route label for `/v1/promotions/evaluate`.
const ROUTE_EVALUATE: &str = "evaluate";

/// The decision-log `path` of a promotion decision (OPA's: the rule queried).
const ROUTE_EVALUATE_PATH: &str = "promo/decision";

/// Whether `?pretty` / `?pretty=true` was given (OPA's boolean query parameters).
pub(super) fn pretty(uri: &Uri) -> bool {
    uri.query().is_some_and(|q| {
        q.split('&').any(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            k == "pretty" && (v.is_empty() || v.eq_ignore_ascii_case("true"))
        })
    })
}

/// Refuse a body declared as something other than JSON, or compressed. No
/// `Content-Type` is accepted (OPA accepts it too); `application/json` and any
/// `application/*+json` are.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let found = String::from_utf8_lossy(encoding.as_bytes())
            .trim()
            .to_string();
        if !found.eq_ignore_ascii_case("identity") {
            return Err(ApiError::ContentEncoding { found });
        }
    }
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let found = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let mime = found
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let is_json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::ContentType { found })
    }
}

/// Read a whole JSON body under the route's size limit (set by `DefaultBodyLimit` on the
/// route) and the slow-client budget.
pub(super) async fn read_body(
    server: &Server,
    req: Request,
    limit: usize,
) -> Result<Body, ApiError> {
    check_content_type(req.headers())?;
    // Reserve the body's share of the in-flight budget before reading a byte: the
    // declared length when there is one within the limit, else the limit.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let reserve = declared.filter(|&n| n <= limit).unwrap_or(limit);
    let budget = &server.inner.body_budget;
    let kib = (reserve.div_ceil(1024)).clamp(1, budget_permits(server)) as u32;
    let permit = match tokio::time::timeout(
        super::BODY_BUDGET_WAIT,
        Arc::clone(budget).acquire_many_owned(kib),
    )
    .await
    {
        Ok(Ok(permit)) => permit,
        _ => {
            return Err(ApiError::BodyBudget {
                budget: server.config().limits.max_body_bytes_in_flight,
            })
        }
    };
    let timeout = server.config().limits.body_read_timeout;
    match tokio::time::timeout(timeout, Bytes::from_request(req, &())).await {
        Ok(Ok(bytes)) => Ok(Body {
            bytes,
            _budget: permit,
        }),
        Ok(Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)))) => {
            Err(ApiError::TooLarge { limit })
        }
        Ok(Err(other)) => Err(ApiError::Body(other)),
        Err(_elapsed) => Err(ApiError::BodyTimeout { budget: timeout }),
    }
}

/// The whole budget, in KiB permits (a body never asks for more than exists).
fn budget_permits(server: &Server) -> usize {
    (server.config().limits.max_body_bytes_in_flight / 1024).max(1)
}

/// A request body read within the in-flight budget; its share is released when this is
/// dropped, after the handler has parsed it.
pub(super) struct Body {
    bytes: Bytes,
    _budget: tokio::sync::OwnedSemaphorePermit,
}

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Count an error on `route` and turn it into its response.
pub(super) fn fail(server: &Server, route: &str, error: ApiError) -> Response {
    server.metrics().error(route, error.metric_cause());
    if error.status().is_server_error() {
        tracing::warn!(route, error = %error, "request failed");
    } else {
        tracing::debug!(route, error = %error, "request refused");
    }
    error.into_response()
}

/// The handler for the methods a route does not have, on every route (OPA Data API,
/// promotions, admission): 405 with `Allow` and the `{"code", "message"}` body of every
/// other error (OPA itself sends the 405 without a body), counted on `route`.
pub(super) fn wrong_method(
    route: &'static str,
    allow: &'static str,
) -> impl Fn(State<Server>, Method, Uri) -> std::future::Ready<Response> + Clone + Send + Sync + 'static
{
    move |State(server): State<Server>, method: Method, uri: Uri| {
        let error = ApiError::MethodNotAllowed {
            method: method.to_string(),
            path: uri.path().to_string(),
            allow,
        };
        std::future::ready(fail(&server, route, error))
    }
}

/// `POST /v1/promotions/evaluate`: a promotion request in, `{"decision", "envelope"}`
/// out, 200 whether allowed or denied (the verdict is in the body).
pub(super) async fn evaluate(State(server): State<Server>, req: Request) -> Response {
    let started = Instant::now();
    let pretty = pretty(req.uri());
    match decide(&server, req).await {
        Ok(signed) => {
            let loaded = server.loaded();
            let d = &signed.decision;
            let environment = loaded.environment_label(&d.to);
            let result = if d.allowed { "allow" } else { "deny" };
            let metrics = server.metrics();
            metrics.decision(ROUTE_EVALUATE, result, &environment);
            metrics.plugin_failures(d);
            metrics.promotion(d, &environment, loaded.engine.bundle().catalog());
            metrics.latency(ROUTE_EVALUATE, started.elapsed());
            tracing::info!(
                decision_id = %d.decision_id,
                request_id = %d.request_id,
                to = %d.to,
                allowed = d.allowed,
                trace_id = d.trace.as_ref().map_or("", |t| t.trace_id.as_str()),
                elapsed_us = started.elapsed().as_micros() as u64,
                "decision"
            );
            let traceparent = d.trace.as_ref().map(crate::trace::TraceRef::traceparent);
            // Serialised once, straight from the typed decision (no intermediate tree).
            let mut response = json_response(StatusCode::OK, &signed, pretty);
            if let Some(tp) = traceparent.and_then(|t| HeaderValue::from_str(&t).ok()) {
                response.headers_mut().insert("traceparent", tp);
            }
            response
        }
        Err(e) => fail(&server, ROUTE_EVALUATE, e),
    }
}

async fn decide(server: &Server, req: Request) -> Result<SignedDecision, ApiError> {
    // W3C trace context: an invalid header is ignored (the specification's rule), and
    // the decision then carries the request's own `trace`, if any.
    let trace = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| crate::trace::TraceRef::from_traceparent(v).ok());
    let body = read_body(server, req, super::MAX_REQUEST_BODY_BYTES).await?;
    let request = PromotionRequest::from_value(parse_strict(&body)?)?;
    let loaded = server.loaded();
    let now = server.config().clock.now();
    let audit = server.inner.audit.as_ref();
    let record_options = audit.map(|a| a.options().clone());
    let log_options = server.decision_log_options();
    let (signed, record, event) = server
        .inner
        .gate
        .run(move || {
            let signed = loaded.with_evaluator(|ev| {
                let mut evaluation = ev.evaluate(&request, now);
                if trace.is_some() {
                    evaluation.decision.trace = trace;
                }
                ev.engine().sign(&evaluation)
            })?;
            // Masking and serialising the record is CPU work: done here, off the runtime.
            let record = record_options
                .map(|o| o.prepare(&signed.decision, &signed.envelope, &request.raw))
                .transpose()
                .map_err(|e| ApiError::Internal(Internal::Record(e)))?;
            let event = log_options.map(|(input, labels)| {
                let input = input.masked(&request.raw).map(|(v, _)| v);
                super::decision_log::event(&signed, input.as_ref(), ROUTE_EVALUATE_PATH, &labels)
            });
            Ok::<_, ApiError>((signed, record, event))
        })
        .await??;
    // INVARIANT: with an audit log, a decision leaves only once it is committed there.
    if let (Some(sink), Some(record)) = (audit, record) {
        sink.record(record).await?;
    }
    // Shipped only once recorded (when there is an audit log): the collector never sees a
    // decision the log does not hold.
    if let (Some(log), Some(event)) = (&server.inner.decision_log, event) {
        log.log(&event);
    }
    Ok(signed)
}

/// Middleware: count every request in flight (`promo_requests_in_flight`).
pub(super) async fn track_in_flight(
    State(server): State<Server>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let _in_flight = server.metrics().in_flight();
    next.run(req).await
}

/// `GET /health`: OPA's health check, `200 {}` when the bundle (and its plugins) are
/// loaded. The sidecar cannot run without a loaded engine (startup fails, a failed
/// reload keeps the old one), so this is 200 while the process serves; a failed reload
/// is reported in the body, next to the digest still serving.
pub(super) async fn health(State(server): State<Server>) -> Response {
    let mut body = match server.reload_failure() {
        None => json!({}),
        Some(failure) => json!({
            "reload": {
                "ok": false,
                "at": failure.at,
                "error": failure.reason,
                "serving": {"sha256": server.loaded().engine.bundle().digest().hex()},
            }
        }),
    };
    if let Some(state) = &server.inner.bundle_poll {
        let loaded = server.loaded();
        let bundle = loaded.engine.bundle();
        body["bundle"] = json!({
            "revision": bundle.revision(),
            "digest": {"sha256": bundle.digest().hex()},
            "signedBy": bundle.signed_by(),
            "source": state.snapshot(),
        });
    }
    json_response(StatusCode::OK, &body, false)
}

/// `GET /health/live`: the process answers.
pub(super) async fn live() -> Response {
    json_response(StatusCode::OK, &json!({}), false)
}

/// `GET /health/ready`: 200 while taking work, 503 once shutdown has begun so load
/// balancers stop sending requests while in-flight ones finish.
pub(super) async fn ready(State(server): State<Server>) -> Response {
    if server.is_draining() {
        let mut response = json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"code": "unavailable", "message": "shutting down"}),
            false,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(super::RETRY_AFTER_SECS),
        );
        return response;
    }
    json_response(StatusCode::OK, &json!({}), false)
}

/// `GET /metrics`: Prometheus/OpenMetrics text.
pub(super) async fn metrics(State(server): State<Server>) -> Response {
    match server.metrics().encode() {
        Ok(text) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::Internal(Internal::Metrics(e)).into_response(),
    }
}

/// Any other path: 404 in OPA's error shape.
pub(super) async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::NotFound(format!("no route for `{method} {}`", uri.path())).into_response()
}

/// Parse a body as strict JSON and require an object.
pub(super) fn parse_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match parse_strict(body)? {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::Invalid {
            pointer: String::new(),
            message: format!(
                "the body must be a JSON object, got {}",
                super::opa::type_name(&other)
            ),
        }),
    }
}

/// The canonical form of a request path, as OPA's router (gorilla/mux with path cleaning
/// and strict slashes) computes it: empty and `.` segments dropped, `..` resolved, no
/// trailing slash; `None` when the path is canonical already.
pub(super) fn canonical_path(path: &str) -> Option<String> {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let canonical = format!("/{}", segments.join("/"));
    (canonical != path).then_some(canonical)
}

/// Answer a non-canonical path (`/v1/policies/`, `/v1//data`) with `301 Moved
/// Permanently` to the canonical one, query kept, as OPA does; every other request
/// passes through.
pub(super) async fn canonicalise(req: Request, next: axum::middleware::Next) -> Response {
    let Some(path) = canonical_path(req.uri().path()) else {
        return next.run(req).await;
    };
    let location = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    match HeaderValue::from_str(&location) {
        Ok(value) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, value)]).into_response(),
        Err(_) => ApiError::NotFound(req.uri().path().to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_path;

    #[test]
    fn paths_canonicalise_like_opa() {
        assert_eq!(
            canonical_path("/v1/policies/").as_deref(),
            Some("/v1/policies")
        );
        assert_eq!(
            canonical_path("/v1//data///x").as_deref(),
            Some("/v1/data/x")
        );
        assert_eq!(
            canonical_path("/v1/data/./a/../b").as_deref(),
            Some("/v1/data/b")
        );
        assert_eq!(canonical_path("/../.."), Some("/".to_string()));
        assert_eq!(canonical_path("/v1/data/promo/decision"), None);
        assert_eq!(canonical_path("/"), None);
    }
}
