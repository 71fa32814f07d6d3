//! Azure Blob Storage's `BlobCreated` data, the same in both schemas Azure sends it in
//! (CloudEvents and Event Grid's own).

use serde_json::Value;

use super::fields::{str_at, text_at, u64_at, unquote};
use super::{ObjectEvent, Store};

/// An Azure blob creation, from the event's subject
/// (`/blobServices/default/containers/{container}/blobs/{name}`) and data. A Data Lake
/// `CreateFile` is not a finished blob (Azure's docs: wait for `FlushWithClose`), so it
/// gives no object.
pub(super) fn azure_blob(subject: &str, data: &Value) -> Result<Option<ObjectEvent>, String> {
    if str_at(data, &["api"]) == Some("CreateFile") {
        return Ok(None);
    }
    let path = subject
        .strip_prefix("/blobServices/default/containers/")
        .ok_or_else(|| format!("the subject {subject:?} is not /blobServices/default/containers/{{container}}/blobs/{{name}}"))?;
    let (container, name) = path
        .split_once("/blobs/")
        .filter(|(c, n)| !c.is_empty() && !n.is_empty())
        .ok_or_else(|| format!("the subject {subject:?} names no container and blob"))?;
    let etag = text_at(data, &["eTag"]).map(|t| unquote(&t)).filter(|t| !t.is_empty());
    let version = etag
        .clone()
        .or_else(|| text_at(data, &["sequencer"]))
        .ok_or_else(|| format!("the BlobCreated event for {subject:?} has no eTag or sequencer"))?;
    Ok(Some(ObjectEvent {
        store: Store::Azure,
        bucket: container.to_owned(),
        key: name.to_owned(),
        size: u64_at(data, &["contentLength"]),
        version,
        etag,
        url: text_at(data, &["url"]),
    }))
}
