//! `host-sim bench-vod`: the simulator's ingest rate. The simulator runs as its own
//! process (so its CPU time is its own) and `clients` connections send 1 MiB
//! UploadParts over loopback as fast as it accepts them.

use crate::client::VodClient;
use crate::vod;
use bytes::Bytes;
use md5::Digest as _;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;
use vod_uploader::protocol::{Credentials, InitAnswer, InitUpload};
use vod_uploader::sign::Algorithm;

/// Benchmark settings.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Total bytes sent, in MiB (one 1 MiB part each).
    #[arg(long, default_value_t = 2048)]
    pub total_mib: u64,
    /// Parent of the simulator's data directory; a tmpfs (the default, /dev/shm when
    /// present) keeps the disk's write-back speed out of the figures.
    #[arg(long)]
    pub data_parent: Option<std::path::PathBuf>,
    /// Where to write the JSON results.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
}

/// utime + stime of a process, in seconds (Linux /proc; USER_HZ is 100 there).
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are the 14th and
    // 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// Runs the benchmark and prints its table.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let parent = args.data_parent.clone().unwrap_or_else(|| {
        let shm = std::path::PathBuf::from("/dev/shm");
        if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        }
    });
    let data = tempfile::tempdir_in(&parent)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["vod", "--listen", "127.0.0.1:0", "--rate-part", "0", "--rate-init", "0", "--data"])
        .arg(data.path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let addr = line.trim().rsplit(' ').next().unwrap_or_default().to_owned();
    let pid = child.id().to_string();
    let result = measure(&args, &addr, &pid).await;
    let _ = child.kill();
    let _ = child.wait();
    let (secs, cpu_server, cpu_client) = result?;
    let bytes = (args.total_mib << 20) as f64;
    let mb_s = bytes / 1e6 / secs;
    let server_cpu_per_gb = cpu_server / (bytes / 1e9);
    let client_cpu_per_gb = cpu_client / (bytes / 1e9);
    println!("| clients | MiB sent | seconds | MB/s | simulator CPU s/GB | client CPU s/GB |");
    println!("|---|---|---|---|---|---|");
    println!("| {} | {} | {secs:.2} | {mb_s:.0} | {server_cpu_per_gb:.3} | {client_cpu_per_gb:.3} |", args.clients, args.total_mib);
    if let Some(path) = args.json {
        let json = serde_json::json!({
            "clients": args.clients, "bytes": bytes, "seconds": secs, "mb_per_s": mb_s,
            "simulator_cpu_s_per_gb": server_cpu_per_gb, "client_cpu_s_per_gb": client_cpu_per_gb,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&json)?)?;
    }
    Ok(())
}

async fn measure(args: &BenchArgs, addr: &str, pid: &str) -> anyhow::Result<(f64, f64, f64)> {
    let client = VodClient::new(
        &format!("http://{addr}/v2/index.php"),
        Credentials::new(vod::DEV_SECRET_ID, vod::DEV_SECRET_KEY),
        Algorithm::HmacSha1,
    )?;
    let parts = args.total_mib;
    // Distinct part bodies, made before the clock starts; the fileSha is never
    // finished, so it need not match them.
    let bodies: Vec<(Bytes, String)> = (0..16u8)
        .map(|i| {
            let body = vec![i.wrapping_mul(37); 1 << 20];
            let md5 = vod_uploader::hex::encode(&md5::Md5::digest(&body));
            (Bytes::from(body), md5)
        })
        .collect();
    let file_sha = format!("{:040x}", rand::random::<u128>());
    let answer = client
        .init(InitUpload {
            file_name: "bench".into(),
            file_sha: file_sha.clone(),
            file_size: parts << 20,
            data_size: 1 << 20,
            file_type: "mp4".into(),
            ..Default::default()
        })
        .await?;
    anyhow::ensure!(answer == InitAnswer::New, "unexpected InitUpload answer {answer:?}");
    let cpu_server_before = cpu_seconds(pid)?;
    let cpu_client_before = cpu_seconds("self")?;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..args.clients as u64 {
        let (client, bodies, sha) = (client.clone(), bodies.clone(), file_sha.clone());
        let clients = args.clients as u64;
        tasks.spawn(async move {
            let mut part = c;
            while part < parts {
                let (body, md5) = bodies[(part % 16) as usize].clone();
                client.part_with_md5(&sha, part << 20, body, md5).await?;
                part += clients;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((secs, cpu_seconds(pid)? - cpu_server_before, cpu_seconds("self")? - cpu_client_before))
}
