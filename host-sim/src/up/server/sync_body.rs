//! The guest's response body as host-sim's [`Body`]: streamed frame by frame as the
//! guest writes it, never collected (the guest may answer first and write later).

use crate::http::Body;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Frame, SizeHint};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// wasi-http's body is `Send` but not `Sync`, and host-sim's servers take `Sync`
/// bodies. Only `poll_frame` runs on the hot path, through `&mut self`, so the mutex is
/// never contended there.
struct SyncBody(Mutex<HyperOutgoingBody>);

impl hyper::body::Body for SyncBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let inner = self.get_mut().0.get_mut().unwrap_or_else(|p| p.into_inner());
        Pin::new(inner).poll_frame(cx).map_err(|e| std::io::Error::other(format!("the guest's response body failed: {e:?}")))
    }

    fn is_end_stream(&self) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).size_hint()
    }
}

/// The guest's body, streamed.
pub(super) fn stream(body: HyperOutgoingBody) -> Body {
    SyncBody(Mutex::new(body)).boxed()
}
