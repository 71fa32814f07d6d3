//! Object-storage notifications in, one upload per created object version out: the
//! pure parser behind `POST /events`.
//!
//! [`parse`] takes the request's headers and body, detects which sender's format it is,
//! and answers what the handler must do:
//! - [`Parsed::Objects`]: create (or find again) one upload per [`ObjectEvent`] in
//!   `created`, after [`Filters::admits`]; `ignored` counts events of other kinds
//!   (deletes, metadata, directories), which are answered 2xx like the rest;
//! - [`Parsed::Test`]: S3's `s3:TestEvent`, sent when a notification is set up: 2xx;
//! - [`Parsed::SnsConfirm`]: GET `subscribe_url` to confirm the SNS subscription;
//! - [`Parsed::EventGridValidation`]: answer `{"validationResponse": code}` with 200.
//!
//! An `Err` is a body of no known format (answer 400 with the text, which lists the
//! formats expected) or of a known one missing what an upload needs.
//!
//! The CloudEvents webhook `OPTIONS` handshake (Azure with the CloudEvents schema) is
//! [`webhook_options`]. Authenticating the sender is the handler's job, before `parse`:
//! MinIO sends the `Authorization` it was configured with, SeaweedFS
//! `Authorization: Bearer <bearer_token>`; SNS and Event Grid sign or validate instead.
//!
//! Formats (the `format` of [`Parsed::Objects`]): `s3` (S3 `Records[]`), `minio` (MinIO's
//! webhook: top-level `EventName`/`Key` around `Records[]`), `cos` (Tencent COS
//! `Records[].cos`), `sns` (the SNS HTTPS envelope around S3 events), `eventbridge`
//! (S3 "Object Created"), `cloudevents-gcs` and `cloudevents-azure` (binary `ce-*`
//! headers or structured, single or batch), `pubsub-gcs` (GCS notifications pushed by
//! Pub/Sub, or delivered by Eventarc as `messagePublished` CloudEvents), `eventgrid` (Azure Event Grid schema), `seaweed` (SeaweedFS filer webhook).
//!
//! Every sender delivers at least once, so [`upload_id`] derives the upload from the
//! object version's identity alone: a repeated event names the same upload, a new
//! version of the same key a new one.

mod azure;
mod cloudevents;
mod envelope;
mod fields;
mod filter;
#[cfg(test)]
mod proptests;
mod s3;
mod seaweed;
#[cfg(test)]
mod tests;

pub use cloudevents::{webhook_options, WebhookOptions};
pub use filter::Filters;

use serde_json::Value;
use sha1::{Digest, Sha1};

/// Which kind of object store an event came from (part of the upload's identity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Store {
    /// Amazon S3 (direct, through SNS, or through EventBridge).
    S3,
    /// MinIO.
    Minio,
    /// Google Cloud Storage (CloudEvents or Pub/Sub push).
    Gcs,
    /// Azure Blob Storage (CloudEvents or Event Grid schema).
    Azure,
    /// Tencent Cloud Object Storage.
    Cos,
    /// SeaweedFS (filer webhook).
    Seaweed,
}

impl Store {
    /// The store's stable lower-case name, as hashed into [`upload_id`].
    pub fn as_str(self) -> &'static str {
        match self {
            Store::S3 => "s3",
            Store::Minio => "minio",
            Store::Gcs => "gcs",
            Store::Azure => "azure",
            Store::Cos => "cos",
            Store::Seaweed => "seaweed",
        }
    }
}

/// One created object version, as the event describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// The store the event came from.
    pub store: Store,
    /// The bucket (Azure: the container).
    pub bucket: String,
    /// The object key, decoded (events that form-encode keys are decoded here).
    pub key: String,
    /// The object's size in bytes, when the event says.
    pub size: Option<u64>,
    /// The version's identity: the version id, else the ETag (unquoted), else the
    /// generation, else the sequencer (or, per store, the next best thing; see each
    /// parser). Never empty.
    pub version: String,
    /// The ETag as a GET of the object answers it, unquoted, to check the read against
    /// (GCS and SeaweedFS: the MD5 as hex), when the event gives one.
    pub etag: Option<String>,
    /// Azure: the blob's URL from the event.
    pub url: Option<String>,
}

/// What a notification asks of the handler; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Object events: one upload per created object version.
    Objects {
        /// The detected format (see the module documentation).
        format: &'static str,
        /// The created object versions, in the order of the body.
        created: Vec<ObjectEvent>,
        /// How many events of other kinds the body carried.
        ignored: usize,
    },
    /// S3's `s3:TestEvent` (directly or through SNS): answer 2xx, nothing to do.
    Test,
    /// An SNS `SubscriptionConfirmation`: GET `subscribe_url` to confirm.
    SnsConfirm {
        /// The URL to GET.
        subscribe_url: String,
        /// The topic being subscribed to (to check against the expected one).
        topic_arn: String,
    },
    /// An Event Grid `SubscriptionValidationEvent`: answer 200 with
    /// `{"validationResponse": code}`.
    EventGridValidation {
        /// The `validationCode` to echo.
        code: String,
        /// Object events delivered in the same array. Event Grid documents that a
        /// validation array holds only the validation event; kept so nothing is lost.
        created: Vec<ObjectEvent>,
    },
}

/// What every "no known format" error lists.
pub(crate) const EXPECTED: &str = "expected one of: S3 event notification (Records[]), \
MinIO webhook (EventName, Key, Records[]), s3:TestEvent, SNS envelope (Type, TopicArn), \
EventBridge (detail-type, source aws.s3), CloudEvents 1.0 (ce-* headers or specversion), \
Pub/Sub push (message, subscription), Event Grid array (eventType), Tencent COS \
(Records[].cos), SeaweedFS filer webhook (event_type, key, message)";

/// Detects the notification format of a request and parses it.
///
/// `headers` are (lower-case name, value) pairs. Never panics, on any input.
pub fn parse(headers: &[(String, String)], body: &[u8]) -> Result<Parsed, String> {
    if header(headers, "ce-specversion").is_some() || header(headers, "ce-type").is_some() {
        return cloudevents::binary(headers, body);
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) if body.iter().all(u8::is_ascii_whitespace) => return Err(format!("the body is empty ({e}); {EXPECTED}")),
        Err(e) => return Err(format!("the body is not JSON ({e}); {EXPECTED}")),
    };
    parse_value(&value, true)
}

/// Detection on a parsed body; `envelopes` is false inside an SNS `Message`, which
/// carries S3 events only (one level of wrapping, so no recursion on hostile input).
pub(crate) fn parse_value(v: &Value, envelopes: bool) -> Result<Parsed, String> {
    if let Some(items) = v.as_array() {
        if !envelopes {
            return Err(format!("a JSON array inside an envelope; {EXPECTED}"));
        }
        let first = items.first().ok_or_else(|| format!("the body is an empty JSON array; {EXPECTED}"))?;
        if first.get("specversion").is_some() {
            return cloudevents::batch(items);
        }
        if first.get("eventType").is_some() {
            return envelope::event_grid(items);
        }
        return Err(format!("a JSON array of unknown items; {EXPECTED}"));
    }
    if !v.is_object() {
        return Err(format!("the body is JSON but not an object or array; {EXPECTED}"));
    }
    if fields::str_at(v, &["Event"]) == Some("s3:TestEvent") {
        return Ok(Parsed::Test);
    }
    if v.get("EventName").is_some() && v.get("Key").is_some() {
        return s3::minio(v);
    }
    if v.get("Records").is_some() {
        return s3::records(v);
    }
    if v.get("detail-type").is_some() && v.get("detail").is_some() {
        return s3::eventbridge(v);
    }
    if !envelopes {
        return Err(format!("the SNS Message is not an S3 event notification; {EXPECTED}"));
    }
    if v.get("Type").is_some() && v.get("TopicArn").is_some() {
        return envelope::sns(v);
    }
    if v.get("specversion").is_some() {
        return cloudevents::structured(v);
    }
    if v.get("message").is_some() && v.get("subscription").is_some() {
        return envelope::pubsub(v);
    }
    if v.get("eventType").is_some() {
        return envelope::event_grid(std::slice::from_ref(v));
    }
    if v.get("event_type").is_some() && v.get("message").is_some() {
        return seaweed::parse(v);
    }
    Err(format!("a JSON object of no known notification format; {EXPECTED}"))
}

/// The value of header `name` (lower case), if present.
pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// The upload id of an object version: 20 lower-case hex digits (like
/// [`crate::upload::upload_id`]), the first 10 bytes of the SHA-1 of a versioned prefix
/// and the JSON array `[store, bucket, key, version]` (JSON, so no field's content can
/// pass for a separator). Frozen: stored uploads are found again by it.
pub fn upload_id(e: &ObjectEvent) -> String {
    let fields = [e.store.as_str(), &e.bucket, &e.key, &e.version];
    let mut h = Sha1::new();
    h.update(b"vod-uploader event v1\n");
    // Serializing an array of strings cannot fail; an empty array would only weaken
    // the id, never panic.
    h.update(serde_json::to_vec(&fields).unwrap_or_default());
    crate::hex::encode(&h.finalize()[..10])
}
