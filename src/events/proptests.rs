//! Properties: `parse` never panics, whatever the bytes, headers or JSON shape (random
//! JSON built from the field names the parsers look for, and the documented samples
//! with random subtrees replaced or removed, which get past detection into every
//! parser: about a third of those still yield objects), and `upload_id` changes with
//! every field of the identity.

use super::*;
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Field names and values the parsers look for, so random JSON takes their branches.
const WORDS: &[&str] = &[
    "Records",
    "s3",
    "cos",
    "object",
    "bucket",
    "name",
    "key",
    "size",
    "eTag",
    "versionId",
    "sequencer",
    "eventName",
    "eventSource",
    "minio:s3",
    "ObjectCreated:Put",
    "s3:ObjectCreated:*",
    "cos:ObjectCreated:*",
    "EventName",
    "Key",
    "Event",
    "s3:TestEvent",
    "Type",
    "TopicArn",
    "Message",
    "SubscribeURL",
    "Notification",
    "SubscriptionConfirmation",
    "detail-type",
    "detail",
    "source",
    "aws.s3",
    "Object Created",
    "version-id",
    "etag",
    "specversion",
    "type",
    "subject",
    "data",
    "data_base64",
    "google.cloud.storage.object.v1.finalized",
    "Microsoft.Storage.BlobCreated",
    "/blobServices/default/containers/c/blobs/b",
    "generation",
    "md5Hash",
    "message",
    "subscription",
    "attributes",
    "eventType",
    "OBJECT_FINALIZE",
    "bucketId",
    "objectId",
    "objectGeneration",
    "Microsoft.EventGrid.SubscriptionValidationEvent",
    "validationCode",
    "contentLength",
    "api",
    "CreateFile",
    "cosBucket",
    "cosObject",
    "appid",
    "vid",
    "meta",
    "event_type",
    "create",
    "update",
    "new_entry",
    "new_parent_path",
    "/buckets/b",
    "is_directory",
    "attributes",
    "file_size",
    "extended",
    "Seaweed-X-Amz-ETag",
    "md5",
    "mtime",
    "%",
    "%zz",
    "+",
    "",
    "null",
    "e30=",
    "kF8MuJ5+CTJxvyhHS1xzRg==",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![4 => prop::sample::select(WORDS).prop_map(str::to_owned), 1 => ".{0,12}"]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((word(), inner.clone()), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            // A JSON document inside a string, as SNS's Message and base64 data carry.
            inner.prop_map(|v| Value::String(v.to_string())),
        ]
    })
}

/// The documented samples, to mutate: random JSON alone rarely gets past detection.
const FIXTURES: &[&str] = &[
    include_str!("../../tests/fixtures/events/s3-put.json"),
    include_str!("../../tests/fixtures/events/minio-put.json"),
    include_str!("../../tests/fixtures/events/cos-object-created.json"),
    include_str!("../../tests/fixtures/events/eventbridge-object-created.json"),
    include_str!("../../tests/fixtures/events/sns-notification-s3.json"),
    include_str!("../../tests/fixtures/events/sns-subscription-confirmation.json"),
    include_str!("../../tests/fixtures/events/gcs-cloudevent-structured.json"),
    include_str!("../../tests/fixtures/events/gcs-pubsub-push-finalize.json"),
    include_str!("../../tests/fixtures/events/azure-cloudevent-blob-created.json"),
    include_str!("../../tests/fixtures/events/eventgrid-blob-created.json"),
    include_str!("../../tests/fixtures/events/eventgrid-subscription-validation.json"),
    include_str!("../../tests/fixtures/events/seaweed-create-file.json"),
    include_str!("../../tests/fixtures/events/seaweed-update-file.json"),
];

/// Replaces the node that `steps` lead to (each step picks a child, modulo their
/// number; the walk stops early at a leaf) with `new`, or removes it from its object.
fn mutate(v: &mut Value, steps: &[usize], new: Option<Value>) {
    let Some((&step, rest)) = steps.split_first() else {
        *v = new.unwrap_or(Value::Null);
        return;
    };
    match v {
        Value::Array(items) if !items.is_empty() => {
            let n = items.len();
            mutate(&mut items[step % n], rest, new)
        }
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(step % map.len()).cloned().unwrap_or_default();
            match (rest.is_empty(), new) {
                (true, None) => {
                    map.remove(&key);
                }
                (_, new) => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate(child, rest, new)
                    }
                }
            }
        }
        _ => *v = new.unwrap_or(Value::Null),
    }
}

fn fixture_mutant() -> impl Strategy<Value = Value> {
    let edit = (prop::collection::vec(any::<usize>(), 0..7), prop::option::of(json_value()));
    (prop::sample::select(FIXTURES), prop::collection::vec(edit, 1..4)).prop_map(|(text, edits)| {
        let mut v: Value = serde_json::from_str(text).unwrap_or_default();
        for (steps, new) in edits {
            mutate(&mut v, &steps, new);
        }
        v
    })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        prop::sample::select(&["ce-type", "ce-specversion", "ce-subject", "webhook-request-origin"][..]).prop_map(str::to_owned),
        "[a-z-]{0,10}",
    ];
    prop::collection::vec((name, word()), 0..4)
}

fn object_event() -> impl Strategy<Value = ObjectEvent> {
    let store = prop::sample::select(&[Store::S3, Store::Minio, Store::Gcs, Store::Azure, Store::Cos, Store::Seaweed][..]);
    (store, ".{0,8}", ".{0,8}", ".{0,8}").prop_map(|(store, bucket, key, version)| ObjectEvent {
        store,
        bucket,
        key,
        size: None,
        version,
        etag: None,
        url: None,
    })
}

proptest! {
    #[test]
    fn parse_never_panics_on_bytes(h in headers(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse(&h, &body);
    }

    #[test]
    fn parse_never_panics_on_json(h in headers(), v in json_value()) {
        let _ = parse(&h, &serde_json::to_vec(&v).unwrap());
        let _ = parse(&[], &serde_json::to_vec(&Value::Array(vec![v])).unwrap());
    }

    #[test]
    fn parse_never_panics_on_mutated_samples(v in fixture_mutant()) {
        let _ = parse(&[], &serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn created_objects_always_name_a_version(v in prop_oneof![json_value(), fixture_mutant()]) {
        if let Ok(Parsed::Objects { created, .. } | Parsed::EventGridValidation { created, .. }) =
            parse(&[], &serde_json::to_vec(&v).unwrap())
        {
            prop_assert!(created.iter().all(|e| !e.version.is_empty() && !e.bucket.is_empty()));
        }
    }

    #[test]
    fn upload_id_changes_with_any_field(a in object_event(), b in object_event()) {
        let same = (a.store, &a.bucket, &a.key, &a.version) == (b.store, &b.bucket, &b.key, &b.version);
        prop_assert_eq!(upload_id(&a) == upload_id(&b), same);
        let size_and_etag = ObjectEvent { size: Some(7), etag: Some("x".into()), ..a.clone() };
        prop_assert_eq!(upload_id(&a), upload_id(&size_and_etag));
    }
}
