//! Fault injection and upload-complete notification, over real HTTP on loopback.

mod common;

use common::*;
use host_sim::client::VodClient;
use host_sim::vod::faults::{FaultKind, Faults};
use host_sim::vod::{DEV_SECRET_ID, DEV_SECRET_KEY};
use std::time::Duration;
use vod_uploader::protocol::Credentials;
use vod_uploader::sign::Algorithm;

const HALF: u64 = 524_288;

async fn only(kind: FaultKind) -> Sim {
    sim_with(|c| c.faults = Faults::new(1.0, &[kind], 1, Duration::from_millis(20))).await
}

#[tokio::test]
async fn every_fault_kind_behaves_as_documented() {
    let bytes = data(1000, 1);
    let sha = sha1_hex(&bytes);

    // Retryable protocol error, before acting: nothing is created.
    let sim = only(FaultKind::Error).await;
    let answer = Call::init(&sha, 1000, HALF).send(sim.addr()).await;
    assert_eq!((answer.code(), answer.json["canRetry"].as_i64()), (-10004, Some(1)));
    assert_eq!(get(sim.addr(), &format!("/sim/sessions/{sha}")).await.0, 404);

    // 503 before acting: nothing is created.
    let sim = only(FaultKind::Http503).await;
    assert_eq!(Call::init(&sha, 1000, HALF).send(sim.addr()).await.status, 503);
    assert_eq!(get(sim.addr(), &format!("/sim/sessions/{sha}")).await.0, 404);

    // 500 after acting: the session exists although the caller saw an error.
    let sim = only(FaultKind::Http500).await;
    assert_eq!(Call::init(&sha, 1000, HALF).send(sim.addr()).await.status, 500);
    assert_eq!(get(sim.addr(), &format!("/sim/sessions/{sha}")).await.0, 200);

    // Dropped before acting: no answer, nothing created.
    let sim = only(FaultKind::DropBefore).await;
    let url = Call::init(&sha, 1000, HALF).url(sim.addr());
    assert!(send_raw("GET", &url, None).await.is_err());
    assert_eq!(get(sim.addr(), &format!("/sim/sessions/{sha}")).await.0, 404);

    // Dropped after acting: no answer, but the session exists.
    let sim = only(FaultKind::DropAfter).await;
    let url = Call::init(&sha, 1000, HALF).url(sim.addr());
    assert!(send_raw("GET", &url, None).await.is_err());
    assert_eq!(get(sim.addr(), &format!("/sim/sessions/{sha}")).await.0, 200);

    // Slow: answered normally, but not before the slow delay (20 ms) passed.
    let sim = only(FaultKind::Slow).await;
    let asked = std::time::Instant::now();
    assert_eq!(Call::init(&sha, 1000, HALF).send(sim.addr()).await.code(), 0);
    assert!(asked.elapsed() >= Duration::from_millis(20));

    // Inspection endpoints never meet faults.
    let sim = only(FaultKind::DropBefore).await;
    assert_eq!(get(sim.addr(), "/sim/files").await.0, 200);
}

#[tokio::test]
async fn a_retrying_client_completes_through_mixed_faults() {
    let sim = sim_with(|c| c.faults = Faults::new(0.3, &[], 42, Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    host_sim::sample::write_sample(&path, 9 * HALF + 777, 3).unwrap();
    let mut client = VodClient::new(
        &format!("http://{}/v2/index.php", sim.addr()),
        Credentials::new(DEV_SECRET_ID, DEV_SECRET_KEY),
        Algorithm::HmacSha256,
    )
    .unwrap();
    client.attempts = 30;
    let done = client.upload_file(&path, HALF, 4, None).await.unwrap();
    let (status, stored) = get(sim.addr(), &format!("/sim/files/{}", done.file_id)).await;
    assert_eq!(status, 200);
    assert!(stored == std::fs::read(&path).unwrap());
}

/// A receiver for upload-complete events: answers 500 `fail_first` times, then 200,
/// and hands every event body to the test.
async fn receiver(fail_first: usize) -> (std::net::SocketAddr, tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>) {
    use http_body_util::BodyExt;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (addr, _task) = host_sim::http::serve("127.0.0.1:0".parse().unwrap(), move |req: hyper::Request<hyper::body::Incoming>| {
        let (tx, seen) = (tx.clone(), seen.clone());
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            tx.send(serde_json::from_slice(&body).unwrap()).unwrap();
            let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = if n < fail_first { hyper::StatusCode::INTERNAL_SERVER_ERROR } else { hyper::StatusCode::OK };
            Ok(host_sim::http::text(status, "ok"))
        }
    })
    .await
    .unwrap();
    std::mem::forget(_task);
    (addr, rx)
}

#[tokio::test]
async fn upload_complete_event_is_sent_and_retried() {
    let (notify_addr, mut events) = receiver(2).await;
    let sim = sim_with(|c| c.notify_url = Some(format!("http://{notify_addr}/events"))).await;
    let bytes = data(2000, 4);
    let done = upload(sim.addr(), &bytes, HALF).await;
    assert_eq!(done.code(), 0);
    // Two failures and the successful third attempt: three deliveries of one event.
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap().unwrap();
        assert_eq!(event["eventType"], "NewFileUpload");
        assert_eq!(event["version"], "4.0");
        assert_eq!(event["data"]["fileId"], done.json["fileId"]);
        assert_eq!(event["data"]["fileUrl"], done.json["url"]);
        assert_eq!(event["data"]["fileName"], "clip");
        assert_eq!(event["data"]["sourceType"], "ServerUpload");
    }
    // A repeated FinishUpload is not a new upload: no new event.
    assert_eq!(Call::finish(&sha1_hex(&bytes)).send(sim.addr()).await.code(), 0);
    let upload2 = data(10, 5);
    assert_eq!(upload(sim.addr(), &upload2, HALF).await.code(), 0);
    let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap().unwrap();
    assert_eq!(next["data"]["fileSize"], 10, "the next event is the second file's, not a repeat");
}

#[tokio::test]
async fn events_stop_after_two_retries() {
    let (notify_addr, mut events) = receiver(usize::MAX).await;
    let sim = sim_with(|c| c.notify_url = Some(format!("http://{notify_addr}/events"))).await;
    assert_eq!(upload(sim.addr(), &data(3, 6), HALF).await.code(), 0);
    for _ in 0..3 {
        tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap().unwrap();
    }
    // A second upload's events come next, not a fourth attempt for the first.
    assert_eq!(upload(sim.addr(), &data(4, 7), HALF).await.code(), 0);
    let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap().unwrap();
    assert_eq!(next["data"]["fileSize"], 4);
}

/// What `faults` decides for the first `n` attempts of a request identity (the
/// simulator's decisions are a function of its fault plan and the attempt).
fn plan(faults: &Faults, identity: &str, n: usize) -> Vec<Option<FaultKind>> {
    (0..n).map(|_| faults.decide(identity)).collect()
}

#[tokio::test]
async fn an_answer_lost_after_the_service_acted_is_had_again_by_an_identical_resend() {
    let faults = || Faults::new(0.5, &[FaultKind::Http500, FaultKind::DropAfter], 3, Duration::ZERO);
    // A file whose InitUpload meets no fault, and whose UploadPart and FinishUpload
    // each lose their first answer and not the second.
    let lost_once = |plan: Vec<Option<FaultKind>>| plan[0].is_some() && plan[1].is_none();
    let (bytes, sha) = (1..)
        .map(|seed| {
            let bytes = data(1000, seed);
            let sha = sha1_hex(&bytes);
            (bytes, sha)
        })
        .find(|(_, sha)| {
            let probe = faults();
            plan(&probe, &format!("InitUpload/{sha}/"), 1) == [None]
                && lost_once(plan(&probe, &format!("UploadPart/{sha}/0"), 2))
                && lost_once(plan(&probe, &format!("FinishUpload/{sha}/"), 2))
        })
        .unwrap();
    let sim = sim_with(|c| c.faults = faults()).await;
    let a = sim.addr();
    assert_eq!(Call::init(&sha, 1000, HALF).send(a).await.code(), 0);

    let part = Call::part(&sha, 0, &bytes).url(a);
    let lost = send_raw("POST", &part, Some(bytes.clone())).await;
    assert!(lost.as_ref().map_or(true, |answer| answer.status == 500), "{lost:?}");
    let again = send_raw("POST", &part, Some(bytes.clone())).await.unwrap();
    assert_eq!((again.status, again.code()), (200, 0));
    let (_, stats) = get_json(a, "/sim/stats").await;
    assert_eq!((&stats["partsStored"], &stats["repeats"]), (&1.into(), &1.into()), "{stats}");

    let finish = Call::finish(&sha).url(a);
    let lost = send_raw("GET", &finish, None).await;
    assert!(lost.as_ref().map_or(true, |answer| answer.status == 500), "{lost:?}");
    let done = send_raw("GET", &finish, None).await.unwrap();
    assert_eq!((done.status, done.code()), (200, 0), "{done:?}");
    let (status, stored) = get(a, &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert!(stored == bytes);
}

#[tokio::test]
async fn an_identical_finish_resend_notifies_once() {
    let (notify_addr, mut events) = receiver(0).await;
    let sim = sim_with(|c| c.notify_url = Some(format!("http://{notify_addr}/events"))).await;
    let a = sim.addr();
    let bytes = data(3000, 8);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, 3000, HALF).send(a).await.code(), 0);
    assert_eq!(Call::part(&sha, 0, &bytes).send(a).await.code(), 0);
    let finish = Call::finish(&sha).url(a);
    let first = send_raw("GET", &finish, None).await.unwrap();
    assert_eq!(first.code(), 0, "{first:?}");
    let again = send_raw("GET", &finish, None).await.unwrap();
    assert_eq!((again.status, &again.json), (first.status, &first.json));
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap().unwrap();
    assert_eq!(event["data"]["fileId"], first.json["fileId"]);
    // The next event is the next file's, not a second one for the resend.
    assert_eq!(upload(a, &data(7, 9), HALF).await.code(), 0);
    let next = tokio::time::timeout(Duration::from_secs(30), events.recv()).await.unwrap().unwrap();
    assert_eq!(next["data"]["fileSize"], 7);
}
