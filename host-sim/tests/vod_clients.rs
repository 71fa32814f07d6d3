//! Independent clients that follow the protocol document, each in its own way, over
//! real HTTP on loopback: what they send must be accepted, and a replay (the same
//! signed request sent again) must get the first answer and change nothing.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HALF: u64 = 524_288;
const MIB: u64 = 1_048_576;

/// Sends a request; the status and the answer's bytes exactly as they arrived.
async fn send_bytes(method: &str, url: &str, body: Option<Vec<u8>>) -> (u16, Bytes) {
    let request =
        hyper::Request::builder().method(method).uri(url).body(host_sim::http::full(Bytes::from(body.unwrap_or_default()))).unwrap();
    let response = host_sim::http::client().request(request).await.expect("connection");
    let status = response.status().as_u16();
    (status, response.into_body().collect().await.unwrap().to_bytes())
}

async fn stats(addr: SocketAddr) -> Value {
    get_json(addr, "/sim/stats").await.1
}

/// A call with the given Timestamp and Nonce.
fn at(call: Call, timestamp: i64, nonce: u64) -> Call {
    call.with("Timestamp", &timestamp.to_string()).with("Nonce", &nonce.to_string())
}

#[tokio::test]
async fn distinct_requests_sharing_timestamp_and_nonce_all_succeed() {
    let sim = sim().await;
    let a = sim.addr();
    let ts = now();
    let (one, two) = (data(HALF as usize + 10, 31), data(20, 32));
    let (sha1, sha2) = (sha1_hex(&one), sha1_hex(&two));
    // Two sessions, two parts of one file, and a part of the other: one Timestamp and
    // one Nonce for all of them, every parameter list different.
    assert_eq!(at(Call::init(&sha1, one.len() as u64, HALF), ts, 7).send(a).await.code(), 0);
    assert_eq!(at(Call::init(&sha2, two.len() as u64, HALF), ts, 7).send(a).await.code(), 0);
    assert_eq!(at(Call::part(&sha1, 0, &one[..HALF as usize]), ts, 7).send(a).await.code(), 0);
    assert_eq!(at(Call::part(&sha1, HALF, &one[HALF as usize..]), ts, 7).send(a).await.code(), 0);
    assert_eq!(at(Call::part(&sha2, 0, &two), ts, 7).send(a).await.code(), 0);
    // The Node.js SDK's millisecond Timestamps: different milliseconds, same second.
    let done = at(Call::finish(&sha1), ts * 1000 + 1, 7).send(a).await;
    assert_eq!(done.code(), 0, "{done:?}");
    assert_eq!(at(Call::finish(&sha2), ts * 1000 + 2, 7).send(a).await.code(), 0);
    // Nonce=0 is a uint like any other.
    let three = data(5, 33);
    assert_eq!(at(Call::init(&sha1_hex(&three), 5, HALF), ts, 0).send(a).await.code(), 0);
    assert_eq!(at(Call::part(&sha1_hex(&three), 0, &three), ts, 0).send(a).await.code(), 0);
    assert_eq!(at(Call::finish(&sha1_hex(&three)), ts, 0).send(a).await.code(), 0);
    assert_eq!(stats(a).await["repeats"], 0, "none of them is a repeat");
    let (_, stored) = get(a, &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
    assert!(stored == one);
}

#[tokio::test]
async fn a_whole_upload_with_one_timestamp_and_nonces_from_a_tiny_range() {
    let sim = sim().await;
    let a = sim.addr();
    let bytes = std::sync::Arc::new(data(24 * HALF as usize + 4321, 34));
    let sha = sha1_hex(&bytes);
    let ts = now();
    assert_eq!(at(Call::init(&sha, bytes.len() as u64, HALF), ts, 0).send(a).await.code(), 0);
    // Four clients at once, each drawing its Nonce from {0, 1, 2}: every Nonce is used by
    // many parts in the same second.
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..4u64 {
        let (bytes, sha) = (bytes.clone(), sha.clone());
        tasks.spawn(async move {
            for (i, chunk) in bytes.chunks(HALF as usize).enumerate().skip(client as usize).step_by(4) {
                let answer = at(Call::part(&sha, i as u64 * HALF, chunk), ts, i as u64 % 3).send(a).await;
                assert_eq!(answer.code(), 0, "part {i}: {answer:?}");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let done = at(Call::finish(&sha), ts, 1).send(a).await;
    assert_eq!(done.code(), 0, "{done:?}");
    let (_, stored) = get(a, &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
    assert!(stored == *bytes);
    assert_eq!((stats(a).await["partsStored"].as_u64(), stats(a).await["repeats"].as_u64()), (Some(25), Some(0)));
}

#[tokio::test]
async fn an_identical_resend_gets_the_first_answer_and_changes_nothing() {
    let sim = sim().await;
    let a = sim.addr();
    let bytes = data(2 * HALF as usize + 99, 35);
    let sha = sha1_hex(&bytes);
    let parts: Vec<&[u8]> = bytes.chunks(HALF as usize).collect();

    // InitUpload: the repeat gets code 0 again, not the code 1 a new request would get.
    let init = Call::init(&sha, bytes.len() as u64, HALF).url(a);
    let first = send_bytes("GET", &init, None).await;
    assert_eq!(send_bytes("GET", &init, None).await, first);
    assert_eq!(serde_json::from_slice::<Value>(&first.1).unwrap()["code"], 0);

    // UploadPart: the repeat stores nothing and counts as no part.
    let part = Call::part(&sha, 0, parts[0]).url(a);
    let first = send_bytes("POST", &part, Some(parts[0].to_vec())).await;
    assert_eq!(first.0, 200);
    let before = stats(a).await;
    assert_eq!(send_bytes("POST", &part, Some(parts[0].to_vec())).await, first);
    let after = stats(a).await;
    for counter in ["partsStored", "partsResent", "partsAfterFinish", "faults"] {
        assert_eq!(after[counter], before[counter], "{counter}");
    }
    assert_eq!(after["repeats"].as_u64(), Some(before["repeats"].as_u64().unwrap() + 1));

    // A code 1 answer stays the first one, although the session changed since.
    let resume = Call::init(&sha, bytes.len() as u64, MIB).url(a);
    let first = send_bytes("GET", &resume, None).await;
    assert_eq!(serde_json::from_slice::<Value>(&first.1).unwrap()["listParts"].as_array().unwrap().len(), 1);
    assert_eq!(Call::part(&sha, HALF, parts[1]).send(a).await.code(), 0);
    assert_eq!(send_bytes("GET", &resume, None).await, first);
    let (_, session) = get_json(a, &format!("/sim/sessions/{sha}")).await;
    assert_eq!((session["partsHeld"].as_u64(), session["dataSize"].as_u64()), (Some(2), Some(HALF)));

    // A refusal that settles nothing is kept too: the same FinishUpload, sent again once
    // the parts are all there, is still the answer to the request as first sent.
    let finish = Call::finish(&sha).url(a);
    let refused = send_bytes("GET", &finish, None).await;
    assert_eq!(serde_json::from_slice::<Value>(&refused.1).unwrap()["code"], -10003);
    assert_eq!(Call::part(&sha, 2 * HALF, parts[2]).send(a).await.code(), 0);
    assert_eq!(send_bytes("GET", &finish, None).await, refused);
    assert_eq!(get_json(a, &format!("/sim/sessions/{sha}")).await.1["state"], "open");

    // FinishUpload: done once; its repeat is the same answer and finishes nothing again.
    let finish = Call::finish(&sha).url(a);
    let done = send_bytes("GET", &finish, None).await;
    assert_eq!(send_bytes("GET", &finish, None).await, done);
    let (_, files) = get_json(a, "/sim/files").await;
    assert_eq!(files["files"].as_array().unwrap().len(), 1);
    // The parameters in another order, or a name in PHP's spelling (`_` for `.`, signed
    // alike), make the same signed request: code 0 again, where a new one would get 1.
    let other = sha1_hex(b"reordered");
    let mut params = Call::init(&other, 9, HALF).with("tags.1", "a").signed(a);
    let first = send_bytes("GET", &url_of(a, "/v2/index.php", &params), None).await;
    assert_eq!(serde_json::from_slice::<Value>(&first.1).unwrap()["code"], 0);
    params.reverse();
    params.iter_mut().find(|(k, _)| k == "tags.1").unwrap().0 = "tags_1".into();
    assert_eq!(send_bytes("GET", &url_of(a, "/v2/index.php", &params), None).await, first);
}

/// Sends the head of an UploadPart and `sent` bytes of its body on a connection of its
/// own, and leaves it there.
async fn stalled_part(a: SocketAddr, url: &str, body: &[u8], sent: usize) -> tokio::net::TcpStream {
    let path = url.split_once(&a.to_string()).unwrap().1;
    let mut stream = tokio::net::TcpStream::connect(a).await.unwrap();
    let head = format!("POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..sent]).await.unwrap();
    // Long enough for the server to admit it and start reading its body.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stream
}

/// Reads one HTTP/1.1 answer (with a Content-Length) from `stream`; its body.
async fn answer_of(stream: &mut tokio::net::TcpStream) -> Bytes {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(head) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head_text = String::from_utf8_lossy(&answer[..head]).to_ascii_lowercase();
            let len: usize = head_text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a Content-Length");
            if answer.len() >= head + 4 + len {
                return Bytes::copy_from_slice(&answer[head + 4..head + 4 + len]);
            }
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before a whole answer: {:?}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
}

/// A session of one part, the part's first request stalled after 1000 body bytes, and
/// the same signed request sent again, checked to be waiting for the first: the
/// part's bytes, the first's connection and the repeat.
async fn part_with_a_waiting_repeat(a: SocketAddr, seed: u64) -> (Vec<u8>, tokio::net::TcpStream, tokio::task::JoinHandle<(u16, Bytes)>) {
    let bytes = data(HALF as usize, seed);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, HALF, HALF).send(a).await.code(), 0);
    let url = Call::part(&sha, 0, &bytes).url(a);
    let first = stalled_part(a, &url, &bytes, 1000).await;
    let repeat_body = bytes.clone();
    let mut repeat = tokio::spawn(async move { send_bytes("POST", &url, Some(repeat_body)).await });
    assert!(tokio::time::timeout(Duration::from_millis(500), &mut repeat).await.is_err(), "the repeat must wait for the first's answer");
    (bytes, first, repeat)
}

#[tokio::test]
async fn a_repeat_while_the_first_is_in_flight_waits_for_its_answer() {
    let sim = sim().await;
    let a = sim.addr();
    let (bytes, mut first, repeat) = part_with_a_waiting_repeat(a, 36).await;
    first.write_all(&bytes[1000..]).await.unwrap();
    let answer = answer_of(&mut first).await;
    let (status, repeated) = repeat.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(repeated, answer, "the repeat gets the first's answer");
    assert_eq!(serde_json::from_slice::<Value>(&repeated).unwrap()["code"], 0);
    let counters = stats(a).await;
    assert_eq!((counters["partsStored"].as_u64(), counters["repeats"].as_u64()), (Some(1), Some(1)));
}

#[tokio::test]
async fn a_repeat_of_a_request_whose_body_did_not_arrive_runs_in_its_place() {
    let sim = sim().await;
    let a = sim.addr();

    // The first is cut short while its repeat waits: the repeat is run instead.
    let (_, mut first, repeat) = part_with_a_waiting_repeat(a, 37).await;
    first.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = first.read_to_string(&mut answer).await;
    assert!(answer.contains("-10006") && answer.contains("could not be read"), "{answer}");
    let (status, repeated) = repeat.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_slice::<Value>(&repeated).unwrap()["code"], 0);

    // A body that does not match the signed dataMd5 is not the signed request either:
    // the same signed request with the right body is run.
    let other = data(HALF as usize, 38);
    let sha = sha1_hex(&other);
    assert_eq!(Call::init(&sha, HALF, HALF).send(a).await.code(), 0);
    let url = Call::part(&sha, 0, &other).url(a);
    let mut flipped = other.clone();
    flipped[5] ^= 1;
    let (_, refused) = send_bytes("POST", &url, Some(flipped)).await;
    assert_eq!(serde_json::from_slice::<Value>(&refused).unwrap()["code"], -10006);
    let (_, stored) = send_bytes("POST", &url, Some(other.clone())).await;
    assert_eq!(serde_json::from_slice::<Value>(&stored).unwrap()["code"], 0);
    let counters = stats(a).await;
    assert_eq!((counters["partsStored"].as_u64(), counters["repeats"].as_u64()), (Some(2), Some(0)));
    assert_eq!(Call::finish(&sha).send(a).await.code(), 0);
}

#[tokio::test]
async fn what_the_document_allows_is_accepted_and_what_it_forbids_refused() {
    let sim = sim().await;
    let a = sim.addr();
    let bytes = data(1000, 39);
    let sha = sha1_hex(&bytes);
    // 20 tags, of any length; a fileType that is not letters and digits only.
    let mut init = Call::init(&sha, 1000, HALF).with("fileType", "mp4-hd");
    for i in 1..=20 {
        init = init.with(&format!("tags.{i}"), &format!("tag {i} {}", "x".repeat(40)));
    }
    assert_eq!(init.send(a).await.code(), 0);
    let (_, session) = get_json(a, &format!("/sim/sessions/{sha}")).await;
    assert_eq!((session["tags"].as_array().unwrap().len(), &session["fileType"]), (20, &Value::from("mp4-hd")));
    assert_eq!(Call::part(&sha, 0, &bytes).send(a).await.code(), 0);
    let done = Call::finish(&sha).send(a).await;
    assert!(done.json["url"].as_str().unwrap().ends_with("/f0.mp4-hd"), "{done:?}");
    let other = sha1_hex(b"m3u8");
    assert_eq!(Call::init(&other, 4, HALF).with("fileType", "m3u8").with("tags.x", "not a tag").send(a).await.code(), 0);

    // An empty file: no parts, then FinishUpload.
    let empty = sha1_hex(b"");
    assert_eq!(Call::init(&empty, 0, HALF).send(a).await.code(), 0);
    let done = Call::finish(&empty).send(a).await;
    assert_eq!(done.code(), 0, "{done:?}");
    assert_eq!(get(a, &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await, (200, vec![]));

    // What the document does state is still refused.
    let base = || Call::init(&sha1_hex(b"refused"), 10, HALF);
    base().with("fileName", &"n".repeat(41)).send(a).await.refused(-10003, "fileName");
    base().with("fileName", "a*b").send(a).await.refused(-10003, "fileName");
    base().with("fileSha", &"A".repeat(39)).send(a).await.refused(-10003, "fileSha");
    base().with("dataSize", "2097152").send(a).await.refused(-10003, "dataSize");
    base().without("fileType").send(a).await.refused(-10003, "fileType");
    base().with("isTranscode", "2").send(a).await.refused(-10003, "isTranscode");
    base().with("Region", "us").send(a).await.refused(-10001, "Region");
    base().with("Nonce", "-1").send(a).await.refused(-10001, "Nonce");
    assert_eq!(get(a, &format!("/sim/sessions/{}", sha1_hex(b"refused"))).await.0, 404);
}
