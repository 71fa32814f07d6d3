//! The S3 family: S3 event notifications (`Records[]`), MinIO's webhook variant, Tencent
//! COS (`Records[].cos`) and S3 events through EventBridge.

use serde_json::Value;

use super::fields::{form_decode, str_at, text_at, u64_at, unquote};
use super::{ObjectEvent, Parsed, Store};

/// A `Records[]` body: S3 (`eventSource` `aws:s3`), MinIO (`minio:s3`) or COS (records
/// with `cos`). Records may mix created and other events.
pub(super) fn records(v: &Value) -> Result<Parsed, String> {
    records_of(v, false)
}

/// `records`, with every S3 record taken as MinIO's when `minio`.
fn records_of(v: &Value, minio: bool) -> Result<Parsed, String> {
    let recs = v.get("Records").and_then(Value::as_array).ok_or("Records is not an array; expected an S3 event notification")?;
    let mut format = "s3";
    let mut created = Vec::new();
    let mut ignored = 0;
    for (i, r) in recs.iter().enumerate() {
        let event = if r.get("cos").is_some() {
            format = "cos";
            cos_record(r, i)?
        } else if r.get("s3").is_some() {
            let minio = minio || str_at(r, &["eventSource"]) == Some("minio:s3");
            if minio {
                format = "minio";
            }
            s3_record(r, i, minio)?
        } else {
            return Err(format!("Records[{i}] has neither s3 nor cos"));
        };
        match event {
            Some(e) => created.push(e),
            None => ignored += 1,
        }
    }
    Ok(Parsed::Objects { format, created, ignored })
}

/// MinIO's webhook body: the S3 records under top-level `EventName` and `Key`. Its
/// records are MinIO's whatever their `eventSource` says (older MinIO said `aws:s3`).
pub(super) fn minio(v: &Value) -> Result<Parsed, String> {
    if v.get("Records").and_then(Value::as_array).is_none_or(Vec::is_empty) {
        return Err("a MinIO event (EventName, Key) without Records: nothing names the object version".into());
    }
    records_of(v, true)
}

/// Whether an S3-style event name (with or without the `s3:`/`cos:` prefix) is a
/// creation (`ObjectCreated:Put`, `:Post`, `:Copy`, `:CompleteMultipartUpload`, `:*`).
fn is_created(name: &str) -> bool {
    let name = name.strip_prefix("s3:").or_else(|| name.strip_prefix("cos:")).unwrap_or(name);
    name.starts_with("ObjectCreated:")
}

fn s3_record(r: &Value, i: usize, minio: bool) -> Result<Option<ObjectEvent>, String> {
    if !is_created(str_at(r, &["eventName"]).unwrap_or_default()) {
        return Ok(None);
    }
    let store = if minio { Store::Minio } else { Store::S3 };
    let o = |k: &str| text_at(r, &["s3", "object", k]);
    let bucket = text_at(r, &["s3", "bucket", "name"]).ok_or_else(|| format!("Records[{i}] has no s3.bucket.name"))?;
    let key = o("key").ok_or_else(|| format!("Records[{i}] has no s3.object.key"))?;
    let etag = o("eTag").map(|t| unquote(&t)).filter(|t| !t.is_empty());
    // MinIO's documented events of unversioned buckets all say versionId "1" (a
    // constant: its real version ids are UUIDs), which would make an overwrite look
    // like a redelivery; the ETag tells those apart.
    let version_id = o("versionId").filter(|v| !(store == Store::Minio && v == "1"));
    let version = version_id
        .or_else(|| etag.clone())
        .or_else(|| o("sequencer"))
        .ok_or_else(|| format!("Records[{i}] has no versionId, eTag or sequencer for {key:?}"))?;
    Ok(Some(ObjectEvent { store, bucket, key: form_decode(&key)?, size: u64_at(r, &["s3", "object", "size"]), version, etag, url: None }))
}

/// A COS record. Its key is `/{appid}/{bucket}/{key}` (the documented sample; older
/// samples show just `/{key}`) and is not encoded (a captured event shows a raw
/// `!!!!!!!` key beside a URL with `%21`). The bucket is named as COS's S3-compatible
/// API names it, `{name}-{appid}`. COS events carry no ETag in the documented sample,
/// so the version falls back to the upload's request id, which a redelivery repeats.
fn cos_record(r: &Value, i: usize) -> Result<Option<ObjectEvent>, String> {
    if !is_created(str_at(r, &["event", "eventName"]).unwrap_or_default()) {
        return Ok(None);
    }
    let c = |path: &[&str]| text_at(&r["cos"], path);
    let name = c(&["cosBucket", "name"]).ok_or_else(|| format!("Records[{i}] has no cos.cosBucket.name"))?;
    let appid = c(&["cosBucket", "appid"]).unwrap_or_default();
    let raw = c(&["cosObject", "key"]).ok_or_else(|| format!("Records[{i}] has no cos.cosObject.key"))?;
    let long = format!("/{appid}/{name}/");
    let key = raw.strip_prefix(long.as_str()).or_else(|| raw.strip_prefix('/')).unwrap_or(&raw).to_owned();
    let bucket = if appid.is_empty() || name.ends_with(&format!("-{appid}")) { name } else { format!("{name}-{appid}") };
    let etag =
        c(&["cosObject", "meta", "ETag"]).or_else(|| c(&["cosObject", "meta", "etag"])).map(|t| unquote(&t)).filter(|t| !t.is_empty());
    let version = c(&["cosObject", "vid"])
        .or_else(|| etag.clone())
        .or_else(|| c(&["cosObject", "meta", "x-cos-request-id"]))
        .ok_or_else(|| format!("Records[{i}] has no vid, ETag or x-cos-request-id for {key:?}"))?;
    Ok(Some(ObjectEvent {
        store: Store::Cos,
        bucket,
        key,
        size: u64_at(&r["cos"], &["cosObject", "size"]),
        version,
        etag,
        url: c(&["cosObject", "url"]),
    }))
}

/// An EventBridge event. Only S3's "Object Created" creates; other S3 detail types and
/// other sources' events are ignored. The key is decoded like the notification's.
pub(super) fn eventbridge(v: &Value) -> Result<Parsed, String> {
    let ignore = Parsed::Objects { format: "eventbridge", created: vec![], ignored: 1 };
    if str_at(v, &["source"]) != Some("aws.s3") || str_at(v, &["detail-type"]) != Some("Object Created") {
        return Ok(ignore);
    }
    let d = |path: &[&str]| text_at(&v["detail"], path);
    let bucket = d(&["bucket", "name"]).ok_or("the EventBridge event has no detail.bucket.name")?;
    let key = d(&["object", "key"]).ok_or("the EventBridge event has no detail.object.key")?;
    let etag = d(&["object", "etag"]).map(|t| unquote(&t)).filter(|t| !t.is_empty());
    let version = d(&["object", "version-id"])
        .or_else(|| etag.clone())
        .or_else(|| d(&["object", "sequencer"]))
        .ok_or_else(|| format!("the EventBridge event has no version-id, etag or sequencer for {key:?}"))?;
    let event = ObjectEvent {
        store: Store::S3,
        bucket,
        key: form_decode(&key)?,
        size: u64_at(&v["detail"], &["object", "size"]),
        version,
        etag,
        url: None,
    };
    Ok(Parsed::Objects { format: "eventbridge", created: vec![event], ignored: 0 })
}
