//! OPA's REST API as OPA clients call it: the Data API (v1 and v0), the read-only
//! Policy API and the Query API; writes are refused as OPA refuses writes to a bundle's
//! paths, and no route lets a caller's input pose as a verified fact.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use serde_json::{json, Value};

use super::errors::{json_response, ApiError, Internal};
use super::opa_params::{
    decorate, OpaParams, Timers, TIMER_FACTS, TIMER_INPUT_PARSE, TIMER_QUERY_EVAL,
};
use super::routes::{fail, parse_object, pretty, read_body, wrong_method};
use super::{Loaded, Server, MAX_QUERY_BYTES, MAX_REQUEST_BODY_BYTES};
use crate::evaluator::QueryOptions;
use crate::policy::{data_path, data_ref};
use crate::request::{parse_strict, PromotionRequest, RequestError, SchemaViolation};

const ROUTE_DATA: &str = "data";
const ROUTE_DATA_V0: &str = "data_v0";
const ROUTE_QUERY: &str = "query";
const ROUTE_POLICIES: &str = "policies";

/// The JSON type of a value, for messages.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `/v1/data` and `/v1/data/{path}`: GET and POST read, writes are refused.
pub(super) fn data_v1_methods() -> MethodRouter<Server> {
    get(data_v1_get)
        .post(data_v1_post)
        .put(refuse_data_write)
        .patch(refuse_data_write)
        .delete(refuse_data_write)
        .fallback(wrong_method(ROUTE_DATA, "GET, POST, PUT, PATCH, DELETE"))
}

/// `/v0/data/{path}`: POST reads; OPA has no other method here.
pub(super) fn data_v0_methods() -> MethodRouter<Server> {
    post(data_v0_post).fallback(wrong_method(ROUTE_DATA_V0, "POST"))
}

/// `/v1/policies`: the list.
pub(super) fn policies_methods() -> MethodRouter<Server> {
    get(list_policies).fallback(wrong_method(ROUTE_POLICIES, "GET"))
}

/// `/v1/policies/{id}`: one module; uploads and deletes are refused.
pub(super) fn policy_methods() -> MethodRouter<Server> {
    get(get_policy)
        .put(refuse_policy_write)
        .delete(refuse_policy_write)
        .fallback(wrong_method(ROUTE_POLICIES, "GET, PUT, DELETE"))
}

/// `/v1/query`: GET and POST.
pub(super) fn query_methods() -> MethodRouter<Server> {
    get(query_get)
        .post(query_post)
        .fallback(wrong_method(ROUTE_QUERY, "GET, POST"))
}

async fn refuse_data_write(State(server): State<Server>) -> Response {
    fail(&server, ROUTE_DATA, ApiError::ReadOnly { what: "data" })
}

async fn refuse_policy_write(State(server): State<Server>) -> Response {
    let error = ApiError::ReadOnly {
        what: "every policy module",
    };
    fail(&server, ROUTE_POLICIES, error)
}

/// Validate a request found at `at` in the body: schema pointers are rewritten to point
/// into the body the client sent (`/input/slo/objective`).
fn promotion_request(value: Value, at: &str) -> Result<PromotionRequest, ApiError> {
    PromotionRequest::from_value(value).map_err(|e| match e {
        RequestError::Schema(violations) if !at.is_empty() => {
            ApiError::Request(RequestError::Schema(
                violations
                    .into_iter()
                    .map(|v| SchemaViolation {
                        pointer: format!("{at}{}", v.pointer),
                        message: v.message,
                    })
                    .collect(),
            ))
        }
        other => ApiError::Request(other),
    })
}

/// Most segments in a Data API path. The bundle's deepest document is a handful of
/// segments down; a longer path is a client's mistake (or a probe) and is answered 400,
/// never handed to the Rego parser to fail on as a server error.
pub const MAX_DATA_PATH_SEGMENTS: usize = 32;

/// Longest Data API path, in bytes.
pub const MAX_DATA_PATH_BYTES: usize = 1024;

/// A data path the sidecar will evaluate, or why not (a client error).
fn check_data_path(path: &str) -> Result<(), ApiError> {
    let segments = path.split('/').filter(|s| !s.is_empty()).count();
    if path.len() > MAX_DATA_PATH_BYTES || segments > MAX_DATA_PATH_SEGMENTS {
        return Err(ApiError::Invalid {
            pointer: String::new(),
            message: format!(
                "the data path has {segments} segments and {} bytes; the limits are {MAX_DATA_PATH_SEGMENTS} and {MAX_DATA_PATH_BYTES}",
                path.len()
            ),
        });
    }
    Ok(())
}

/// Evaluate `data.{path}` over the engine's input for `request` (attestations verified,
/// plugins run, `now` fixed), as `eval` would, on the generation `loaded`.
async fn query_data(
    server: &Server,
    loaded: Arc<Loaded>,
    request: PromotionRequest,
    path: String,
    params: &OpaParams,
    timers: &mut Timers,
) -> Result<Option<Value>, ApiError> {
    check_data_path(&path)?;
    let now = server.config().clock.now();
    let options = QueryOptions {
        strict_builtin_errors: params.strict_builtin_errors,
    };
    let counted = Arc::clone(&loaded);
    let log_options = server.decision_log_options();
    let (result, request, event) = server
        .inner
        .gate
        .run(move || {
            let result =
                loaded.with_evaluator(|ev| ev.query_data_with(&request, now, &path, options));
            // Like a promotion decision, every Data API answer is logged (OPA logs every
            // query); masking and building the event are CPU work, done here.
            let event = match (&result, log_options) {
                (Ok((value, _)), Some((input, labels))) => {
                    let bundle = loaded.engine.bundle();
                    let input = input.masked(&request.raw).map(|(v, _)| v);
                    let facts = super::decision_log::QueryFacts {
                        decision_id: &uuid::Uuid::now_v7().to_string(),
                        path: path.trim_matches('/'),
                        timestamp: &crate::input::format_time(now),
                        bundle_revision: bundle.revision(),
                        bundle_sha256: &bundle.digest().hex(),
                    };
                    Some(super::decision_log::query_event(
                        &facts,
                        input.as_ref(),
                        value.clone(),
                        &labels,
                    ))
                }
                _ => None,
            };
            (result, request, event)
        })
        .await?;
    let (value, took) = result?;
    timers.record(TIMER_FACTS, took.facts);
    timers.record(TIMER_QUERY_EVAL, took.eval);
    count_data_decision(server, &counted, &request, &value);
    if let (Some(log), Some(event)) = (&server.inner.decision_log, event) {
        log.log(&event);
    }
    Ok(value)
}

fn count_data_decision(
    server: &Server,
    loaded: &Loaded,
    request: &PromotionRequest,
    value: &Option<Value>,
) {
    let result = match value {
        None => "undefined",
        Some(v) => match v.get("allow") {
            Some(Value::Bool(true)) => "allow",
            Some(Value::Bool(false)) => "deny",
            _ => "defined",
        },
    };
    let environment = loaded.environment_label(&request.typed.to);
    server.metrics().decision(ROUTE_DATA, result, &environment);
}

/// OPA's query parameters of a request, or the 400 that refuses them.
fn params_of(server: &Server, route: &str, uri: &Uri) -> Result<OpaParams, Box<Response>> {
    OpaParams::parse(uri).map_err(|e| Box::new(fail(server, route, e)))
}

/// `POST /v1/data/{path}` with `{"input": <promotion request>}`: `{"result": ...}`, or
/// `200 {}` when the document is undefined (OPA's Data API).
async fn data_v1_post(
    State(server): State<Server>,
    path: Option<Path<String>>,
    req: Request,
) -> Response {
    let mut timers = Timers::start();
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let params = match params_of(&server, ROUTE_DATA, req.uri()) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let loaded = server.loaded();
    let outcome = async {
        let body = read_body(&server, req, MAX_REQUEST_BODY_BYTES).await?;
        let started = Instant::now();
        let mut object = parse_object(&body)?;
        let input = object.remove("input").ok_or_else(|| ApiError::Invalid {
            pointer: "/input".into(),
            message: "`input` is required: the promotion request to evaluate".into(),
        })?;
        let request = promotion_request(input, "/input")?;
        timers.record(TIMER_INPUT_PARSE, started.elapsed());
        let evaluated = Arc::clone(&loaded);
        query_data(
            &server,
            evaluated,
            request,
            path.clone(),
            &params,
            &mut timers,
        )
        .await
    }
    .await;
    answer_data(&server, &loaded, outcome, &path, &params, &timers, true)
}

/// A Data API read's answer: `{"result", "decision_id"}` for a decision over an input,
/// `{"result"}` for a document read without one, `{}` when undefined; plus the
/// `metrics` and `provenance` the query parameters asked for, in either case.
fn answer_data(
    server: &Server,
    loaded: &Loaded,
    outcome: Result<Option<Value>, ApiError>,
    path: &str,
    params: &OpaParams,
    timers: &Timers,
    decided: bool,
) -> Response {
    let value = match outcome {
        Ok(value) => value,
        Err(e) => return fail(server, ROUTE_DATA, e),
    };
    if decided {
        server.metrics().latency(ROUTE_DATA, timers.elapsed());
    }
    let mut body = match value {
        None => json!({}),
        Some(result) if decided => {
            let decision_id = uuid::Uuid::now_v7().to_string();
            tracing::info!(%decision_id, path = %data_path(path), "data api decision");
            json!({"decision_id": decision_id, "result": result})
        }
        Some(result) => json!({"result": result}),
    };
    decorate(&mut body, params, timers, loaded.engine.bundle());
    json_response(StatusCode::OK, &body, params.pretty)
}

/// Evaluate the document at a data path (rule or plain data) with whatever input the
/// engine holds; `Ok(None)` when undefined.
pub(super) fn eval_document(
    rego: &mut regorus::Engine,
    path: &str,
) -> Result<Option<Value>, String> {
    let results = rego
        .eval_query(data_ref(path), false)
        .map_err(|e| e.to_string())?;
    let Some(value) = results
        .result
        .first()
        .and_then(|r| r.expressions.first())
        .map(|e| &e.value)
    else {
        return Ok(None);
    };
    if *value == regorus::Value::Undefined {
        return Ok(None);
    }
    serde_json::to_value(value)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// `GET /v1/data/{path}`: with `?input=<JSON>` (a promotion request, URL-encoded), the
/// same decision as the POST; without, the document with no input (configuration,
/// constants), where rules that need a request are undefined, as in OPA.
async fn data_v1_get(
    State(server): State<Server>,
    path: Option<Path<String>>,
    uri: Uri,
) -> Response {
    let mut timers = Timers::start();
    let path = path.map(|Path(p)| p).unwrap_or_default();
    let params = match params_of(&server, ROUTE_DATA, &uri) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let loaded = server.loaded();
    let evaluated = Arc::clone(&loaded);
    let outcome = match &params.input {
        Some(text) => {
            let started = Instant::now();
            match parse_strict(text.as_bytes())
                .map_err(ApiError::from)
                .and_then(|v| promotion_request(v, ""))
            {
                Ok(request) => {
                    timers.record(TIMER_INPUT_PARSE, started.elapsed());
                    let path = path.clone();
                    query_data(&server, evaluated, request, path, &params, &mut timers).await
                }
                Err(e) => Err(e),
            }
        }
        None => read_document(&server, evaluated, path.clone(), &params, &mut timers).await,
    };
    let decided = params.input.is_some();
    answer_data(&server, &loaded, outcome, &path, &params, &timers, decided)
}

/// The document at `path` with no input, on the generation `loaded`.
async fn read_document(
    server: &Server,
    loaded: Arc<Loaded>,
    path: String,
    params: &OpaParams,
    timers: &mut Timers,
) -> Result<Option<Value>, ApiError> {
    check_data_path(&path)?;
    let strict = params.strict_builtin_errors;
    let (result, took) = server
        .inner
        .gate
        .run(move || {
            let mut rego = loaded.engine.bundle().evaluator();
            rego.set_strict_builtin_errors(strict);
            let started = Instant::now();
            let result = eval_document(&mut rego, &path);
            (result, started.elapsed())
        })
        .await?;
    timers.record(TIMER_QUERY_EVAL, took);
    result.map_err(|e| ApiError::Policy(crate::policy::PolicyError::Runtime(e)))
}

/// `POST /v0/data/{path}`: the body is the input itself; the answer is the bare value,
/// 404 when undefined (OPA's v0 Data API, used by webhooks that cannot wrap input).
async fn data_v0_post(
    State(server): State<Server>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let pretty = pretty(req.uri());
    let outcome = async {
        let body = read_body(&server, req, MAX_REQUEST_BODY_BYTES).await?;
        let request = promotion_request(parse_strict(&body)?, "")?;
        // OPA's v0 API takes no parameters but `pretty`: no metrics, no strictness.
        let (params, mut timers) = (OpaParams::default(), Timers::start());
        let loaded = server.loaded();
        query_data(&server, loaded, request, path.clone(), &params, &mut timers).await
    }
    .await;
    match outcome {
        Ok(Some(value)) => {
            server.metrics().latency(ROUTE_DATA_V0, started.elapsed());
            json_response(StatusCode::OK, &value, pretty)
        }
        Ok(None) => fail(
            &server,
            ROUTE_DATA_V0,
            ApiError::Undefined {
                path: data_path(&path),
            },
        ),
        Err(e) => fail(&server, ROUTE_DATA_V0, e),
    }
}

/// `GET /v1/policies`: every loaded module as `{"id", "raw"}` (OPA's shape, without the
/// AST, which regorus does not expose in OPA's format).
async fn list_policies(State(server): State<Server>, uri: Uri) -> Response {
    let loaded = server.loaded();
    let result: Vec<Value> = loaded
        .engine
        .bundle()
        .policies()
        .iter()
        .map(|f| json!({"id": f.path, "raw": f.contents}))
        .collect();
    json_response(StatusCode::OK, &json!({"result": result}), pretty(&uri))
}

/// `GET /v1/policies/{id}`: one module, 404 when not loaded.
async fn get_policy(State(server): State<Server>, Path(id): Path<String>, uri: Uri) -> Response {
    let loaded = server.loaded();
    let wanted = id.trim_start_matches('/');
    match loaded
        .engine
        .bundle()
        .policies()
        .iter()
        .find(|f| f.path == wanted)
    {
        Some(f) => json_response(
            StatusCode::OK,
            &json!({"result": {"id": f.path, "raw": f.contents}}),
            pretty(&uri),
        ),
        None => fail(
            &server,
            ROUTE_POLICIES,
            ApiError::NotFound(format!("policy `{wanted}` is not loaded")),
        ),
    }
}

/// `GET /v1/query?q=...`: an ad-hoc query over the bundle's data.
async fn query_get(State(server): State<Server>, uri: Uri) -> Response {
    let timers = Timers::start();
    let opa = match params_of(&server, ROUTE_QUERY, &uri) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let params = match Query::<HashMap<String, String>>::try_from_uri(&uri) {
        Ok(Query(p)) => p,
        Err(e) => {
            return fail(
                &server,
                ROUTE_QUERY,
                ApiError::Query(format!("bad query string: {}", e.body_text())),
            )
        }
    };
    let Some(query) = params.get("q").cloned() else {
        return fail(
            &server,
            ROUTE_QUERY,
            ApiError::Query("`q` is required: the Rego query to evaluate".into()),
        );
    };
    run_query(&server, query, opa, timers).await
}

/// `POST /v1/query` with `{"query": "..."}`. An `input` is refused: the Query API would
/// hand it to policy as given, unverified; use the Data API, which verifies first.
async fn query_post(State(server): State<Server>, req: Request) -> Response {
    let timers = Timers::start();
    let opa = match params_of(&server, ROUTE_QUERY, req.uri()) {
        Ok(p) => p,
        Err(response) => return *response,
    };
    let query = async {
        let body = read_body(&server, req, MAX_REQUEST_BODY_BYTES).await?;
        let object = parse_object(&body)?;
        if object.get("input").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::Invalid {
                pointer: "/input".into(),
                message: "`input` is not accepted by the Query API, which would pass it to policy unverified; POST it to /v1/data/{path}, which verifies attestations first".into(),
            });
        }
        match object.get("query") {
            Some(Value::String(q)) => Ok(q.clone()),
            Some(other) => Err(ApiError::Invalid {
                pointer: "/query".into(),
                message: format!("`query` must be a string, got {}", type_name(other)),
            }),
            None => Err(ApiError::Invalid {
                pointer: "/query".into(),
                message: "`query` is required: the Rego query to evaluate".into(),
            }),
        }
    }
    .await;
    match query {
        Ok(q) => run_query(&server, q, opa, timers).await,
        Err(e) => fail(&server, ROUTE_QUERY, e),
    }
}

/// Evaluate an ad-hoc query: `{"result": [<bindings>, ...]}`, one object of variable
/// bindings per solution, solutions without bindings left out (as OPA does); `metrics`
/// when asked for (OPA's Query API has no `provenance`).
async fn run_query(
    server: &Server,
    query: String,
    params: OpaParams,
    mut timers: Timers,
) -> Response {
    if let Err(e) = check_query(server, &query) {
        return fail(server, ROUTE_QUERY, e);
    }
    let loaded = server.loaded();
    let evaluated = Arc::clone(&loaded);
    let outcome = server
        .inner
        .gate
        .run(move || {
            let mut rego = evaluated.engine.bundle().evaluator();
            let started = Instant::now();
            let results = rego.eval_query(query, false);
            (results, started.elapsed())
        })
        .await;
    let results = match outcome {
        Ok((Ok(results), took)) => {
            timers.record(TIMER_QUERY_EVAL, took);
            results
        }
        // A query that does not parse or fails is the caller's query: 400, not 500.
        Ok((Err(e), _)) => {
            return fail(
                server,
                ROUTE_QUERY,
                ApiError::Query(format!("query failed: {e}")),
            )
        }
        Err(e) => return fail(server, ROUTE_QUERY, e),
    };
    let solutions = match visible_bindings(results) {
        Ok(solutions) => solutions,
        Err(e) => {
            return fail(
                server,
                ROUTE_QUERY,
                ApiError::Internal(Internal::Bindings(e)),
            )
        }
    };
    let mut body = json!({"result": solutions});
    let params = OpaParams {
        provenance: false,
        ..params
    };
    decorate(&mut body, &params, &timers, loaded.engine.bundle());
    json_response(StatusCode::OK, &body, params.pretty)
}

/// Refuse an ad-hoc query this sidecar does not answer: queries off, too long or empty.
fn check_query(server: &Server, query: &str) -> Result<(), ApiError> {
    if !server.inner.config.allow_query {
        return Err(ApiError::Disabled(
            "ad-hoc queries are off in this sidecar; start it with `serve --allow-query` to answer them".into(),
        ));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(ApiError::Query(format!(
            "the query is {} bytes; the limit is {MAX_QUERY_BYTES}",
            query.len()
        )));
    }
    if query.trim().is_empty() {
        return Err(ApiError::Query("the query is empty".into()));
    }
    Ok(())
}

/// Each solution's variable bindings, internal ones (`__…`, `$…`) left out; solutions
/// with none left are dropped, as OPA does.
fn visible_bindings(results: regorus::QueryResults) -> Result<Vec<Value>, serde_json::Error> {
    let mut solutions = Vec::new();
    for result in results.result {
        let Value::Object(bindings) = serde_json::to_value(&result.bindings)? else {
            continue;
        };
        let visible: serde_json::Map<String, Value> = bindings
            .into_iter()
            .filter(|(k, _)| !k.starts_with("__") && !k.starts_with('$'))
            .collect();
        if !visible.is_empty() {
            solutions.push(Value::Object(visible));
        }
    }
    Ok(solutions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ENTRY_POINT;

    #[test]
    fn data_refs_quote_every_segment() {
        assert_eq!(data_ref("promo/config"), r#"data["promo"]["config"]"#);
        assert_eq!(data_ref(""), "data");
        assert_eq!(data_ref(r#"a"]; x := ["#), r#"data["a\"]; x := ["]"#);
    }

    #[test]
    fn data_paths_normalise() {
        assert_eq!(data_path("promo/decision"), "data.promo.decision");
        assert_eq!(data_path("/data/promo/decision/"), "data.promo.decision");
        assert_eq!(
            data_path("promo.rules.slo.deny"),
            "data.promo.rules.slo.deny"
        );
    }

    #[test]
    fn entry_point_is_the_decision_path() {
        assert_eq!(data_path("promo/decision"), ENTRY_POINT);
    }
}
