//! The Spin component: the thin adapter between Spin (spin-sdk 5.2: wasi-http
//! incoming and outgoing, the `default` key-value store, variables) and the
//! platform-independent [`api`](crate::api) and [`engine`](crate::engine).

mod config;
mod io;

use crate::api::{self, ApiRequest};
use crate::engine::{Io as _, Metered};
use crate::error::Refusal;
use crate::log;
use config::{config, variable};
use futures_util::SinkExt;
use io::{SpinBody, SpinIo};
use spin_sdk::http::{Fields, IncomingRequest, OutgoingResponse, ResponseOutparam};
use spin_sdk::key_value::Store;
use std::time::Duration;
use wasi::clocks::monotonic_clock;

/// Sends an answer: head first, then the body, finished when the sink is dropped (the
/// client has it all then, whatever the handler goes on to do).
async fn send(out: ResponseOutparam, response: api::ApiResponse) {
    let body = response.body_bytes();
    let entries: Vec<(String, Vec<u8>)> = response.headers.into_iter().map(|(k, v)| (k, v.into_bytes())).collect();
    let fields = match Fields::from_list(&entries) {
        Ok(fields) => fields,
        Err(e) => {
            // Only our own header names and values get here; say so rather than trap.
            eprintln!("an answer header was refused: {e:?}");
            Fields::new()
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    if outgoing.set_status_code(response.status).is_err() {
        eprintln!("status {} was refused", response.status);
    }
    let mut sink = outgoing.take_body();
    out.set(outgoing);
    if let Err(e) = sink.send(body).await {
        eprintln!("the answer could not be sent: {e:?}");
    }
}

/// The request's head is read first; its body only by the API, once the caller is
/// authenticated and only up to the API's limit. The answer goes out as soon as it is
/// known; work it leaves (the uploads an event announced) follows in the same
/// invocation, within its budget.
#[spin_sdk::http_component]
async fn handle(req: IncomingRequest, out: ResponseOutparam) {
    let started = Duration::from_nanos(monotonic_clock::now());
    use spin_sdk::http::Method as M;
    let method = req.method();
    let method = match &method {
        M::Get => "GET",
        M::Post => "POST",
        M::Put => "PUT",
        M::Delete => "DELETE",
        M::Patch => "PATCH",
        M::Head => "HEAD",
        M::Options => "OPTIONS",
        M::Connect => "CONNECT",
        M::Trace => "TRACE",
        M::Other(other) => other.as_str(),
    }
    .to_owned();
    let target = req.path_with_query().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (path, query) = (path.to_owned(), query.to_owned());
    let headers: Vec<(String, String)> =
        req.headers().entries().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned())).collect();
    let config = match config() {
        Ok(c) => c,
        Err(problem) => {
            // The log names the variable; the answer names it only to an authenticated caller.
            eprintln!("configuration error: {problem}");
            return send(out, api::config_problem(&headers, variable("api_token").as_deref(), &problem)).await;
        }
    };
    let store = match Store::open_default() {
        Ok(s) => s,
        Err(e) => {
            let refusal = api::ApiResponse::refused(Refusal::Storage, format!("cannot open the default key-value store: {e}"));
            return send(out, refusal).await;
        }
    };
    let spin = SpinIo { store };
    let io = Metered::new(&spin, config.settings.quotas, config.settings.signer.endpoint.url(), config.settings.time_limit());
    let body = SpinBody { stream: Box::pin(req.into_body_stream()) };
    let route = log::route(&method, &path);
    let api_req = ApiRequest { method, path, query, headers, body };
    let (response, after) = api::handle_then(&io, &config, api_req, started).await;
    let (status, code) = (response.status, log::error_code(&response));
    send(out, response).await;
    after.run(&io, &config, started).await;
    io.finish().await;
    let took = Duration::from_nanos(monotonic_clock::now()).saturating_sub(started);
    eprintln!("{}", log::line(&route, status, code.as_deref(), &io.usage(), io.quota_stop().as_ref(), took));
}
