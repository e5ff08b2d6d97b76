//! A client for Prometheus's HTTP API instant queries (`GET /api/v1/query` with `time=`),
//! bounded in time and response size; any answer but a readable `200 success` is an error
//! naming the URL, never an empty result.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::input::format_time;

/// Cap on one query's answer: a figure is one series (a few hundred bytes); 1 MiB still
/// shows a query that matches far too many, and bounds memory against a hostile server.
pub const MAX_RESPONSE_BYTES: u64 = 1 << 20;

/// Cap on an error answer's body, read only to quote Prometheus's reason.
const MAX_ERROR_BODY_BYTES: u64 = 64 << 10;

/// How much of a server's error text a message quotes.
const MAX_QUOTED_CHARS: usize = 300;

/// Why the server gave no usable answer.
///
/// A transport, I/O or JSON error is the `source` and not repeated in the message, so a
/// printed chain (see [`crate::error_chain`]) says it once.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// The URL cannot be used.
    #[error("Prometheus URL `{url}`: {reason}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong with it (our own sentence).
        reason: &'static str,
    },
    /// No connection, or the connection failed.
    #[error("Prometheus at `{url}` is unreachable")]
    Unreachable {
        /// The endpoint asked.
        url: String,
        /// The transport's error (connection refused, DNS, TLS, ...); boxed, as it is large.
        #[source]
        source: Box<ureq::Transport>,
    },
    /// The connection failed while the answer was being read.
    #[error("Prometheus at `{url}` is unreachable: reading the answer")]
    ReadAnswer {
        /// The endpoint asked.
        url: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The deadline (`--timeout`) passed.
    #[error("Prometheus at `{url}` did not answer within {timeout:?}")]
    Timeout {
        /// The endpoint asked.
        url: String,
        /// The whole collection's deadline.
        timeout: Duration,
    },
    /// An HTTP status other than 200.
    #[error("Prometheus at `{url}` answered HTTP {status} to `{query}`{detail}")]
    Status {
        /// The endpoint asked.
        url: String,
        /// The status.
        status: u16,
        /// The query sent.
        query: String,
        /// Prometheus's `errorType: error`, when the body had them.
        detail: String,
    },
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("Prometheus at `{url}` sent more than {limit} bytes for `{query}`")]
    TooLarge {
        /// The endpoint asked.
        url: String,
        /// The query sent.
        query: String,
        /// The cap.
        limit: u64,
    },
    /// The answer is not the API's JSON.
    #[error("Prometheus at `{url}` sent an unreadable answer to `{query}`")]
    BadAnswer {
        /// The endpoint asked.
        url: String,
        /// The query sent.
        query: String,
        /// What is wrong with it.
        #[source]
        source: AnswerError,
    },
}

/// What is wrong with a `200` answer's body.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Not the API's JSON envelope.
    #[error(transparent)]
    Json(serde_json::Error),
    /// A `status` other than `success` (the server's words, quoted and bounded).
    #[error("status `{status}`: {error_type}: {error}")]
    NotSuccess {
        /// The `status`.
        status: String,
        /// The `errorType`.
        error_type: String,
        /// The `error`.
        error: String,
    },
    /// `status: success` without `data`.
    #[error("a success without `data`")]
    NoData,
    /// A `vector` result that is not a list of samples.
    #[error("vector")]
    Vector(#[source] serde_json::Error),
    /// A `scalar` result that is not `[time, "value"]`.
    #[error("scalar")]
    Scalar(#[source] serde_json::Error),
}

/// One series of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value as Prometheus wrote it (`"0.02"`, `"NaN"`, `"+Inf"`).
    pub value: String,
}

/// An instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryResult {
    /// `resultType: vector`.
    Vector(Vec<Sample>),
    /// `resultType: scalar`: its value.
    Scalar(String),
    /// Any other result type (`matrix`, `string`), by name.
    Other(String),
}

/// A Prometheus server, with one deadline for everything asked of it.
#[derive(Debug)]
pub struct Prometheus {
    base: String,
    endpoint: String,
    agent: ureq::Agent,
    deadline: Instant,
    timeout: Duration,
}

impl Prometheus {
    /// A client for the server at `url` (`http://host:port`, optionally with a path prefix);
    /// every query must be answered within `timeout` of now, in total.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, PromError> {
        let bad = |reason: &'static str| PromError::Url {
            url: url.into(),
            reason,
        };
        if url.starts_with("https://") {
            return Err(bad(
                "https is not supported by this build (plain http only); reach the server over http, e.g. in-cluster or through a local proxy",
            ));
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("must start with `http://`"))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(bad("has no host"));
        }
        if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "must be the server's base URL, without a query, fragment or spaces",
            ));
        }
        let base = url.trim_end_matches('/').to_owned();
        let agent = ureq::AgentBuilder::new()
            // A redirect is an answer other than the API's: refused, not followed.
            .redirects(0)
            .user_agent(concat!("promo-policy/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            endpoint: format!("{base}/api/v1/query"),
            base,
            agent,
            deadline: Instant::now() + timeout,
            timeout,
        })
    }

    fn timed_out(&self) -> PromError {
        PromError::Timeout {
            url: self.endpoint.clone(),
            timeout: self.timeout,
        }
    }

    /// One instant query at `at`.
    pub fn query(&self, query: &str, at: OffsetDateTime) -> Result<QueryResult, PromError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        let answer = self
            .agent
            .get(&self.endpoint)
            .query("query", query)
            .query("time", &format_time(at))
            .timeout(left)
            .call();
        let response = match answer {
            Ok(r) if r.status() == 200 => r,
            Ok(r) => return Err(self.status(query, r.status(), r)),
            Err(ureq::Error::Status(status, r)) => return Err(self.status(query, status, r)),
            Err(ureq::Error::Transport(t)) => {
                if Instant::now() >= self.deadline || is_timeout(&t) {
                    return Err(self.timed_out());
                }
                return Err(PromError::Unreachable {
                    url: self.endpoint.clone(),
                    source: Box::new(t),
                });
            }
        };
        let body =
            crate::fsio::read_to_cap(response.into_reader(), MAX_RESPONSE_BYTES).map_err(|e| {
                match e {
                    crate::fsio::CapError::TooLarge(_) => PromError::TooLarge {
                        url: self.endpoint.clone(),
                        query: query.into(),
                        limit: MAX_RESPONSE_BYTES,
                    },
                    crate::fsio::CapError::Io(e)
                        if Instant::now() >= self.deadline
                            || matches!(
                                e.kind(),
                                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                            ) =>
                    {
                        self.timed_out()
                    }
                    crate::fsio::CapError::Io(source) => PromError::ReadAnswer {
                        url: self.endpoint.clone(),
                        source,
                    },
                }
            })?;
        parse_answer(&body).map_err(|source| PromError::BadAnswer {
            url: self.endpoint.clone(),
            query: query.into(),
            source,
        })
    }

    fn status(&self, query: &str, status: u16, response: ureq::Response) -> PromError {
        let body = crate::fsio::read_to_cap(response.into_reader(), MAX_ERROR_BODY_BYTES)
            .unwrap_or_default();
        let detail = serde_json::from_slice::<ApiAnswer>(&body)
            .ok()
            .and_then(|a| a.error.map(|e| (a.error_type.unwrap_or_default(), e)))
            .map(|(kind, e)| format!(": {kind}: {}", quote(&e)))
            .unwrap_or_default();
        PromError::Status {
            url: self.endpoint.clone(),
            status,
            query: query.into(),
            detail,
        }
    }
}

impl super::FigureSource for Prometheus {
    fn url(&self) -> &str {
        &self.base
    }
    fn instant(&self, query: &str, at: OffsetDateTime) -> Result<QueryResult, PromError> {
        self.query(query, at)
    }
}

fn is_timeout(t: &ureq::Transport) -> bool {
    let mut source = std::error::Error::source(t);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// A server's text, bounded and safe to print.
fn quote(s: &str) -> String {
    let cut: String = s.chars().take(MAX_QUOTED_CHARS).collect();
    let more = if cut.len() < s.len() { "..." } else { "" };
    format!("{}{more}", crate::textsafe::printable(&cut))
}

/// `{"status", "data", "errorType", "error"}`: the API's envelope.
#[derive(Debug, Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

#[derive(Debug, Deserialize)]
struct ApiSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (Value, String),
}

/// The body of a `200` answer: a `success` with a vector or scalar result.
fn parse_answer(body: &[u8]) -> Result<QueryResult, AnswerError> {
    let answer: ApiAnswer = serde_json::from_slice(body).map_err(AnswerError::Json)?;
    if answer.status != "success" {
        return Err(AnswerError::NotSuccess {
            status: quote(&answer.status),
            error_type: quote(&answer.error_type.unwrap_or_default()),
            error: quote(&answer.error.unwrap_or_default()),
        });
    }
    let data = answer.data.ok_or(AnswerError::NoData)?;
    match data.result_type.as_str() {
        "vector" => {
            let samples: Vec<ApiSample> =
                serde_json::from_value(data.result).map_err(AnswerError::Vector)?;
            Ok(QueryResult::Vector(
                samples
                    .into_iter()
                    .map(|s| Sample {
                        labels: s.metric,
                        value: s.value.1,
                    })
                    .collect(),
            ))
        }
        "scalar" => {
            let (_, v): (Value, String) =
                serde_json::from_value(data.result).map_err(AnswerError::Scalar)?;
            Ok(QueryResult::Scalar(v))
        }
        other => Ok(QueryResult::Other(quote(other))),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    fn at() -> OffsetDateTime {
        crate::input::parse_time("2026-11-26T18:00:00Z").unwrap()
    }

    /// A one-shot HTTP server answering `response` (raw bytes) after `delay`; the request
    /// line it received comes back through the join handle.
    fn serve(response: Vec<u8>, delay: Duration) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            std::thread::sleep(delay);
            let _ = conn.write_all(&response);
            String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        });
        (url, handle)
    }

    fn http(status: &str, body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_vector_answer_is_read_and_the_query_sent_with_its_time() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"service":"a"},"value":[1795716000,"0.02"]}]}}"#;
        let (url, server) = serve(http("200 OK", body), Duration::ZERO);
        let p = Prometheus::new(&format!("{url}/"), Duration::from_secs(5)).unwrap();
        let r = p.query(r#"x{service="a"}"#, at()).unwrap();
        assert_eq!(
            r,
            QueryResult::Vector(vec![Sample {
                labels: BTreeMap::from([("service".into(), "a".into())]),
                value: "0.02".into()
            }])
        );
        let line = server.join().unwrap();
        assert!(
            line.starts_with(
                "GET /api/v1/query?query=x%7Bservice%3D%22a%22%7D&time=2026-11-26T18%3A00%3A00Z "
            ),
            "{line}"
        );
    }

    #[test]
    fn scalar_and_other_result_types() {
        assert_eq!(
            parse_answer(
                br#"{"status":"success","data":{"resultType":"scalar","result":[1,"0.999"]}}"#
            )
            .unwrap(),
            QueryResult::Scalar("0.999".into())
        );
        assert_eq!(
            parse_answer(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
                .unwrap(),
            QueryResult::Other("matrix".into())
        );
        for bad in [
            &br#"{"status":"error","errorType":"bad_data","error":"x"}"#[..],
            br#"{"status":"success"}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":[{"value":"x"}]}}"#,
            br#"{"status":"success","data":{"resultType":"vector","result":{}}}"#,
            b"<html>",
            b"",
        ] {
            assert!(
                parse_answer(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_error_status_names_the_url_and_quotes_prometheus() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": parse error\u001b[31m"}"#;
        let (url, _server) = serve(http("400 Bad Request", body), Duration::ZERO);
        let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
        let err = p.query("bad{", at()).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "`{url}/api/v1/query` answered HTTP 400 to `bad{{`: bad_data: invalid parameter"
            )),
            "{err}"
        );
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    #[test]
    fn a_redirect_is_not_followed() {
        let (url, _server) = serve(
            b"HTTP/1.1 302 Found\r\nlocation: http://elsewhere.test/\r\ncontent-length: 0\r\n\r\n"
                .to_vec(),
            Duration::ZERO,
        );
        let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
        assert!(matches!(
            p.query("x", at()),
            Err(PromError::Status { status: 302, .. })
        ));
    }

    #[test]
    fn bad_json_and_oversized_answers_are_errors() {
        let (url, _server) = serve(http("200 OK", "{\"status\": "), Duration::ZERO);
        let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
        let err = p.query("x", at()).unwrap_err();
        assert!(matches!(err, PromError::BadAnswer { .. }), "{err}");
        // The parser's error is kept as the source, and printed once, after the context.
        let cause = std::error::Error::source(&err).unwrap();
        assert!(matches!(
            cause.downcast_ref::<AnswerError>(),
            Some(AnswerError::Json(_))
        ));
        let chain = crate::error_chain::ErrorChain(&err).to_string();
        assert_eq!(
            chain,
            format!("{err}: {cause}"),
            "the message does not repeat its cause"
        );
        assert!(chain.contains("EOF while parsing"), "{chain}");

        let huge = format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[],"pad":"{}"}}}}"#,
            "x".repeat(MAX_RESPONSE_BYTES as usize)
        );
        let (url, _server) = serve(http("200 OK", &huge), Duration::ZERO);
        let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
        let err = p.query("x", at()).unwrap_err();
        assert!(matches!(err, PromError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_is_unreachable() {
        let (url, _server) = serve(http("200 OK", "{}"), Duration::from_secs(3));
        let p = Prometheus::new(&url, Duration::from_millis(300)).unwrap();
        let started = Instant::now();
        let err = p.query("x", at()).unwrap_err();
        assert!(matches!(err, PromError::Timeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        // The deadline covers the whole collection: nothing is asked once it has passed.
        assert!(matches!(p.query("x", at()), Err(PromError::Timeout { .. })));

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let p = Prometheus::new(&url, Duration::from_secs(5)).unwrap();
        let err = p.query("x", at()).unwrap_err();
        assert!(matches!(err, PromError::Unreachable { .. }), "{err}");
        assert!(err.to_string().contains(&url), "{err}");
        // The transport's error is the source: the chain names why, the message the where.
        let cause = std::error::Error::source(&err).unwrap();
        assert!(
            cause.downcast_ref::<Box<ureq::Transport>>().is_some(),
            "{cause}"
        );
        let chain = crate::error_chain::ErrorChain(&err).to_string();
        assert!(chain.starts_with(&format!("{err}: ")) && chain.len() > err.to_string().len() + 2);
    }

    #[test]
    fn only_plain_http_base_urls() {
        for bad in [
            "https://prom:9090",
            "prom:9090",
            "ftp://prom",
            "http://",
            "http://prom:9090/?x=1",
            "http://prom 9090",
        ] {
            assert!(
                Prometheus::new(bad, Duration::from_secs(1)).is_err(),
                "{bad}"
            );
        }
        let p = Prometheus::new("http://prom:9090/prefix/", Duration::from_secs(1)).unwrap();
        assert_eq!(p.endpoint, "http://prom:9090/prefix/api/v1/query");
        assert_eq!(p.base, "http://prom:9090/prefix");
    }
}
