//! SeaweedFS filer webhooks (`notification.webhook`): one filer event per request,
//! `{"event_type", "key", "message": {"old_entry", "new_entry", "new_parent_path"}}`,
//! sent with `Authorization: Bearer <bearer_token>` and no event-specific headers.
//!
//! The S3 gateway keeps bucket `b`'s object `k` at filer path `/buckets/b/k`; anything
//! else on the filer (`/topics`, `/buckets/.system/…`, directories) is not an object.
//! Paths are raw, not encoded.

use serde_json::Value;

use super::fields::{at, base64_bytes, md5_base64_to_hex, str_at, text_at, u64_at};
use super::{ObjectEvent, Parsed, Store};

const FORMAT: &str = "seaweed";

/// A filer event: `create` and `update` (an overwrite: old and new entry) with a file
/// as `new_entry` are a new object version; `rename` too, at the new path (the object
/// appears under a new key, like an S3 copy). Deletes and the rest are ignored.
pub(super) fn parse(v: &Value) -> Result<Parsed, String> {
    let ignore = Ok(Parsed::Objects { format: FORMAT, created: vec![], ignored: 1 });
    let kind = str_at(v, &["event_type"]).unwrap_or_default();
    let entry = &v["message"]["new_entry"];
    if !matches!(kind, "create" | "update" | "rename") || !entry.is_object() {
        return ignore;
    }
    if at(entry, &["is_directory"]).and_then(Value::as_bool) == Some(true) {
        return ignore;
    }
    // The new path: the new parent and the entry's name (for a rename, `key` is the old
    // path); `key` when the message lacks them.
    let path = match (str_at(v, &["message", "new_parent_path"]), str_at(entry, &["name"])) {
        (Some(parent), Some(name)) if !name.is_empty() => format!("{}/{name}", parent.trim_end_matches('/')),
        _ => text_at(v, &["key"]).ok_or("the SeaweedFS event has no key")?,
    };
    let Some((bucket, key)) = path.strip_prefix("/buckets/").and_then(|p| p.split_once('/')) else {
        return ignore;
    };
    if bucket.is_empty() || bucket.starts_with('.') || key.is_empty() || key.ends_with('/') {
        return ignore;
    }
    let attrs = &entry["attributes"];
    // The ETag the S3 gateway answers, stored base64-encoded as an extended attribute;
    // else the content MD5 (base64 of the raw digest), which is that ETag for a single
    // PUT.
    let etag = text_at(entry, &["extended", "Seaweed-X-Amz-ETag"])
        .and_then(|b| base64_bytes(&b))
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|t| !t.is_empty())
        .or_else(|| text_at(attrs, &["md5"]).and_then(|m| md5_base64_to_hex(&m)));
    // Protobuf JSON leaves zero out: an entry with attributes but no file_size is empty.
    let size = u64_at(attrs, &["file_size"]).or(attrs.is_object().then_some(0));
    let version = match &etag {
        Some(t) => t.clone(),
        None => {
            let mtime = at(attrs, &["mtime"]).and_then(Value::as_i64);
            let ns = at(attrs, &["mtime_ns"]).and_then(Value::as_i64).unwrap_or(0);
            match (mtime, size) {
                (Some(m), Some(s)) => format!("mtime {m}.{ns:09} size {s}"),
                _ => return Err(format!("the SeaweedFS entry {path:?} has no ETag, md5, or mtime and size")),
            }
        }
    };
    let event = ObjectEvent { store: Store::Seaweed, bucket: bucket.to_owned(), key: key.to_owned(), size, version, etag, url: None };
    Ok(Parsed::Objects { format: FORMAT, created: vec![event], ignored: 0 })
}

#[cfg(test)]
mod tests {
    use super::super::{parse as parse_body, ObjectEvent, Parsed};
    use serde_json::{json, Value};

    /// The captured create event with `edit` applied.
    fn create_with(edit: impl Fn(&mut Value)) -> Parsed {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events/seaweed-create-file.json");
        let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        edit(&mut v);
        parse_body(&[], &serde_json::to_vec(&v).unwrap()).unwrap()
    }

    fn one(p: Parsed) -> ObjectEvent {
        match p {
            Parsed::Objects { mut created, ignored: 0, .. } if created.len() == 1 => created.remove(0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn paths_outside_buckets_are_not_objects() {
        for parent in ["/buckets/.system/log", "/topics/x", "/buckets", "/", "/other/vids"] {
            let p = create_with(|v| v["message"]["new_parent_path"] = json!(parent));
            assert_eq!(p, Parsed::Objects { format: "seaweed", created: vec![], ignored: 1 }, "{parent}");
        }
    }

    #[test]
    fn the_etag_falls_back_to_the_md5_then_mtime_and_size() {
        let e = one(create_with(|v| v["message"]["new_entry"]["extended"] = json!({})));
        assert_eq!((e.version.as_str(), e.etag.as_deref()), ("74568120cf553f9b1b57e07dadffa463", Some("74568120cf553f9b1b57e07dadffa463")));
        let e = one(create_with(|v| {
            v["message"]["new_entry"]["extended"] = json!({});
            v["message"]["new_entry"]["attributes"]["md5"] = json!(null);
        }));
        assert_eq!((e.version.as_str(), e.etag), ("mtime 1795728800.000000000 size 3000000", None));
    }

    #[test]
    fn a_rename_is_an_object_at_the_new_path_and_the_key_field_is_the_fallback() {
        let e = one(create_with(|v| {
            v["event_type"] = json!("rename");
            v["message"]["new_parent_path"] = json!("/buckets/vids/done/");
        }));
        assert_eq!(e.key, "done/my clip+1.mp4");
        let e = one(create_with(|v| v["message"]["new_parent_path"] = json!(null)));
        assert_eq!((e.bucket.as_str(), e.key.as_str()), ("vids", "in/my clip+1.mp4"));
    }
}
