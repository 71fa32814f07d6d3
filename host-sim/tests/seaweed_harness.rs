//! SeaweedFS as the tests run it ([`host_sim::seaweed`]): a real S3 server that checks
//! SigV4 (a signed ranged GET is `206`, an unsigned one `403`, one signed by a key with
//! no rights `403 AccessDenied`), filled by [`host_sim::s3_client`] (curl's own
//! signer), and pushing filer events to a webhook ([`host_sim::capture`] here).
//!
//! Without `weed` (see `.ci/ensure-seaweedfs`, run by `make setup`) each test prints
//! `SKIPPED (seaweedfs)` and passes, except with `CI` set, where it fails.

use host_sim::capture;
use host_sim::s3_client::S3Client;
use host_sim::seaweed::{self, Webhook, WeedOptions};
use std::time::{Duration, Instant};

const KEY: &str = "in/my clip+1.mp4";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reads_denied_reads_and_the_create_event() {
    let Some(weed) = seaweed::require() else { return };
    let events = capture::start().await.unwrap();
    let mut options = WeedOptions::new(weed);
    let hook = Webhook::new(events.url("/events?token=t0k"), "hook-bearer");
    options.webhook = Some(Webhook { path_prefixes: vec!["/buckets/vids".into()], ..hook });
    let weed = seaweed::start(options).await.unwrap();
    let s3 = S3Client::new(weed.s3_endpoint(), seaweed::admin());
    s3.create_bucket("vids").await.unwrap();
    let bytes = host_sim::sample::data(100_000, 3);
    s3.put_bytes("vids", KEY, &bytes).await.unwrap();

    let got = s3.get("vids", KEY, Some((1000, 1999))).await.unwrap();
    assert_eq!(got.status, 206, "{}", got.text());
    assert_eq!(got.body, bytes[1000..2000]);

    let anonymous = S3Client::unsigned(weed.s3_endpoint()).get("vids", KEY, Some((0, 9))).await.unwrap();
    assert_eq!(anonymous.status, 403, "{}", anonymous.text());
    let denied = S3Client::new(weed.s3_endpoint(), seaweed::no_rights()).get("vids", KEY, Some((0, 9))).await.unwrap();
    assert_eq!(denied.status, 403, "{}", denied.text());
    assert!(denied.text().contains("<Code>AccessDenied</Code>"), "{}", denied.text());
    let wrong_secret = seaweed::Credentials { secret_key: "not-the-secret".into(), ..seaweed::admin() };
    let forged = S3Client::new(weed.s3_endpoint(), wrong_secret).get("vids", KEY, Some((0, 9))).await.unwrap();
    assert_eq!(forged.status, 403, "{}", forged.text());
    assert!(forged.text().contains("SignatureDoesNotMatch"), "{}", forged.text());

    let key = format!("/buckets/vids/{KEY}");
    let is_create = |c: &capture::Captured| c.json()["event_type"] == "create" && c.json()["key"] == key.as_str();
    let got = events.wait_for(|r| r.iter().any(is_create), Duration::from_secs(30)).await.unwrap();
    let event = got.iter().find(|c| is_create(c)).unwrap();
    assert_eq!((event.method.as_str(), event.path_and_query.as_str()), ("POST", "/events?token=t0k"));
    assert_eq!(event.header("authorization"), Some("Bearer hook-bearer"));
    assert_eq!(event.json()["message"]["new_entry"]["attributes"]["file_size"], 100_000, "{}", event.json());

    s3.delete("vids", KEY).await.unwrap();
    assert_eq!(s3.get("vids", KEY, None).await.unwrap().status, 404);
}

/// The webhook can be changed by restarting weed on the same data: the object stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_changes_the_webhook_and_keeps_the_data() {
    let Some(weed) = seaweed::require() else { return };
    let (first, second) = (capture::start().await.unwrap(), capture::start().await.unwrap());
    let mut options = WeedOptions::new(weed);
    options.webhook = Some(Webhook { path_prefixes: vec!["/buckets/bkt".into()], ..Webhook::new(first.url("/"), "") });
    let mut weed = seaweed::start(options).await.unwrap();
    let s3 = S3Client::new(weed.s3_endpoint(), seaweed::admin());
    s3.create_bucket("bkt").await.unwrap();
    s3.put_bytes("bkt", "one", b"1").await.unwrap();
    first.wait_for(|r| r.iter().any(|c| c.json()["key"] == "/buckets/bkt/one"), Duration::from_secs(30)).await.unwrap();

    let hook = Webhook { path_prefixes: vec!["/buckets/bkt".into()], ..Webhook::new(second.url("/"), "") };
    weed.restart_with_webhook(Some(hook)).await.unwrap();
    s3.put_bytes("bkt", "two", b"2").await.unwrap();
    second.wait_for(|r| r.iter().any(|c| c.json()["key"] == "/buckets/bkt/two"), Duration::from_secs(30)).await.unwrap();
    assert!(!first.requests().iter().any(|c| c.json()["key"] == "/buckets/bkt/two"));
    assert_eq!(s3.get("bkt", "one", None).await.unwrap().body, b"1");
}

/// A 300 MiB file goes in through curl, streamed; its last bytes read back. Prints the
/// time the PUT took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_file_streams_in() {
    let Some(weed) = seaweed::require() else { return };
    let weed = seaweed::start(WeedOptions::new(weed)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (size, path) = (300u64 << 20, dir.path().join("big.mp4"));
    host_sim::sample::write_sample(&path, size, 9).unwrap();
    let s3 = S3Client::new(weed.s3_endpoint(), seaweed::admin());
    s3.create_bucket("big").await.unwrap();
    let started = Instant::now();
    s3.put_file("big", "big.mp4", &path).await.unwrap();
    let took = started.elapsed();
    eprintln!("PUT of 300 MiB to SeaweedFS: {took:.2?} ({:.0} MiB/s)", 300.0 / took.as_secs_f64());
    let tail = s3.get("big", "big.mp4", Some((size - 100, size - 1))).await.unwrap();
    assert_eq!(tail.status, 206, "{}", tail.text());
    let expected = std::fs::read(&path).unwrap()[(size - 100) as usize..].to_vec();
    assert_eq!(tail.body, expected);
}
