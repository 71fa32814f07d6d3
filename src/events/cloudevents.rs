//! CloudEvents 1.0 over HTTP: binary mode (attributes in `ce-*` headers, the body is the
//! data), structured mode (one JSON event) and batches (a JSON array), carrying GCS
//! (`google.cloud.storage.object.v1.finalized`) or Azure (`Microsoft.Storage.BlobCreated`)
//! data; and the webhook `OPTIONS` handshake (abuse protection) Azure uses with them.

use serde_json::Value;

use super::azure::azure_blob;
use super::fields::{base64_bytes, md5_base64_to_hex, str_at, text_at, u64_at};
use super::{header, ObjectEvent, Parsed, Store};

/// A binary-mode CloudEvent: type and subject from the headers, the body as data. A
/// body that is not JSON is kept as no data: an event of another kind may carry none.
pub(super) fn binary(headers: &[(String, String)], body: &[u8]) -> Result<Parsed, String> {
    let kind = header(headers, "ce-type").ok_or("a binary-mode CloudEvent (ce-* headers) without ce-type")?;
    let data: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let subject = header(headers, "ce-subject").unwrap_or_default();
    let (format, event) = dispatch(kind, subject, &data)?;
    let ignored = usize::from(event.is_none());
    Ok(objects(format, event.into_iter().collect(), ignored))
}

/// A structured-mode CloudEvent (`data`, or `data_base64` holding JSON).
pub(super) fn structured(v: &Value) -> Result<Parsed, String> {
    batch(std::slice::from_ref(v))
}

/// A batch of structured CloudEvents (Event Grid delivers arrays with the CloudEvents
/// schema too).
pub(super) fn batch(items: &[Value]) -> Result<Parsed, String> {
    let mut format = "cloudevents";
    let mut created = Vec::new();
    let mut ignored = 0;
    for (i, e) in items.iter().enumerate() {
        let kind = str_at(e, &["type"]).ok_or_else(|| format!("CloudEvent [{i}] has no type"))?;
        let decoded;
        let data = match str_at(e, &["data_base64"]).and_then(base64_bytes) {
            Some(bytes) => {
                decoded = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                &decoded
            }
            None => &e["data"],
        };
        let subject = str_at(e, &["subject"]).unwrap_or_default();
        let (f, event) = dispatch(kind, subject, data).map_err(|m| format!("CloudEvent [{i}]: {m}"))?;
        if format == "cloudevents" {
            format = f;
        }
        match event {
            Some(o) => created.push(o),
            None => ignored += 1,
        }
    }
    Ok(objects(format, created, ignored))
}

fn objects(format: &'static str, created: Vec<ObjectEvent>, ignored: usize) -> Parsed {
    Parsed::Objects { format, created, ignored }
}

const GCS_FINALIZED: &str = "google.cloud.storage.object.v1.finalized";
const AZURE_CREATED: &str = "Microsoft.Storage.BlobCreated";
const PUBSUB_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

/// The format an event type belongs to, and its object if it is a creation. Azure's
/// Data Lake `CreateFile` creation is ignored too (see [`azure_blob`]), so a creation
/// type does not always give an object; a Pub/Sub message (Eventarc) gives one when it
/// is a GCS `OBJECT_FINALIZE` notification.
fn dispatch(kind: &str, subject: &str, data: &Value) -> Result<(&'static str, Option<ObjectEvent>), String> {
    if kind == GCS_FINALIZED {
        Ok(("cloudevents-gcs", Some(gcs_object(data)?)))
    } else if kind.starts_with("google.cloud.storage.") {
        Ok(("cloudevents-gcs", None))
    } else if kind == AZURE_CREATED {
        Ok(("cloudevents-azure", azure_blob(subject, data)?))
    } else if kind.starts_with("Microsoft.Storage.") {
        Ok(("cloudevents-azure", None))
    } else if kind == PUBSUB_PUBLISHED {
        // Eventarc's Pub/Sub trigger: the data is a push body, maybe a GCS notification.
        match super::envelope::pubsub(data)? {
            Parsed::Objects { mut created, .. } => Ok(("pubsub-gcs", created.pop())),
            _ => Ok(("pubsub-gcs", None)),
        }
    } else {
        Ok(("cloudevents", None))
    }
}

/// A GCS object resource (`StorageObjectData`). The name is raw, not encoded; the
/// generation (a string in proto JSON, a number elsewhere) is the version.
fn gcs_object(data: &Value) -> Result<ObjectEvent, String> {
    let bucket = text_at(data, &["bucket"]).ok_or("the GCS object data has no bucket")?;
    let key = text_at(data, &["name"]).ok_or("the GCS object data has no name")?;
    let etag = text_at(data, &["md5Hash"]).and_then(|t| md5_base64_to_hex(&t));
    let version = u64_at(data, &["generation"])
        .map(|g| g.to_string())
        .or_else(|| etag.clone())
        .ok_or_else(|| format!("the GCS object data has no generation or md5Hash for {key:?}"))?;
    Ok(ObjectEvent { store: Store::Gcs, bucket, key, size: u64_at(data, &["size"]), version, etag, url: None })
}

/// The answer to a CloudEvents webhook `OPTIONS` validation request: 200 with these
/// headers (and `Allow: POST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookOptions {
    /// The `WebHook-Allowed-Origin` header: the requesting origin, echoed.
    pub allowed_origin: String,
    /// The `WebHook-Allowed-Rate` header: requests a minute, or `*` for no limit.
    pub allowed_rate: String,
}

/// Answers the CloudEvents webhook abuse-protection handshake (HTTP Webhook spec §4):
/// given the `OPTIONS` request's headers (lower-case names), grant the origin in
/// `WebHook-Request-Origin` at `rate_per_minute` (`None`: no limit, `*`). `Err` (answer
/// 400) when the origin header is missing or not a plain visible-ASCII token, which also
/// keeps it from smuggling anything into the response headers.
pub fn webhook_options(headers: &[(String, String)], rate_per_minute: Option<u32>) -> Result<WebhookOptions, String> {
    let origin = header(headers, "webhook-request-origin")
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .ok_or("an OPTIONS request without WebHook-Request-Origin; expected the CloudEvents webhook validation handshake")?;
    if !origin.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("WebHook-Request-Origin {origin:?} is not a plain host name"));
    }
    Ok(WebhookOptions {
        allowed_origin: origin.to_owned(),
        allowed_rate: rate_per_minute.map_or_else(|| "*".to_owned(), |r| r.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Parsed};
    use base64::Engine as _;
    use serde_json::json;

    fn blob(api: &str, subject: &str) -> Result<Parsed, String> {
        let e = json!({"specversion": "1.0", "type": "Microsoft.Storage.BlobCreated", "subject": subject,
            "data": {"api": api, "eTag": "\"0x1\"", "contentLength": 7}});
        parse(&[], &serde_json::to_vec(&e).unwrap())
    }

    #[test]
    fn data_lake_create_file_waits_for_flush_with_close() {
        let s = "/blobServices/default/containers/c/blobs/dir/a b.mp4";
        assert_eq!(blob("CreateFile", s).unwrap(), Parsed::Objects { format: "cloudevents-azure", created: vec![], ignored: 1 });
        let Parsed::Objects { created, .. } = blob("FlushWithClose", s).unwrap() else { panic!() };
        assert_eq!((created[0].bucket.as_str(), created[0].key.as_str(), created[0].version.as_str()), ("c", "dir/a b.mp4", "0x1"));
    }

    #[test]
    fn a_subject_that_names_no_blob_is_an_error() {
        for s in ["", "/blobServices/default/containers/c", "/blobServices/default/containers//blobs/x", "/x/y"] {
            assert!(blob("PutBlob", s).unwrap_err().contains("subject"), "{s}");
        }
    }

    #[test]
    fn structured_data_base64_and_other_types() {
        let data = json!({"bucket": "b", "name": "k.mp4", "generation": 12, "size": "3"});
        let b64 = base64::engine::general_purpose::STANDARD.encode(data.to_string());
        let e = json!({"specversion": "1.0", "type": "google.cloud.storage.object.v1.finalized", "data_base64": b64});
        let Parsed::Objects { created, .. } = parse(&[], &serde_json::to_vec(&e).unwrap()).unwrap() else { panic!() };
        assert_eq!((created[0].version.as_str(), created[0].size), ("12", Some(3)));
        let other = json!({"specversion": "1.0", "type": "com.example.other", "data": {}});
        assert_eq!(
            parse(&[], &serde_json::to_vec(&other).unwrap()).unwrap(),
            Parsed::Objects { format: "cloudevents", created: vec![], ignored: 1 }
        );
    }
}
