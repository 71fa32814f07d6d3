//! What drives the uploads besides the instances' own ticks: their creation through
//! random instances, concurrent `POST /uploads/{id}/advance` calls at random instances
//! on uploads not yet final, and the poll of `GET /uploads` that tells the soak where
//! each upload is.

use super::world::{World, CALL_TIMEOUT, TOKEN};
use crate::http::{self, HttpClient};
use anyhow::{anyhow, bail};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One upload of the soak: its source and what was last seen of it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The upload's id.
    pub id: String,
    /// The wave it belongs to (1, 2, ...).
    pub wave: u32,
    /// Source size, bytes.
    pub size: u64,
    /// Source seed (`/gen/{size}/{seed}`).
    pub seed: u64,
    /// Its latest status.
    pub last: Value,
}

impl Entry {
    /// Whether the latest status is final.
    pub fn is_final(&self) -> bool {
        matches!(self.last["state"].as_str(), Some("done" | "failed" | "cancelled"))
    }
}

/// The soak's uploads, shared by the drivers and the main loop.
#[derive(Default)]
pub struct Uploads {
    entries: Mutex<Vec<Entry>>,
}

impl Uploads {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of every entry.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// The entries of `wave`.
    pub fn wave(&self, wave: u32) -> Vec<Entry> {
        self.lock().iter().filter(|e| e.wave == wave).cloned().collect()
    }

    /// Ids of the uploads not yet final.
    pub fn open_ids(&self) -> Vec<String> {
        self.lock().iter().filter(|e| !e.is_final()).map(|e| e.id.clone()).collect()
    }

    /// Whether every upload of `wave` is final.
    pub fn wave_final(&self, wave: u32) -> bool {
        self.lock().iter().filter(|e| e.wave == wave).all(Entry::is_final)
    }

    /// How far `wave` is, 0..=1: bytes hashed and uploaded over twice its size.
    pub fn progress(&self, wave: u32) -> f64 {
        let (mut done, mut total) = (0u64, 0u64);
        for e in self.lock().iter().filter(|e| e.wave == wave) {
            total += 2 * e.size.max(1);
            done += if e.last["state"] == "done" {
                2 * e.size.max(1)
            } else {
                e.last["hashedBytes"].as_u64().unwrap_or(0) + e.last["uploadedBytes"].as_u64().unwrap_or(0)
            };
        }
        if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        }
    }

    /// Updates the entries from a `GET /uploads` listing.
    fn update(&self, listing: &Value) {
        let by_id: HashMap<&str, &Value> =
            listing["uploads"].as_array().into_iter().flatten().filter_map(|u| Some((u["id"].as_str()?, u))).collect();
        for e in self.lock().iter_mut() {
            if let Some(u) = by_id.get(e.id.as_str()) {
                e.last = (*u).clone();
            }
        }
    }
}

/// One API call with the soak's token, bounded by [`CALL_TIMEOUT`].
pub async fn api(client: &HttpClient, addr: SocketAddr, method: &str, path: &str, body: &str) -> anyhow::Result<(u16, Value)> {
    tokio::time::timeout(CALL_TIMEOUT, http::api_call(client, addr, method, path, body, Some(TOKEN)))
        .await
        .map_err(|_| anyhow!("{method} {path} on {addr}: no answer within {CALL_TIMEOUT:?}"))?
}

/// Creates the uploads of a wave, all at once, each through a random instance; a
/// create that was killed (500), met a retryable trouble (5xx) or a quota used up
/// (429) is sent again, maybe elsewhere (the same request finds or makes the one
/// upload).
pub async fn create_wave(world: &World, uploads: &Uploads, wave: u32, sources: &[(u64, u64)], seed: u64) -> anyhow::Result<()> {
    let addrs = world.addrs();
    let creates = sources.iter().enumerate().map(|(i, &(size, src_seed))| {
        let (addrs, body) = (addrs.clone(), json!({ "source": world.source_url(size, src_seed) }).to_string());
        async move {
            let client = http::client();
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (wave as u64) << 32 ^ i as u64);
            let mut last = String::new();
            for _ in 0..200 {
                let addr = addrs[rng.random_range(0..addrs.len())];
                match api(&client, addr, "POST", "/uploads", &body).await {
                    Ok((200 | 201, v)) => {
                        let id = v["id"].as_str().ok_or_else(|| anyhow!("a create answered no id: {v}"))?.to_owned();
                        return Ok(Entry { id, wave, size, seed: src_seed, last: v });
                    }
                    Ok((status @ (429 | 500..=599), v)) => last = format!("{status} {v}"),
                    Ok((status, v)) => bail!("create of {body} answered {status}: {v}"),
                    Err(e) => last = format!("{e:#}"),
                }
                tokio::time::sleep(Duration::from_millis(rng.random_range(50..500))).await;
            }
            bail!("create of {body} never succeeded; last: {last}")
        }
    });
    let created: Vec<anyhow::Result<Entry>> = futures_join_all(creates.collect()).await;
    let mut entries = uploads.lock();
    for entry in created {
        entries.push(entry?);
    }
    Ok(())
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(futures: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("a create task panicked"));
    }
    out
}

/// Forgets the done uploads of `wave` (`DELETE /uploads/{id}`, which for a done upload
/// removes its keys and leaves the service's file): every tick reads every upload the
/// store holds, and waves of uploads kept would make later waves slower and slower.
/// The entries keep their last status for the checks at the end.
pub async fn forget_wave(world: &World, uploads: &Uploads, wave: u32) -> anyhow::Result<()> {
    let (addrs, client) = (world.addrs(), http::client());
    let done: Vec<String> = uploads.lock().iter().filter(|e| e.wave == wave && e.last["state"] == "done").map(|e| e.id.clone()).collect();
    for (i, id) in done.iter().enumerate() {
        let mut answered = false;
        for attempt in 0..50 {
            if let Ok((200 | 204 | 404, _)) =
                api(&client, addrs[(i + attempt) % addrs.len()], "DELETE", &format!("/uploads/{id}"), "").await
            {
                answered = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::ensure!(answered, "DELETE /uploads/{id} never succeeded");
    }
    Ok(())
}

/// Polls `GET /uploads` on a random instance and updates the entries; `false` when no
/// listing came (a killed invocation, the store restarting).
pub async fn refresh(world: &World, uploads: &Uploads, client: &HttpClient, pick: usize) -> bool {
    let addrs = world.addrs();
    match api(client, addrs[pick % addrs.len()], "GET", "/uploads", "").await {
        Ok((200, listing)) => {
            uploads.update(&listing);
            true
        }
        _ => false,
    }
}

/// The advancing tasks and what they saw.
pub struct Advancers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Answers by HTTP status (0: no answer).
    pub statuses: Arc<Mutex<BTreeMap<u16, u64>>>,
}

impl Advancers {
    /// Starts `n` tasks, each calling `advance` on a random open upload at a random
    /// instance, then pausing 0-50 ms (a second after a 429), until stopped.
    pub fn start(addrs: Vec<SocketAddr>, uploads: Arc<Uploads>, n: usize, seed: u64) -> Advancers {
        let stop = Arc::new(AtomicBool::new(false));
        let statuses = Arc::new(Mutex::new(BTreeMap::new()));
        let tasks = (0..n as u64)
            .map(|t| {
                let (stop, statuses, uploads, addrs) = (stop.clone(), statuses.clone(), uploads.clone(), addrs.clone());
                tokio::spawn(async move {
                    let client = http::client();
                    let mut rng = rand::rngs::StdRng::seed_from_u64(seed.wrapping_mul(7919) + t);
                    while !stop.load(Ordering::Relaxed) {
                        let open = uploads.open_ids();
                        if open.is_empty() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                        let id = &open[rng.random_range(0..open.len())];
                        let addr = addrs[rng.random_range(0..addrs.len())];
                        let status = match api(&client, addr, "POST", &format!("/uploads/{id}/advance"), "").await {
                            Ok((status, _)) => status,
                            Err(_) => 0,
                        };
                        *statuses.lock().unwrap_or_else(|p| p.into_inner()).entry(status).or_default() += 1;
                        // A quota used up (429) frees at the next window of a second at
                        // the soonest: a client that asked again at once would only
                        // spend the store's reads.
                        let pause = if status == 429 { 1000 } else { rng.random_range(0..50) };
                        tokio::time::sleep(Duration::from_millis(pause)).await;
                    }
                })
            })
            .collect();
        Advancers { stop, tasks, statuses }
    }

    /// Stops them and waits for their last calls.
    pub async fn stop(self) -> BTreeMap<u16, u64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let statuses = self.statuses.lock().unwrap_or_else(|p| p.into_inner()).clone();
        statuses
    }
}
