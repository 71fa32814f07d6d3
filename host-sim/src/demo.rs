//! `host-sim demo`: the README's main job on embedded defaults. For now it starts the
//! simulator, generates a sample file, uploads it with the minimal native client and
//! checks the simulator's copy byte for byte.

use crate::client::{self, VodClient};
use crate::vod;
use http_body_util::BodyExt;
use sha1::Digest as _;
use std::time::Instant;
use vod_uploader::protocol::Credentials;
use vod_uploader::sign::Algorithm;

/// Demo settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Size of the generated sample file, in MiB.
    #[arg(long, default_value_t = 96)]
    pub size_mib: u64,
    /// Parts sent at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Part size: 524288 or 1048576.
    #[arg(long, default_value_t = 1_048_576)]
    pub data_size: u64,
    /// Fault rate of the simulator during the demo (0..1).
    #[arg(long, default_value_t = 0.02)]
    pub fault_rate: f64,
    /// Seed of the sample data and of the faults.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Runs the demo; errors if the upload or its verification fails.
pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let work = tempfile::tempdir()?;
    let mut config = vod::Config::new(work.path().join("vod"));
    config.faults = vod::faults::Faults::new(
        args.fault_rate,
        &[vod::faults::FaultKind::Error, vod::faults::FaultKind::Http503, vod::faults::FaultKind::DropBefore, vod::faults::FaultKind::DropAfter],
        args.seed,
        std::time::Duration::ZERO,
    );
    let sim = vod::start(config).await?;
    println!("VOD simulator listening on {}", sim.addr);

    let sample = work.path().join("sample-video.mp4");
    let size = args.size_mib << 20;
    println!("generating {} MiB sample file ...", args.size_mib);
    let path = sample.clone();
    tokio::task::spawn_blocking(move || client::write_sample(&path, size, args.seed)).await??;

    let client = VodClient::new(&sim.endpoint(), Credentials::new(vod::DEV_SECRET_ID, vod::DEV_SECRET_KEY), Algorithm::HmacSha1)?;
    let bar = indicatif::ProgressBar::new(size).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}")
            .expect("valid template"),
    );
    let started = Instant::now();
    let finished = client.upload_file(&sample, args.data_size, args.concurrency, Some(bar.clone())).await?;
    bar.finish_with_message("uploaded");
    let secs = started.elapsed().as_secs_f64();
    println!("fileId {}  url {}", finished.file_id, finished.url);
    println!("{:.1} MiB in {:.2} s ({:.0} MiB/s, SHA-1 pass included)", size as f64 / 1048576.0, secs, size as f64 / 1048576.0 / secs);

    // Verify: the simulator's copy, fetched over HTTP, has the source's SHA-1.
    let (expected, _) = client::sha1_of_file(&sample)?;
    let response = crate::http::client()
        .get(format!("http://{}/sim/files/{}", sim.addr, finished.file_id).parse()?)
        .await?;
    let mut body = response.into_body();
    let mut hasher = sha1::Sha1::new();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            received += data.len() as u64;
            hasher.update(&data);
        }
    }
    let actual = vod_uploader::hex::encode(&hasher.finalize());
    anyhow::ensure!(
        received == size && actual == expected,
        "verification failed: the simulator holds {received} bytes with SHA-1 {actual}, the source has {size} bytes with SHA-1 {expected}"
    );
    println!("verified: the simulator's copy is byte-identical (SHA-1 {actual})");
    Ok(())
}
