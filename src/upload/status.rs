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
                let below = if u.done.below == 0 { 0 } else { l.range(u.done.below - 1).end };
                below + u.done.above.iter().map(|&i| l.len(i)).sum::<u64>()
            }
            Phase::Finishing(_) | Phase::Done(_) => self.identity.size,
            _ => 0,
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
