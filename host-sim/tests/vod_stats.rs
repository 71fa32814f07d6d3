//! The simulator's byte and finish counters (`GET /sim/stats`): what a soak or a
//! benchmark reads to count duplicated part bytes and files made more than once.

mod common;

use common::*;
use host_sim::vod::SimStats;

/// A part sent twice counts its bytes twice as stored and once as duplicated; a file
/// finished counts one finish for its fileSha, and a FinishUpload of a file already
/// made (the answer lost, sent again) counts none.
#[tokio::test]
async fn part_bytes_and_finishes_are_counted() {
    let sim = sim().await;
    let bytes = data(1_300_000, 5);
    let sha = sha1_hex(&bytes);
    assert_eq!(Call::init(&sha, bytes.len() as u64, 524_288).send(sim.addr()).await.code(), 0);
    let tail = &bytes[1_048_576..];
    for (offset, part) in [(0, &bytes[..524_288]), (524_288, &bytes[524_288..1_048_576]), (1_048_576, tail), (1_048_576, tail)] {
        assert_eq!(Call::part(&sha, offset, part).send(sim.addr()).await.code(), 0);
    }
    assert_eq!(Call::finish(&sha).send(sim.addr()).await.code(), 0);
    assert_eq!(Call::finish(&sha).send(sim.addr()).await.code(), 0, "a second FinishUpload answers the file");
    let (status, json) = get_json(sim.addr(), "/sim/stats").await;
    assert_eq!(status, 200);
    let stats = SimStats::from_json(&json).unwrap_or_else(|| panic!("counters missing: {json}"));
    assert_eq!(stats.part_bytes_stored, bytes.len() as u64 + tail.len() as u64);
    assert_eq!(stats.part_bytes_resent, tail.len() as u64);
    assert_eq!((stats.parts_stored, stats.parts_resent), (4, 1));
    assert_eq!(stats.finishes, [(sha, 1)].into_iter().collect());
}
