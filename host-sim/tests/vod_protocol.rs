//! The simulator's protocol rules, over real HTTP on loopback with real SQLite.

mod common;

use common::*;
use host_sim::vod::DEV_SECRET_KEY;
use serde_json::Value;

const MIB: u64 = 1_048_576;
const HALF: u64 = 524_288;

#[tokio::test]
async fn full_multipart_upload_and_inspection() {
    let sim = sim().await;
    // The documents' example: 6,000,000 bytes in 1 MiB parts, the last 757,120 bytes.
    let bytes = data(6_000_000, 1);
    let done = upload(sim.addr(), &bytes, MIB).await;
    assert_eq!(done.code(), 0, "{done:?}");
    let file_id = done.json["fileId"].as_str().unwrap().to_owned();
    assert!(file_id.len() >= 10 && file_id.bytes().all(|b| b.is_ascii_digit()), "{file_id}");
    assert_eq!(done.json["url"], format!("http://10013.vod2.myqcloud.com/vod10013/{file_id}/f0.mp4"));

    let (status, stored) = get(sim.addr(), &format!("/sim/files/{file_id}")).await;
    assert_eq!(status, 200);
    assert!(stored == bytes, "stored bytes differ from the upload");
    let (_, list) = get_json(sim.addr(), "/sim/files").await;
    assert_eq!(list["files"][0]["fileId"], file_id.as_str());
    assert_eq!(list["files"][0]["fileSize"], 6_000_000);
    let (_, session) = get_json(sim.addr(), &format!("/sim/sessions/{}", sha1_hex(&bytes))).await;
    assert_eq!(session["state"], "finished");
    assert_eq!(get(sim.addr(), "/sim/files/1").await.0, 404);
    assert_eq!(get(sim.addr(), "/healthz").await, (200, b"ok\n".to_vec()));
}

#[tokio::test]
async fn released_bytes_keep_the_file_finished() {
    let sim = sim().await;
    let bytes = data(3 * HALF as usize + 7, 2);
    let sha = sha1_hex(&bytes);
    let done = upload(sim.addr(), &bytes, HALF).await;
    let file_id = done.json["fileId"].as_str().unwrap().to_owned();
    let addr = sim.addr();
    let release = |id: String| async move { send_raw("DELETE", &format!("http://{addr}/sim/files/{id}/data"), None).await.unwrap() };
    let released = release(file_id.clone()).await;
    assert_eq!((released.status, &released.json["released"]["fileId"]), (200, &file_id.as_str().into()), "{released:?}");
    let (status, gone) = get_json(sim.addr(), &format!("/sim/files/{file_id}")).await;
    assert_eq!((status, &gone["error"]["code"]), (410, &"released".into()), "{gone}");
    // The service still knows the file: a client that comes back finds it finished.
    let again = Call::init(&sha, bytes.len() as u64, HALF).send(sim.addr()).await;
    assert_eq!((again.code(), &again.json["fileId"]), (2, &file_id.as_str().into()), "{again:?}");
    let part = Call::part(&sha, 0, &bytes[..HALF as usize]).send(sim.addr()).await;
    part.refused(vod_uploader::protocol::codes::PARAMS, "already finished");
    let finish = Call::finish(&sha).send(sim.addr()).await;
    assert_eq!((finish.code(), &finish.json["fileId"]), (0, &file_id.as_str().into()));
    assert_eq!(release(file_id).await.status, 200, "releasing twice is fine");
    assert_eq!(release("1".into()).await.status, 404);
    assert_eq!(send_raw("POST", &format!("http://{}/sim/files", sim.addr()), None).await.unwrap().status, 405);
}

#[tokio::test]
async fn flags_and_tags_are_kept_on_the_session() {
    let sim = sim().await;
    let sha = sha1_hex(b"flags");
    let init = Call::init(&sha, 5, HALF)
        .with("isTranscode", "1")
        .with("isWatermark", "1")
        .with("tags.2", "b")
        .with("tags.1", "a")
        .with("classId", "7");
    assert_eq!(init.send(sim.addr()).await.code(), 0);
    let (_, s) = get_json(sim.addr(), &format!("/sim/sessions/{sha}")).await;
    assert_eq!((&s["isTranscode"], &s["isScreenshot"], &s["isWatermark"]), (&1.into(), &0.into(), &1.into()), "{s}");
    assert_eq!((&s["tags"], &s["classId"]), (&serde_json::json!(["a", "b"]), &7.into()));
}

#[tokio::test]
async fn dropping_the_simulator_stops_it() {
    let sim = sim().await;
    let addr = sim.addr();
    assert_eq!(get(addr, "/healthz").await.0, 200);
    drop(sim);
    tokio::task::yield_now().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "still accepting after drop");
}

#[tokio::test]
async fn edge_sizes_and_both_paths_and_algorithms() {
    let sim = sim().await;
    for (size, seed) in [(1usize, 2u64), (HALF as usize, 3), (HALF as usize + 1, 4)] {
        for (path, sha256) in [("/v2/index.php", false), ("/v3/index.php", true)] {
            let bytes = data(size, seed + sha256 as u64 * 100);
            let sha = sha1_hex(&bytes);
            let prepare = |mut call: Call| {
                call.path = path;
                if sha256 {
                    call = call.with("SignatureMethod", "HmacSHA256");
                }
                call
            };
            assert_eq!(prepare(Call::init(&sha, size as u64, HALF)).send(sim.addr()).await.code(), 0);
            for (i, chunk) in bytes.chunks(HALF as usize).enumerate() {
                let answer = prepare(Call::part(&sha, i as u64 * HALF, chunk)).send(sim.addr()).await;
                assert_eq!(answer.code(), 0, "{answer:?}");
            }
            let done = prepare(Call::finish(&sha)).send(sim.addr()).await;
            assert_eq!(done.code(), 0, "{done:?}");
            let (_, stored) = get(sim.addr(), &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
            assert!(stored == bytes);
        }
    }
}

#[tokio::test]
async fn post_for_init_and_finish_and_get_for_part() {
    let sim = sim().await;
    let bytes = data(1000, 5);
    let sha = sha1_hex(&bytes);
    let mut init = Call::init(&sha, 1000, HALF);
    init.method = "POST";
    assert_eq!(init.send(sim.addr()).await.code(), 0);
    let mut part = Call::part(&sha, 0, &bytes);
    part.method = "GET";
    part.send(sim.addr()).await.refused(-10001, "POST");
    assert_eq!(Call::part(&sha, 0, &bytes).send(sim.addr()).await.code(), 0);
    let mut finish = Call::finish(&sha);
    finish.method = "POST";
    assert_eq!(finish.send(sim.addr()).await.code(), 0);
}

#[tokio::test]
async fn code_1_resume_keeps_the_sessions_part_size_and_lists_parts() {
    let sim = sim().await;
    let bytes = data(3 * HALF as usize + 10, 6);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, bytes.len() as u64, HALF).send(sim.addr()).await.code(), 0);
    for i in [0u64, 2] {
        let chunk = &bytes[(i * HALF) as usize..((i + 1) * HALF) as usize];
        assert_eq!(Call::part(&sha, i * HALF, chunk).send(sim.addr()).await.code(), 0);
    }
    // Asking for 1 MiB parts now does not change the session's 512 KiB.
    let again = Call::init(&sha, bytes.len() as u64, MIB).send(sim.addr()).await;
    assert_eq!(again.code(), 1, "{again:?}");
    assert_eq!(again.json["dataSize"], HALF);
    let listed = again.json["listParts"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1]["offset"], 2 * HALF);
    assert_eq!(listed[1]["dataSize"], HALF);
    assert_eq!(listed[1]["dataMd5"], md5_hex(&bytes[2 * HALF as usize..3 * HALF as usize]).as_str());
    // A different fileSize for the same SHA-1 is refused.
    Call::init(&sha, bytes.len() as u64 + 1, HALF).send(sim.addr()).await.refused(-10003, "fileSize");
    // An empty session still answers code 1 the second time.
    let other = data(10, 7);
    assert_eq!(Call::init(&sha1_hex(&other), 10, HALF).send(sim.addr()).await.code(), 0);
    let empty = Call::init(&sha1_hex(&other), 10, HALF).send(sim.addr()).await;
    assert_eq!((empty.code(), empty.json["listParts"].as_array().unwrap().len()), (1, 0));
}

#[tokio::test]
async fn code_2_instant_upload_and_repeated_finish() {
    let sim = sim().await;
    let bytes = data(700_000, 8);
    let sha = sha1_hex(&bytes);
    let done = upload(sim.addr(), &bytes, HALF).await;
    assert_eq!(done.code(), 0);
    let again = Call::finish(&sha).send(sim.addr()).await;
    assert_eq!((again.code(), &again.json["fileId"], &again.json["url"]), (0, &done.json["fileId"], &done.json["url"]));
    let instant = Call::init(&sha, 700_000, MIB).send(sim.addr()).await;
    assert_eq!(instant.code(), 2);
    assert_eq!((&instant.json["fileId"], &instant.json["url"]), (&done.json["fileId"], &done.json["url"]));
    // No more parts for a finished file.
    Call::part(&sha, 0, &bytes[..HALF as usize]).send(sim.addr()).await.refused(-10003, "already finished");
}

#[tokio::test]
async fn upload_part_rules() {
    let sim = sim().await;
    let a = sim.addr();
    let bytes = data(2 * HALF as usize + 100, 9);
    let sha = sha1_hex(&bytes);
    let p0 = &bytes[..HALF as usize];
    let last = &bytes[2 * HALF as usize..];
    Call::part(&sha, 0, p0).send(a).await.refused(-10003, "InitUpload first");
    assert_eq!(Call::init(&sha, bytes.len() as u64, HALF).send(a).await.code(), 0);

    Call::part(&sha, 1000, &bytes[1000..1000 + HALF as usize]).send(a).await.refused(-10003, "offset 1000 is not a multiple");
    Call::part(&sha, 3 * HALF, last).send(a).await.refused(-10003, "offset");
    // A short part that is not the last one.
    Call::part(&sha, 0, &p0[..1000]).send(a).await.refused(-10003, "dataSize 1000");
    // The last part must be exactly what is left.
    Call::part(&sha, 2 * HALF, &bytes[2 * HALF as usize..2 * HALF as usize + 99]).send(a).await.refused(-10003, "it must be 100");
    // Body length differs from dataSize.
    Call::part(&sha, 0, p0).body(p0[..HALF as usize - 1].to_vec()).send(a).await.refused(-10006, "body is 524287 bytes");
    // Body MD5 differs from dataMd5.
    let mut flipped = p0.to_vec();
    flipped[77] ^= 1;
    Call::part(&sha, 0, p0).body(flipped).send(a).await.refused(-10006, "MD5");
    // A body longer than any part.
    Call::part(&sha, 0, p0).body(vec![0; MIB as usize + 1]).send(a).await.refused(-10006, "longer");
    // Bad parameters are named.
    Call::part(&sha, 0, p0).with("dataMd5", "xyz").send(a).await.refused(-10003, "dataMd5");
    Call::part(&sha, 0, p0).without("offset").send(a).await.refused(-10003, "offset is required");
    // None of the refused bodies was kept.
    let (_, state) = get_json(a, &format!("/sim/sessions/{sha}")).await;
    assert_eq!(state["partsHeld"], 0, "{state}");

    // The last part may be shorter; re-sending a held part is harmless.
    assert_eq!(Call::part(&sha, 2 * HALF, last).send(a).await.code(), 0);
    assert_eq!(Call::part(&sha, 0, p0).send(a).await.code(), 0);
    assert_eq!(Call::part(&sha, 0, p0).send(a).await.code(), 0);
    assert_eq!(Call::part(&sha, HALF, &bytes[HALF as usize..2 * HALF as usize]).send(a).await.code(), 0);
    let done = Call::finish(&sha).send(a).await;
    assert_eq!(done.code(), 0, "{done:?}");
    let (_, stored) = get(a, &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
    assert!(stored == bytes);
}

#[tokio::test]
async fn concurrent_parts_in_any_order() {
    let sim = sim().await;
    let bytes = std::sync::Arc::new(data(40 * HALF as usize + 12345, 10));
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, bytes.len() as u64, HALF).send(sim.addr()).await.code(), 0);
    let mut offsets: Vec<u64> = (0..41).map(|i| i * HALF).collect();
    offsets.reverse();
    offsets.swap(3, 30);
    let mut tasks = tokio::task::JoinSet::new();
    for offset in offsets {
        let (bytes, sha, addr) = (bytes.clone(), sha.clone(), sim.addr());
        tasks.spawn(async move {
            let end = (offset + HALF).min(bytes.len() as u64) as usize;
            // Every part twice, at once: duplicates are harmless.
            let chunk = &bytes[offset as usize..end];
            let (first, second) = (Call::part(&sha, offset, chunk), Call::part(&sha, offset, chunk));
            let (a, b) = tokio::join!(first.send(addr), second.send(addr));
            assert_eq!((a.code(), b.code()), (0, 0));
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let done = Call::finish(&sha).send(sim.addr()).await;
    assert_eq!(done.code(), 0, "{done:?}");
    let (_, stored) = get(sim.addr(), &format!("/sim/files/{}", done.json["fileId"].as_str().unwrap())).await;
    assert!(stored == *bytes);
}

#[tokio::test]
async fn finish_refuses_missing_parts_and_wrong_sha_and_stays_resumable() {
    let sim = sim().await;
    let a = sim.addr();
    let bytes = data(3 * HALF as usize, 11);
    let sha = sha1_hex(&bytes);
    Call::finish(&sha).send(a).await.refused(-10003, "no upload session");
    assert_eq!(Call::init(&sha, bytes.len() as u64, HALF).send(a).await.code(), 0);
    assert_eq!(Call::part(&sha, HALF, &bytes[HALF as usize..2 * HALF as usize]).send(a).await.code(), 0);
    Call::finish(&sha).send(a).await.refused(-10003, "2 of 3 parts are missing (offsets 0, 1048576)");

    // Parts whose bytes are not the file the SHA-1 names.
    let wrong = data(HALF as usize, 12);
    assert_eq!(Call::part(&sha, 0, &wrong).send(a).await.code(), 0);
    assert_eq!(Call::part(&sha, 2 * HALF, &bytes[2 * HALF as usize..]).send(a).await.code(), 0);
    Call::finish(&sha).send(a).await.refused(-10003, "does not match the SHA-1 of the uploaded parts");

    // Still resumable: code 1, re-send the wrong part, finish.
    let resumed = Call::init(&sha, bytes.len() as u64, HALF).send(a).await;
    assert_eq!(resumed.code(), 1);
    assert_eq!(resumed.json["listParts"][0]["dataMd5"], md5_hex(&wrong).as_str());
    assert_eq!(Call::part(&sha, 0, &bytes[..HALF as usize]).send(a).await.code(), 0);
    assert_eq!(Call::finish(&sha).send(a).await.code(), 0);
}

#[tokio::test]
async fn common_parameter_errors_name_the_parameter() {
    let sim = sim().await;
    let a = sim.addr();
    let sha = sha1_hex(b"x");
    let base = || Call::init(&sha, 1, HALF);
    base().with("Action", "DeleteEverything").send(a).await.refused(-10001, "Action");
    base().without("Action").send(a).await.refused(-10001, "Action is required");
    base().with("Region", "mars").send(a).await.refused(-10001, "Region");
    base().without("Region").send(a).await.refused(-10001, "Region");
    base().with("Timestamp", "yesterday").send(a).await.refused(-10001, "Timestamp");
    base().without("Timestamp").send(a).await.refused(-10001, "Timestamp");
    base().with("Nonce", "-5").send(a).await.refused(-10001, "Nonce");
    base().without("Nonce").send(a).await.refused(-10001, "Nonce");
    base().without("SecretId").send(a).await.refused(-10001, "SecretId");
    base().with("SignatureMethod", "HmacMD5").with("Signature", "AAAA").send(a).await.refused(-10001, "SignatureMethod");
}

#[tokio::test]
async fn protocol_parameter_errors_name_the_parameter() {
    let sim = sim().await;
    let a = sim.addr();
    let sha = sha1_hex(b"x");
    let base = || Call::init(&sha, 1, HALF);
    base().with("fileName", &"n".repeat(41)).send(a).await.refused(-10003, "fileName");
    base().with("fileName", "a:b").send(a).await.refused(-10003, "fileName");
    base().with("fileName", "").send(a).await.refused(-10003, "fileName");
    base().with("fileSha", "123").send(a).await.refused(-10003, "fileSha");
    base().with("fileSize", "-1").send(a).await.refused(-10003, "fileSize");
    base().with("dataSize", "65536").send(a).await.refused(-10003, "dataSize");
    base().without("fileType").send(a).await.refused(-10003, "fileType");
    base().with("fileName", "a\"b").send(a).await.refused(-10003, "fileName");
    base().with("classId", "-3").send(a).await.refused(-10003, "classId");
    base().with("isScreenshot", "yes").send(a).await.refused(-10003, "isScreenshot");
    Call::finish("zz").send(a).await.refused(-10003, "fileSha");
    // Nothing was created by any of them.
    assert_eq!(get(a, &format!("/sim/sessions/{sha}")).await.0, 404);
}

#[tokio::test]
async fn what_the_sdks_sent_is_accepted() {
    let sim = sim().await;
    let a = sim.addr();
    let bytes = data(10, 13);
    let sha = sha1_hex(&bytes);
    // C#: upper-case fileSha; official SDKs: tag.N; PHP: tags_N; Node.js: millisecond
    // Timestamps; everyone: unknown extras, which are still signed.
    let init = Call::init(&sha.to_uppercase(), 10, HALF)
        .with("Timestamp", &(now() * 1000).to_string())
        .with("tag.1", "a")
        .with("tags_2", "b")
        .with("RequestClient", "SDK_PHP_1.0")
        .with("extra.x", "y");
    assert_eq!(init.send(a).await.code(), 0);
    let (_, state) = get_json(a, &format!("/sim/sessions/{sha}")).await;
    assert_eq!(state["tags"], serde_json::json!(["a", "b"]));
    // The bare host name (no port), as the SDKs signed it.
    let mut part = Call::part(&sha, 0, &bytes);
    part.sign_host = Some("127.0.0.1".into());
    assert_eq!(part.send(a).await.code(), 0);
    assert_eq!(Call::finish(&sha).send(a).await.code(), 0);
}

#[tokio::test]
async fn signature_failures() {
    let sim = sim().await;
    let a = sim.addr();
    let sha = sha1_hex(b"signed");
    let base = || Call::init(&sha, 6, HALF);

    let mut wrong_key = base();
    wrong_key.key = "not-the-key".into();
    wrong_key.send(a).await.refused(-10002, "Signature does not match");

    let mut wrong_method = base();
    wrong_method.sign_method = Some("POST");
    wrong_method.send(a).await.refused(-10002, "Signature");

    let mut wrong_host = base();
    wrong_host.sign_host = Some("vod2.qcloud.com".into());
    wrong_host.send(a).await.refused(-10002, "Signature");

    // Signed for /v2, sent to /v3.
    let signed = base().signed(a);
    send_raw("GET", &url_of(a, "/v3/index.php", &signed), None).await.unwrap().refused(-10002, "Signature");

    // One byte changed in any signed value after signing.
    for name in ["fileName", "fileSize", "Nonce", "Region", "fileSha"] {
        let mut tampered = base().signed(a);
        let value = &mut tampered.iter_mut().find(|(k, _)| k == name).unwrap().1;
        let last = value.pop().unwrap();
        value.push(if last == '1' { '2' } else { '1' });
        let answer = send_raw("GET", &url_of(a, "/v2/index.php", &tampered), None).await.unwrap();
        assert!(answer.code() == -10002 || answer.code() == -10001, "{name}: {answer:?}");
    }
    // A signature that is not Base64 at all, or missing.
    base().with("Signature", "%%%").send(a).await.refused(-10002, "Signature");
    base().with("Signature", "").send(a).await.refused(-10002, "Signature is required");

    // Unknown SecretId.
    base().with("SecretId", "AKIDsomeoneElse").send(a).await.refused(-10002, "SecretId");

    // Stale and future Timestamps, signed correctly.
    base().with("Timestamp", &(now() - 301).to_string()).send(a).await.refused(-10002, "Timestamp");
    base().with("Timestamp", &(now() + 400).to_string()).send(a).await.refused(-10002, "Timestamp");
    assert_eq!(base().with("Timestamp", &(now() - 200).to_string()).send(a).await.code(), 0);
    assert_eq!(get(a, &format!("/sim/sessions/{sha}")).await.0, 200);
}

#[tokio::test]
async fn a_replayed_request_gets_the_first_answer() {
    let sim = sim().await;
    let bytes = data(100, 14);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, 100, HALF).send(sim.addr()).await.code(), 0);
    let url = Call::part(&sha, 0, &bytes).url(sim.addr());
    let first = send_raw("POST", &url, Some(bytes.clone())).await.unwrap();
    assert_eq!(first.code(), 0);
    let again = send_raw("POST", &url, Some(bytes.clone())).await.unwrap();
    assert_eq!((again.status, &again.json), (first.status, &first.json));
    let (_, stats) = get_json(sim.addr(), "/sim/stats").await;
    assert_eq!((&stats["partsStored"], &stats["partsResent"], &stats["repeats"]), (&1.into(), &0.into(), &1.into()));
    // The same Nonce with another Timestamp is a different request.
    let nonce = url.split("Nonce=").nth(1).unwrap().split('&').next().unwrap().to_owned();
    let fresh = Call::part(&sha, 0, &bytes).with("Nonce", &nonce).with("Timestamp", &(now() - 1).to_string());
    assert_eq!(fresh.send(sim.addr()).await.code(), 0);
    let (_, stats) = get_json(sim.addr(), "/sim/stats").await;
    assert_eq!((&stats["partsStored"], &stats["partsResent"]), (&2.into(), &1.into()));
    // A replay from outside the Timestamp window is refused as stale, as any request.
    let stale = Call::part(&sha, 0, &bytes).with("Timestamp", &(now() - 301).to_string());
    let url = stale.url(sim.addr());
    send_raw("POST", &url, Some(bytes.clone())).await.unwrap().refused(-10002, "Timestamp");
    send_raw("POST", &url, Some(bytes.clone())).await.unwrap().refused(-10002, "Timestamp");
}

#[tokio::test]
async fn several_key_pairs() {
    let sim = sim_with(|c| {
        c.credentials = vec![
            vod_uploader::protocol::Credentials::new("AKIDone", "key-one"),
            vod_uploader::protocol::Credentials::new("AKIDtwo", "key-two"),
        ]
    })
    .await;
    let sha = sha1_hex(b"pairs");
    for (id, key) in [("AKIDone", "key-one"), ("AKIDtwo", "key-two")] {
        let mut call = Call::init(&sha, 5, HALF).with("SecretId", id);
        call.key = key.into();
        assert!(call.send(sim.addr()).await.code() >= 0);
    }
    let mut crossed = Call::init(&sha, 5, HALF).with("SecretId", "AKIDone");
    crossed.key = "key-two".into();
    crossed.send(sim.addr()).await.refused(-10002, "Signature");
    // The development pair is not accepted once pairs are configured.
    let mut dev = Call::init(&sha, 5, HALF);
    dev.key = DEV_SECRET_KEY.into();
    dev.send(sim.addr()).await.refused(-10002, "SecretId");
}

#[tokio::test]
async fn rate_limits_are_per_secret_id_and_retryable() {
    let sim = sim_with(|c| {
        c.limits = host_sim::vod::ratelimit::Limits { init: 2, part: 3, finish: 1 };
        c.credentials.push(vod_uploader::protocol::Credentials::new("AKIDother", "other"));
    })
    .await;
    let a = sim.addr();
    let bytes = data(100, 15);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, 100, HALF).send(a).await.code(), 0);
    assert_eq!(Call::init(&sha, 100, HALF).send(a).await.code(), 1);
    let limited = Call::init(&sha, 100, HALF).send(a).await;
    limited.refused(-10010, "at most 2 InitUpload calls per minute");
    assert_eq!(limited.json["canRetry"], 1);
    // Another SecretId has its own allowance.
    let mut other = Call::init(&sha, 100, HALF).with("SecretId", "AKIDother");
    other.key = "other".into();
    assert_eq!(other.send(a).await.code(), 1);
    for _ in 0..3 {
        assert_eq!(Call::part(&sha, 0, &bytes).send(a).await.code(), 0);
    }
    Call::part(&sha, 0, &bytes).send(a).await.refused(-10010, "UploadPart");
    assert_eq!(Call::finish(&sha).send(a).await.code(), 0);
    Call::finish(&sha).send(a).await.refused(-10010, "FinishUpload");
}

#[tokio::test]
async fn answers_have_the_documented_shape() {
    let sim = sim().await;
    let sha = sha1_hex(b"shape");
    let ok = Call::init(&sha, 5, HALF).send(sim.addr()).await;
    for key in ["code", "message", "codeDesc", "canRetry"] {
        assert!(ok.json.get(key).is_some(), "{key} missing in {}", ok.json);
    }
    assert_eq!(ok.json["canRetry"], 0);
    let bad = Call::init(&sha, 5, 7).send(sim.addr()).await;
    assert_eq!((bad.json["code"].as_i64(), bad.json["canRetry"].as_i64()), (Some(-10003), Some(0)));
    assert!(matches!(bad.json["codeDesc"], Value::String(_)));
    // Secrets never appear in answers.
    assert!(!bad.json.to_string().contains(DEV_SECRET_KEY));
    // Other methods.
    let answer = send_raw("PUT", &Call::finish(&sha).url(sim.addr()), None).await.unwrap();
    assert_eq!(answer.status, 405);
}

#[tokio::test]
async fn a_truncated_body_is_named_as_such() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim().await;
    let a = sim.addr();
    assert_eq!(sim.running.endpoint(), format!("http://{a}/v2/index.php"));
    let bytes = data(100, 3);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, 100, HALF).send(a).await.code(), 0);
    let url = Call::part(&sha, 0, &bytes).url(a);
    let path = url.split_once(&a.to_string()).unwrap().1;
    // Content-Length promises 100 bytes; 40 arrive, then the client stops sending.
    let mut stream = tokio::net::TcpStream::connect(a).await.unwrap();
    stream.write_all(format!("POST {path} HTTP/1.1\r\nHost: {a}\r\nContent-Length: 100\r\n\r\n").as_bytes()).await.unwrap();
    stream.write_all(&bytes[..40]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    assert!(answer.contains("-10006") && answer.contains("could not be read"), "{answer}");
}
