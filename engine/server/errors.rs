//! HTTP errors in OPA's shape (`{"code", "message", "errors"}`) and the JSON response
//! helpers; bad input maps to a 4xx naming the field, never to a 5xx or an allow.

use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::policy::PolicyError;
use crate::request::RequestError;
use crate::sign::SignError;

/// Everything a route can answer instead of its result.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not acceptable JSON or breaks the request schema (400, or 413 when
    /// the parser's size limit was hit).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The body is JSON of the wrong shape for the route (400), at `pointer`.
    #[error("{message}")]
    Invalid {
        /// JSON pointer of the offending field (`""` = the whole body).
        pointer: String,
        /// What was expected.
        message: String,
    },
    /// The declared content type is not JSON (415).
    #[error("content type `{found}` is not JSON; send `application/json`")]
    ContentType {
        /// The `Content-Type` given.
        found: String,
    },
    /// The body is compressed (`Content-Encoding`), which the sidecar does not decode
    /// (415): decompressing is a budget of its own, and no OPA client needs it.
    #[error("content encoding `{found}` is not supported; send the body uncompressed")]
    ContentEncoding {
        /// The `Content-Encoding` given.
        found: String,
    },
    /// The body is larger than the route accepts (413).
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The client did not finish sending its body in time (408).
    #[error("the request body did not arrive within {} s", .budget.as_secs())]
    BodyTimeout {
        /// The budget.
        budget: Duration,
    },
    /// The body could not be read (400); axum's rejection, whose words say why.
    #[error("cannot read the request body: {0}")]
    Body(#[source] axum::extract::rejection::BytesRejection),
    /// A query parameter or query text is unusable (400).
    #[error("{0}")]
    Query(String),
    /// Too many evaluations in flight or queued (503 + Retry-After).
    #[error(
        "the sidecar is at capacity ({capacity} evaluations running or queued); retry shortly"
    )]
    Overloaded {
        /// Workers plus queue.
        capacity: usize,
    },
    /// Too many request bodies are being read at once (503 + Retry-After).
    #[error("the sidecar is reading {budget} bytes of request bodies already; retry shortly")]
    BodyBudget {
        /// The in-flight body budget.
        budget: usize,
    },
    /// The evaluation did not finish within its budget (503 + Retry-After).
    #[error("the evaluation did not finish within {} ms", .budget.as_millis())]
    EvaluationTimeout {
        /// The budget.
        budget: Duration,
    },
    /// The decision could not be recorded in the audit log, so it is not handed out
    /// (503 + Retry-After).
    #[error("the decision could not be recorded in the audit log, so it is withheld: {0}")]
    AuditUnavailable(#[source] super::audit::Unrecorded),
    /// The policy failed at runtime on valid input (500, as OPA answers).
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The decision could not be signed (500).
    #[error("cannot sign the decision: {0}")]
    Sign(#[from] SignError),
    /// A write to policies or data, all of which belong to the bundle on disk, the source
    /// of truth (400 `invalid_parameter`, as OPA answers a write to a bundle-owned path).
    #[error("{what} is owned by the bundle `promo` and read-only here: the bundle on disk is the source of truth (reload with SIGHUP or by changing the files)")]
    ReadOnly {
        /// What was to be written.
        what: &'static str,
    },
    /// A method the route does not have (405 with `Allow`; OPA sends no body).
    #[error("method `{method}` is not allowed on `{path}`; allowed: {allow}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The request path.
        path: String,
        /// The methods the route does accept.
        allow: &'static str,
    },
    /// A v0 Data API document is undefined (404).
    #[error("document `{path}` is undefined")]
    Undefined {
        /// The data path.
        path: String,
    },
    /// No such policy module or route (404).
    #[error("{0}")]
    NotFound(String),
    /// The route is switched off in this sidecar's configuration (403).
    #[error("{0}")]
    Disabled(String),
    /// Something broke inside the sidecar (500).
    #[error("internal error: {0}")]
    Internal(#[source] Internal),
}

/// What broke inside the sidecar (an [`ApiError::Internal`], 500).
#[derive(Debug, thiserror::Error)]
pub enum Internal {
    /// The evaluation workers' semaphore was closed.
    #[error("evaluation pool closed")]
    PoolClosed,
    /// The blocking evaluation task panicked or was cancelled.
    #[error("evaluation task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// The decision's audit record could not be made (a digest missing).
    #[error(transparent)]
    Record(crate::audit::AuditError),
    /// The metrics registry could not be written out.
    #[error("cannot encode metrics: {0}")]
    Metrics(#[source] std::fmt::Error),
    /// A query's bindings did not serialise.
    #[error(transparent)]
    Bindings(serde_json::Error),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Request(RequestError::TooLarge { .. }) | ApiError::TooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::Request(_)
            | ApiError::Invalid { .. }
            | ApiError::Body(_)
            | ApiError::Query(_)
            | ApiError::ReadOnly { .. } => StatusCode::BAD_REQUEST,
            ApiError::ContentType { .. } | ApiError::ContentEncoding { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Overloaded { .. }
            | ApiError::BodyBudget { .. }
            | ApiError::EvaluationTimeout { .. }
            | ApiError::AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Undefined { .. } | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Disabled(_) => StatusCode::FORBIDDEN,
            ApiError::Policy(_) | ApiError::Sign(_) | ApiError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// OPA's error code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Request(_)
            | ApiError::Invalid { .. }
            | ApiError::Body(_)
            | ApiError::Query(_)
            | ApiError::ReadOnly { .. }
            | ApiError::ContentType { .. }
            | ApiError::ContentEncoding { .. }
            | ApiError::TooLarge { .. }
            | ApiError::BodyTimeout { .. } => "invalid_parameter",
            ApiError::Overloaded { .. }
            | ApiError::BodyBudget { .. }
            | ApiError::EvaluationTimeout { .. }
            | ApiError::AuditUnavailable(_) => "unavailable",
            ApiError::MethodNotAllowed { .. } => "invalid_operation",
            ApiError::Undefined { .. } => "undefined_document",
            ApiError::NotFound(_) => "resource_not_found",
            ApiError::Disabled(_) => "unauthorized",
            ApiError::Policy(_) | ApiError::Sign(_) | ApiError::Internal(_) => "internal_error",
        }
    }

    /// A short label for the `promo_request_errors_total` metric.
    pub fn metric_cause(&self) -> &'static str {
        match self {
            ApiError::Request(RequestError::Malformed { .. }) => "malformed_json",
            ApiError::Request(RequestError::Schema(_)) => "schema",
            ApiError::Request(RequestError::TooLarge { .. }) | ApiError::TooLarge { .. } => {
                "too_large"
            }
            ApiError::Invalid { .. } => "invalid_body",
            ApiError::ContentType { .. } => "content_type",
            ApiError::ContentEncoding { .. } => "content_encoding",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Body(_) => "body_read",
            ApiError::Query(_) => "query",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::BodyBudget { .. } => "body_budget",
            ApiError::EvaluationTimeout { .. } => "evaluation_timeout",
            ApiError::AuditUnavailable(_) => "audit",
            ApiError::Policy(_) => "policy",
            ApiError::Sign(_) => "sign",
            ApiError::ReadOnly { .. } => "read_only",
            ApiError::MethodNotAllowed { .. } => "method",
            ApiError::Undefined { .. } => "undefined",
            ApiError::NotFound(_) => "not_found",
            ApiError::Disabled(_) => "disabled",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The details list: where in the body each problem is.
    fn details(&self) -> Vec<Value> {
        match self {
            ApiError::Request(RequestError::Malformed {
                line,
                column,
                reason,
            }) => vec![json!({
                "code": "invalid_json",
                "message": reason,
                "location": {"line": line, "column": column},
            })],
            ApiError::Request(RequestError::Schema(violations)) => violations
                .iter()
                .map(|v| {
                    json!({
                        "code": "schema_violation",
                        "message": v.message,
                        "pointer": if v.pointer.is_empty() { "/" } else { &v.pointer },
                    })
                })
                .collect(),
            ApiError::Invalid { pointer, message } => vec![json!({
                "code": "invalid_body",
                "message": message,
                "pointer": if pointer.is_empty() { "/" } else { pointer },
            })],
            _ => Vec::new(),
        }
    }

    /// The body, in OPA's error shape.
    pub fn body(&self) -> Value {
        let mut body = json!({"code": self.code(), "message": self.to_string()});
        let details = self.details();
        if !details.is_empty() {
            body["errors"] = Value::Array(details);
        }
        body
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status(), &self.body(), false);
        let headers = response.headers_mut();
        match &self {
            ApiError::Overloaded { .. }
            | ApiError::BodyBudget { .. }
            | ApiError::EvaluationTimeout { .. }
            | ApiError::AuditUnavailable(_) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(super::RETRY_AFTER_SECS),
                );
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        response
    }
}

/// A JSON response; `pretty` indents it as OPA's `?pretty=true` does.
pub fn json_response<T: serde::Serialize + ?Sized>(
    status: StatusCode,
    body: &T,
    pretty: bool,
) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(body)
    } else {
        serde_json::to_string(body)
    };
    match text {
        Ok(mut text) => {
            if pretty {
                text.push('\n');
            }
            (
                status,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                text,
            )
                .into_response()
        }
        // INVARIANT: our bodies (JSON values and plain data) always serialise; if one
        // ever did not, say so rather than panic.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot serialise the response: {e}"),
        )
            .into_response(),
    }
}
