//! A local Lambda Runtime API (version 2018-06-01, the interface a
//! `provided.al2023` function's `bootstrap` polls), so a packaged binary can
//! be run here as Lambda runs it: started with `AWS_LAMBDA_RUNTIME_API`
//! pointing at this server, it asks for the next invocation, handles the
//! event and posts the response (or an error) back.
//!
//! Only what a function's runtime client calls is served: `GET
//! /runtime/invocation/next`, `POST /runtime/invocation/{id}/response`,
//! `POST /runtime/invocation/{id}/error` and `POST /runtime/init/error`.
//! Once the queued events are given out, `next` blocks, as Lambda's does
//! between invocations.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PREFIX: &str = "/2018-06-01/runtime";

/// What the function posted back.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// `POST /invocation/{id}/response`.
    Response {
        /// The invocation's request id.
        request_id: String,
        /// The body (the handler's return value).
        body: Value,
    },
    /// `POST /invocation/{id}/error`: the handler returned an error.
    Error {
        /// The invocation's request id.
        request_id: String,
        /// `{"errorType", "errorMessage"}`.
        body: Value,
    },
    /// `POST /init/error`: the function failed before its first invocation.
    InitError {
        /// `{"errorType", "errorMessage"}`.
        body: Value,
    },
}

struct State {
    pending: Mutex<VecDeque<(String, Value)>>,
    answers: mpsc::UnboundedSender<Answer>,
    function_arn: String,
}

/// The running server; it stops when dropped.
pub struct RuntimeApi {
    addr: SocketAddr,
    answers: mpsc::UnboundedReceiver<Answer>,
    server: tokio::task::JoinHandle<()>,
}

impl RuntimeApi {
    /// Serves `events` in order, as the invocations of `function_arn`, on a
    /// free port of 127.0.0.1.
    pub async fn start(function_arn: &str, events: Vec<Value>) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the runtime API");
        let addr = listener.local_addr().expect("runtime API address");
        let (tx, answers) = mpsc::unbounded_channel();
        let pending = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| (format!("00000000-0000-4000-8000-{i:012}"), e))
            .collect();
        let state = Arc::new(State {
            pending: Mutex::new(pending),
            answers: tx,
            function_arn: function_arn.to_string(),
        });
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(state.clone(), req));
                    // A connection ends when the function exits; that is
                    // not an error here.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RuntimeApi {
            addr,
            answers,
            server,
        }
    }

    /// The value for `AWS_LAMBDA_RUNTIME_API` (`host:port`).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// The next thing the function posted, or `None` after `timeout`.
    pub async fn next_answer(&mut self, timeout: Duration) -> Option<Answer> {
        tokio::time::timeout(timeout, self.answers.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let Some(route) = path.strip_prefix(PREFIX) else {
        return Ok(status(StatusCode::NOT_FOUND));
    };
    let route = route.to_string();
    if method == Method::GET && route == "/invocation/next" {
        return Ok(next_invocation(&state).await);
    }
    if method != Method::POST {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let bytes = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    let answer = if route == "/init/error" {
        Answer::InitError { body }
    } else if let Some(rest) = route.strip_prefix("/invocation/") {
        match rest.split_once('/') {
            Some((id, "response")) => Answer::Response {
                request_id: id.to_string(),
                body,
            },
            Some((id, "error")) => Answer::Error {
                request_id: id.to_string(),
                body,
            },
            _ => return Ok(status(StatusCode::NOT_FOUND)),
        }
    } else {
        return Ok(status(StatusCode::NOT_FOUND));
    };
    let _ = state.answers.send(answer);
    Ok(status(StatusCode::ACCEPTED))
}

async fn next_invocation(state: &State) -> Response<Full<Bytes>> {
    let next = state.pending.lock().unwrap().pop_front();
    let Some((request_id, event)) = next else {
        // No more invocations: the function waits, as it would on Lambda.
        std::future::pending::<()>().await;
        unreachable!("pending never resolves");
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 15 * 60 * 1000;
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", &request_id)
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header("lambda-runtime-invoked-function-arn", &state.function_arn)
        .header(
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000;Sampled=0",
        )
        .body(Full::new(Bytes::from(event.to_string())))
        .expect("a valid response")
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("a valid response")
}
