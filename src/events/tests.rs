//! One test per fixture in `tests/fixtures/events/` (each a provider's documented sample
//! or a captured request; `SOURCES.md` there names where each came from), then the
//! edge cases.

use super::*;
use serde_json::{json, Value};

/// A fixture's body, and its headers from `<name>.headers` (or `headers_file`).
fn fixture(name: &str, headers_file: Option<&str>) -> (Vec<(String, String)>, Vec<u8>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/events/");
    let body = std::fs::read(format!("{dir}{name}.json")).expect("fixture exists");
    let headers = headers_file.map_or_else(Vec::new, |h| {
        std::fs::read_to_string(format!("{dir}{h}.headers"))
            .expect("headers exist")
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect()
    });
    (headers, body)
}

fn parsed(name: &str, headers: Option<&str>) -> Parsed {
    let (h, b) = fixture(name, headers);
    parse(&h, &b).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The one created object of a fixture, checking its format and that nothing was ignored.
fn one(name: &str, headers: Option<&str>, want_format: &str) -> ObjectEvent {
    match parsed(name, headers) {
        Parsed::Objects { format, mut created, ignored } => {
            assert_eq!((format, created.len(), ignored), (want_format, 1, 0), "{name}");
            created.remove(0)
        }
        other => panic!("{name}: {other:?}"),
    }
}

fn ignored_only(name: &str, headers: Option<&str>, want_format: &'static str) {
    let p = parsed(name, headers);
    assert_eq!(p, Parsed::Objects { format: want_format, created: vec![], ignored: 1 }, "{name}");
}

fn check(e: &ObjectEvent, store: Store, bucket: &str, key: &str, size: Option<u64>, version: &str) {
    assert_eq!((e.store, e.bucket.as_str(), e.key.as_str(), e.size, e.version.as_str()), (store, bucket, key, size, version));
}

// AWS, "Event message structure" (awsdocs/amazon-s3-userguide notification-content-structure.md).
#[test]
fn s3_put() {
    let e = one("s3-put", None, "s3");
    check(&e, Store::S3, "mybucket", "HappyFace.jpg", Some(1024), "096fKKXTRTtl3on89fVO.nfljtsv6qko");
    assert_eq!(e.etag.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
}

#[test]
fn s3_test_event() {
    assert_eq!(parsed("s3-test-event", None), Parsed::Test);
}

// AWS SNS developer guide, SendMessageToHttp.prepare.md.
#[test]
fn sns_subscription_confirmation() {
    let Parsed::SnsConfirm { subscribe_url, topic_arn } = parsed("sns-subscription-confirmation", Some("sns-subscription-confirmation"))
    else {
        panic!("not a confirmation")
    };
    assert!(subscribe_url.starts_with("https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&TopicArn="));
    assert_eq!(topic_arn, "arn:aws:sns:us-west-2:123456789012:MyTopic");
}

#[test]
fn sns_notification_unwraps_the_s3_event() {
    let e = one("sns-notification-s3", Some("sns-notification"), "sns");
    assert_eq!(e, one("s3-put", None, "s3"), "the same object version as sent directly");
    assert_eq!(parsed("sns-notification-s3-test-event", Some("sns-notification")), Parsed::Test);
}

#[test]
fn sns_notification_of_something_else_is_an_error_that_says_so() {
    let (h, b) = fixture("sns-notification-hello", Some("sns-notification"));
    let e = parse(&h, &b).unwrap_err();
    assert!(e.contains("SNS Notification's Message is not JSON"), "{e}");
}

// AWS, "EventBridge event message structure" (awsdocs/amazon-s3-userguide ev-events.md).
#[test]
fn eventbridge_object_created_and_deleted() {
    let e = one("eventbridge-object-created", None, "eventbridge");
    check(&e, Store::S3, "DOC-EXAMPLE-BUCKET1", "example-key", Some(5), "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e");
    ignored_only("eventbridge-object-deleted", None, "eventbridge");
}

// minio/minio docs/bucket/notifications/README.md (the event body its targets receive).
#[test]
fn minio_webhook() {
    let e = one("minio-put", None, "minio");
    // versionId "1" is MinIO's constant for unversioned buckets: the ETag is the version.
    check(&e, Store::Minio, "images", "myphoto.jpg", Some(6474), "430f89010c77aa34fc8760696da62d08-1");
    assert_eq!(e.etag.as_deref(), Some("430f89010c77aa34fc8760696da62d08-1"));
}

// Tencent Cloud SCF, "COS trigger" event message structure.
#[test]
fn cos_object_created() {
    let e = one("cos-object-created", None, "cos");
    check(&e, Store::Cos, "testpic-1253970026", "testfile", Some(1029), "NWMxOWY4MGFfMjViMjU4NjRfMTUyMVxxxxxxxxx=");
    assert_eq!(e.url.as_deref(), Some("http://testpic-1253970026.cos.ap-chengdu.myqcloud.com/testfile"));
}

// GoogleCloudPlatform/functions-framework-conformance storage-cloudevent-input.json.
#[test]
fn gcs_cloudevents_structured_and_binary() {
    let s = one("gcs-cloudevent-structured", None, "cloudevents-gcs");
    check(&s, Store::Gcs, "some-bucket", "folder/Test.cs", Some(352), "1587627537231057");
    assert_eq!(s.etag.as_deref(), Some("905f0cb89e7e093271bf28474b5c7346"));
    assert_eq!(one("gcs-cloudevent-binary", Some("gcs-cloudevent-binary"), "cloudevents-gcs"), s);
}

// Pub/Sub push envelope (Pub/Sub docs) around a GCS notification (Cloud Storage docs).
#[test]
fn gcs_pubsub_push() {
    let e = one("gcs-pubsub-push-finalize", None, "pubsub-gcs");
    assert_eq!(e, one("gcs-cloudevent-structured", None, "cloudevents-gcs"));
    ignored_only("gcs-pubsub-push-delete", None, "pubsub-gcs");
}

#[test]
fn a_forged_sns_confirmation_is_refused() {
    let (h, b) = fixture("sns-subscription-confirmation", Some("sns-subscription-confirmation"));
    let mut v: Value = serde_json::from_slice(&b).unwrap();
    v["SubscribeURL"] = json!("http://10.0.0.1/admin");
    let e = parse(&h, &serde_json::to_vec(&v).unwrap()).unwrap_err();
    assert!(e.contains("not an https URL of an SNS endpoint"), "{e}");
}

#[test]
fn eventarc_pubsub_cloudevent_carries_a_gcs_notification() {
    let (_, b) = fixture("gcs-pubsub-push-finalize", None);
    let headers = [("ce-type", "google.cloud.pubsub.topic.v1.messagePublished"), ("ce-specversion", "1.0")]
        .map(|(n, v)| (n.to_owned(), v.to_owned()));
    let e = created(parse(&headers, &b).unwrap());
    assert_eq!(e, [one("gcs-pubsub-push-finalize", None, "pubsub-gcs")]);
}

// MicrosoftDocs/azure-docs articles/event-grid/event-schema-blob-storage.md.
#[test]
fn azure_cloudevents_and_event_grid() {
    let e = one("azure-cloudevent-blob-created", None, "cloudevents-azure");
    check(&e, Store::Azure, "test-container", "new-file.txt", Some(524288), "0x8D4BCC2E4835CD0");
    assert_eq!(e.url.as_deref(), Some("https://my-storage-account.blob.core.windows.net/testcontainer/new-file.txt"));
    assert_eq!(one("eventgrid-blob-created", Some("eventgrid"), "eventgrid"), e);
    ignored_only("azure-cloudevent-blob-deleted", None, "cloudevents-azure");
    ignored_only("eventgrid-blob-deleted", Some("eventgrid"), "eventgrid");
}

// MicrosoftDocs/azure-docs articles/event-grid/webhook-event-delivery.md.
#[test]
fn event_grid_validation() {
    let p = parsed("eventgrid-subscription-validation", Some("eventgrid-subscription-validation"));
    assert_eq!(p, Parsed::EventGridValidation { code: "512d38b6-c7b8-40c8-89fe-f46f9e9622b6".into(), created: vec![] });
}

// Captured from SeaweedFS 4.48 `weed server -s3 -filer` with notification.webhook.
#[test]
fn seaweed_create_update_delete_and_directory() {
    let c = one("seaweed-create-file", Some("seaweed"), "seaweed");
    check(&c, Store::Seaweed, "vids", "in/my clip+1.mp4", Some(3_000_000), "74568120cf553f9b1b57e07dadffa463");
    let u = one("seaweed-update-file", Some("seaweed"), "seaweed");
    check(&u, Store::Seaweed, "vids", "in/my clip+1.mp4", Some(1_000_000), "aff596e45d264d435d486bf534798c01");
    assert_eq!(u.etag.as_deref(), Some(u.version.as_str()));
    assert_ne!(upload_id(&c), upload_id(&u), "an overwrite is a new upload");
    ignored_only("seaweed-delete-file", Some("seaweed"), "seaweed");
    ignored_only("seaweed-create-dir", Some("seaweed"), "seaweed");
}

/// The S3 sample with its record changed by `edit`.
fn s3_with(edit: impl Fn(&mut Value)) -> Parsed {
    let (_, b) = fixture("s3-put", None);
    let mut v: Value = serde_json::from_slice(&b).unwrap();
    edit(&mut v["Records"][0]);
    parse(&[], &serde_json::to_vec(&v).unwrap()).unwrap()
}

fn created(p: Parsed) -> Vec<ObjectEvent> {
    match p {
        Parsed::Objects { created, .. } => created,
        other => panic!("{other:?}"),
    }
}

#[test]
fn s3_keys_are_form_decoded() {
    for (raw, key) in [("red+flower.jpg", "red flower.jpg"), ("c%2B%2B.mp4", "c++.mp4"), ("a%20b%2Fc.mp4", "a b/c.mp4")] {
        let c = created(s3_with(|r| r["s3"]["object"]["key"] = json!(raw)));
        assert_eq!(c[0].key, key);
    }
}

#[test]
fn s3_event_names_with_and_without_prefix() {
    let c = created(s3_with(|r| r["eventName"] = json!("s3:ObjectCreated:CompleteMultipartUpload")));
    assert_eq!(c.len(), 1);
    let p = s3_with(|r| r["eventName"] = json!("ObjectRemoved:Delete"));
    assert_eq!(p, Parsed::Objects { format: "s3", created: vec![], ignored: 1 });
}

#[test]
fn s3_without_a_version_id_uses_the_unquoted_etag() {
    let c = created(s3_with(|r| {
        r["s3"]["object"]["versionId"] = json!("null");
        r["s3"]["object"]["eTag"] = json!("\"abc\"");
    }));
    assert_eq!((c[0].version.as_str(), c[0].etag.as_deref()), ("abc", Some("abc")));
}

#[test]
fn several_records_in_one_body() {
    let (_, b) = fixture("s3-put", None);
    let mut v: Value = serde_json::from_slice(&b).unwrap();
    let mut second = v["Records"][0].clone();
    second["s3"]["object"]["key"] = json!("b.mp4");
    let mut removed = second.clone();
    removed["eventName"] = json!("ObjectRemoved:Delete");
    v["Records"].as_array_mut().unwrap().extend([second, removed]);
    let Parsed::Objects { created, ignored, .. } = parse(&[], &serde_json::to_vec(&v).unwrap()).unwrap() else { panic!() };
    assert_eq!((created.len(), ignored, created[1].key.as_str()), (2, 1, "b.mp4"));
}

#[test]
fn event_grid_array_mixing_validation_and_data_keeps_both() {
    let (_, v) = fixture("eventgrid-subscription-validation", None);
    let (_, d) = fixture("eventgrid-blob-created", None);
    let mut items: Vec<Value> = serde_json::from_slice(&v).unwrap();
    items.extend(serde_json::from_slice::<Vec<Value>>(&d).unwrap());
    let Parsed::EventGridValidation { code, created } = parse(&[], &serde_json::to_vec(&items).unwrap()).unwrap() else { panic!() };
    assert_eq!((code.as_str(), created.len()), ("512d38b6-c7b8-40c8-89fe-f46f9e9622b6", 1));
}

#[test]
fn gcs_object_names_are_raw() {
    let (_, b) = fixture("gcs-cloudevent-structured", None);
    let mut v: Value = serde_json::from_slice(&b).unwrap();
    v["data"]["name"] = json!("a+b%20c.mp4");
    assert_eq!(created(parse(&[], &serde_json::to_vec(&v).unwrap()).unwrap())[0].key, "a+b%20c.mp4");
}

#[test]
fn unknown_bodies_are_errors_listing_the_formats() {
    for body in [&b"not json"[..], b"", b"  ", b"[]", b"42", b"{\"hello\": 1}", b"[1, 2]"] {
        let e = parse(&[], body).unwrap_err();
        assert!(e.contains("expected one of: S3 event notification") && e.contains("CloudEvents 1.0"), "{e}");
    }
}

#[test]
fn webhook_options_echo_the_origin() {
    let h = |v: &str| vec![("webhook-request-origin".to_owned(), v.to_owned())];
    let o = webhook_options(&h("eventgrid.azure.net"), None).unwrap();
    assert_eq!((o.allowed_origin.as_str(), o.allowed_rate.as_str()), ("eventgrid.azure.net", "*"));
    assert_eq!(webhook_options(&h("x"), Some(120)).unwrap().allowed_rate, "120");
    assert!(webhook_options(&[], None).unwrap_err().contains("WebHook-Request-Origin"));
    assert!(webhook_options(&h("a\r\nSet-Cookie: x"), None).is_err());
}

#[test]
fn upload_id_is_frozen_and_looks_like_the_others() {
    let e = one("s3-put", None, "s3");
    let id = upload_id(&e);
    assert_eq!(id, upload_id(&one("sns-notification-s3", Some("sns-notification"), "sns")));
    assert!(crate::hex::is_hex(&id, 20) && id.bytes().all(|b| !b.is_ascii_uppercase()));
    // sha1(b"vod-uploader event v1\n" + b'["s3","mybucket","HappyFace.jpg","096fKKXTRTtl3on89fVO.nfljtsv6qko"]')[..10],
    // computed independently (Python hashlib); changing it loses every stored upload.
    assert_eq!(id, "8e52ceb50be607c546dd");
}
