//! Goldens of the generated sample bytes: `sample::write_sample` (the demo's and the
//! benchmark's source files) and `sample::fill_generated` (the file server's generated
//! files). Moving these helpers elsewhere must leave their bytes as they are: a file
//! written by one version is compared with bytes served by another.

use sha1::Digest as _;

const MIB: usize = 1 << 20;

fn sha1_hex(bytes: &[u8]) -> String {
    sha1::Sha1::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn write_sample_bytes_are_unchanged() {
    let path = std::env::temp_dir().join(format!("host-sim-sample-golden-{}.bin", std::process::id()));
    host_sim::sample::write_sample(&path, MIB as u64, 1).expect("the sample is written");
    let bytes = std::fs::read(&path).expect("the sample reads back");
    let _ = std::fs::remove_file(&path);
    assert_eq!(bytes.len(), MIB);
    assert_eq!(sha1_hex(&bytes), "ca2f84faeac11a5de5cfee4caf6a849e18f25ee5", "write_sample(1 MiB, seed 1) now writes other bytes");
}

#[test]
fn fill_generated_bytes_are_unchanged() {
    let mut buf = vec![0u8; MIB];
    host_sim::sample::fill_generated(1, 0, &mut buf);
    assert_eq!(sha1_hex(&buf), "2825b4e6b2ddfa13c93927a85cb4902a064d2653", "fill_generated(seed 1, offset 0, 1 MiB) now makes other bytes");
}

#[test]
fn generated_sha1_is_the_served_bytes_hash() {
    assert_eq!(host_sim::sample::generated_sha1(MIB as u64, 1), "2825b4e6b2ddfa13c93927a85cb4902a064d2653");
}

#[test]
fn data_bytes_are_unchanged() {
    assert_eq!(
        sha1_hex(&host_sim::sample::data(MIB, 1)),
        "fffb6013962bedc650ca74a876e8cbd738c3f84f",
        "data(1 MiB, seed 1) now makes other bytes"
    );
}
