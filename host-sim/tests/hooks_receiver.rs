//! The completion-webhook receiver ([`host_sim::hooks`]) over real HTTP: a delivery
//! signed as the component signs it is taken, a stale or forged one refused with `400`,
//! and the injected faults (`500`s, lost answers) happen as seeded.

use bytes::Bytes;
use host_sim::hooks::{self, HookOptions};
use host_sim::http;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECRET: &str = "whsec_test";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// POSTs `body` to `url` as the component would, signed at time `t` with `secret`:
/// the status, or `None` when the connection closed without an answer.
async fn deliver(url: &str, secret: &str, t: u64, id: &str, body: &str) -> Option<u16> {
    let signature = format!("t={t},v1={}", hooks::sign(secret.as_bytes(), t, body.as_bytes()));
    let request = hyper::Request::post(url)
        .header("content-type", "application/json")
        .header("vod-uploader-event", "upload.done")
        .header("vod-uploader-delivery", id)
        .header("vod-uploader-signature", signature)
        .body(http::full(Bytes::from(body.to_owned())))
        .unwrap();
    http::client().request(request).await.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn signed_deliveries_are_taken_and_others_refused() {
    let hooks = hooks::start(SECRET, HookOptions::default()).await.unwrap();
    let body = r#"{"type":"upload.done","id":"u1","deliveryId":"d1"}"#;
    assert_eq!(deliver(&hooks.url(), SECRET, now(), "d1", body).await, Some(200));
    assert_eq!(deliver(&hooks.url(), SECRET, now() - 301, "d2", body).await, Some(400));
    assert_eq!(deliver(&hooks.url(), "another secret", now(), "d3", body).await, Some(400));
    let got = hooks.wait_for(|d| d.len() == 3, Duration::from_secs(10)).await.unwrap();
    assert_eq!((got[0].event.as_str(), got[0].delivery_id.as_str(), got[0].signature_ok), ("upload.done", "d1", true));
    assert_eq!(got[0].body["id"], "u1");
    assert!(!got[1].signature_ok && got[1].rejected.as_deref().unwrap().contains("timestamp"), "{:?}", got[1]);
    assert!(!got[2].signature_ok && got[2].rejected.as_deref().unwrap().contains("does not match"), "{:?}", got[2]);
}

#[tokio::test]
async fn seeded_failures_and_lost_answers() {
    let options = HookOptions { fail_rate: 0.3, seed: 7, lose_answer_rate: 0.2 };
    let hooks = hooks::start(SECRET, options).await.unwrap();
    let mut answers = Vec::new();
    for n in 0..60 {
        let body = format!(r#"{{"type":"upload.done","id":"u{n}","deliveryId":"d{n}"}}"#);
        answers.push(deliver(&hooks.url(), SECRET, now(), &format!("d{n}"), &body).await);
    }
    let got = hooks.deliveries();
    assert_eq!(got.len(), 60, "a lost answer is still a delivery received");
    for (answer, delivery) in answers.iter().zip(&got) {
        assert!(delivery.signature_ok);
        assert_eq!(answer.unwrap_or(0), delivery.answered, "{delivery:?}");
    }
    let count = |status| got.iter().filter(|d| d.answered == status).count();
    // About 20% lost, 30% of the rest failed: the seed makes the counts exact, the
    // ranges say what they mean.
    assert!((5..=20).contains(&count(0)) && (8..=25).contains(&count(500)), "lost {}, failed {}", count(0), count(500));
    assert_eq!(count(0) + count(500) + count(200), 60);
}
