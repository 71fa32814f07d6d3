//! An upload as the API shows it. The names here are a public contract: clients read
//! them, so they do not change with the stored format.

use super::{Phase, Upload};
use crate::source::Source;
use serde_json::{json, Value};

/// A source location fit to show: a URL's query (which for a presigned URL is a
/// credential) is never shown.
pub fn display_source(source: &Source) -> String {
    match source {
        Source::Url(url) => match url.split_once('?') {
            Some((base, _)) => format!("{base}?<redacted>"),
            None => url.clone(),
        },
        Source::Path(p) | Source::S3(p) => p.clone(),
    }
}

impl Upload {
    /// Bytes in uploaded parts.
    pub fn uploaded_bytes(&self) -> u64 {
        match self.phase.active() {
            Phase::Uploading(u) => {
                let l = u.layout(self.identity.size);
                let runs = u.done.runs().iter().map(|&(s, e)| l.bytes(s..e));
                // Saturating: the runs of a stored record are checked to fit the parts,
                // so this is at most the file's size, but a sum never wraps.
                runs.fold(l.bytes(0..u.done.below), u64::saturating_add)
            }
            Phase::Finishing(_) | Phase::Done(_) => self.identity.size,
            _ => 0,
        }
    }
}

impl Upload {
    /// Outbound requests it still needs, roughly (for an estimate under a request
    /// quota): one per part left, a read of the source per `range_bytes` left to read,
    /// and the calls that open and finish the session.
    pub fn requests_left(&self, range_bytes: u64) -> u64 {
        let size = self.identity.size;
        let parts = self.layout().count();
        let reads = |bytes: u64| bytes.div_ceil(range_bytes.max(1));
        match self.phase.active() {
            _ if self.state().is_final() => 0,
            Phase::Pending => crate::quota::requests_left(parts, 1 + 2 * reads(size), 2),
            Phase::Hashing(h) => crate::quota::requests_left(parts, reads(size - h.hasher.offset.min(size)) + reads(size), 2),
            Phase::Uploading(_) => {
                let left = parts - self.parts_done().min(parts);
                crate::quota::requests_left(
                    left,
                    reads(size - self.uploaded_bytes().min(size)),
                    1 + u64::from(self.uploading().is_some_and(|u| !u.session)),
                )
            }
            _ => 1,
        }
    }
}

/// The upload's status, as the API shows it.
pub fn status(up: &Upload) -> Value {
    let mut v = json!({
        "id": up.id,
        "state": up.state(),
        "source": display_source(&up.spec.source),
        "fileName": up.spec.file_name,
        "fileType": up.spec.file_type,
        "size": up.identity.size,
        "dataSize": up.part_size(),
        "hashedBytes": up.hashed_bytes(),
        "uploadedBytes": up.uploaded_bytes(),
        "partsTotal": up.layout().count(),
        "partsDone": up.parts_done(),
        "invocations": up.invocations,
        "createdAt": up.created_at,
        "updatedAt": up.updated_at,
        "stats": up.stats,
    });
    let map = v.as_object_mut().expect("object");
    if !up.spec.tags.is_empty() {
        map.insert("tags".into(), json!(up.spec.tags));
    }
    for (key, value) in [("fileSha", up.file_sha()), ("fileId", up.file_id()), ("url", up.url())] {
        if let Some(value) = value {
            map.insert(key.into(), json!(value));
        }
    }
    if let Some(o) = &up.origin {
        map.insert(
            "event".into(),
            json!({ "store": o.store, "bucket": o.bucket, "key": o.key, "version": o.version, "confirmed": o.confirmed }),
        );
    }
    if let Some(error) = up.error() {
        map.insert("error".into(), json!(error));
    }
    if let Some(at) = up.retry_after() {
        map.insert("retryAfter".into(), json!(at));
    }
    v
}
