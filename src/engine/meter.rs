//! [`Metered`]: an [`Io`] that counts what one invocation uses (requests by kind,
//! key-value reads and writes, for its log line) and keeps it within the deployment's
//! quotas over every instance, by claims in the store (see [`crate::quota`]).

use super::io::{FileInfo, HttpRequest, HttpResponse, Io, IoError, QuotaStop};
use crate::quota::{self, Quotas};
use std::cell::RefCell;
use std::time::Duration;

/// What one invocation used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Requests to the VOD service.
    pub vod_requests: u64,
    /// Requests to sources.
    pub source_requests: u64,
    /// Completion webhook deliveries (and other requests).
    pub other_requests: u64,
    /// Key-value writes (sets and deletes), the quotas' own included.
    pub kv_writes: u64,
    /// Key-value reads (gets and listings).
    pub kv_reads: u64,
    /// Waits for the key-value write rate, in milliseconds.
    pub kv_throttled_ms: u64,
    /// What it did to each upload it worked on.
    pub uploads: Vec<super::io::Advanced>,
}

impl Usage {
    /// Every outbound request.
    pub fn requests(&self) -> u64 {
        self.vod_requests + self.source_requests + self.other_requests
    }
}

#[derive(Debug, Default)]
struct State {
    usage: Usage,
    stop: Option<QuotaStop>,
    /// This invocation's outbound claims: (hour, claimed, used), the current one last.
    outbound: Vec<(u64, u64, u64)>,
    /// Its key-value write rate claim, once taken: (rate, key).
    rate: Option<(u64, String)>,
    /// The unix second its last writes were in, and how many.
    second: (u64, u64),
    /// A claim of requests is under way (parts in flight ask at once: one claims, the
    /// others wait for it rather than race it with a claim of their own).
    claiming: bool,
}

/// An [`Io`] that meters one invocation (see the module's documentation). Every
/// request and write of the invocation must go through it; [`Metered::finish`] gives
/// back what it claimed and did not use.
pub struct Metered<'a, I: Io> {
    inner: &'a I,
    quotas: Quotas,
    owner: String,
    /// Requests whose URL starts with this go to the VOD service.
    vod_prefix: String,
    /// Claims hold until then (unix seconds): the invocation's time limit and a little.
    until: u64,
    /// The invocation's time limit, on [`Io::now`]: no wait for a quota goes past it.
    deadline: Duration,
    state: RefCell<State>,
}

impl<'a, I: Io> Metered<'a, I> {
    /// Meters an invocation on `inner` that lives at most `lifetime`.
    pub fn new(inner: &'a I, quotas: Quotas, vod_prefix: impl Into<String>, lifetime: Duration) -> Self {
        let owner = format!("{:08x}{:08x}", inner.random(), inner.random());
        let until = inner.unix_now() + lifetime.as_secs() + 2;
        let deadline = inner.now() + lifetime;
        Metered { inner, quotas, owner, vod_prefix: vod_prefix.into(), until, deadline, state: RefCell::default() }
    }

    /// What the invocation used so far.
    pub fn usage(&self) -> Usage {
        self.state.borrow().usage.clone()
    }

    /// Gives back what the invocation claimed and did not use: its outbound claims
    /// trimmed to what it sent, its write rate claim removed. Best effort (a claim left
    /// behind only lowers what others may use, until its window ends).
    pub async fn finish(&self) {
        if self.inner.now() >= self.deadline {
            // Out of time: the claims are left to their windows.
            return;
        }
        let (outbound, rate) = {
            let mut s = self.state.borrow_mut();
            (std::mem::take(&mut s.outbound), s.rate.clone())
        };
        // Within the write rate still held: only a claim's own first write comes out of
        // the margin.
        for (hour, claimed, used) in outbound {
            if claimed > used && self.take_write().await.is_ok() {
                let key = quota::outbound_key(hour, self.until, &self.owner);
                let _ = if used == 0 { self.raw_delete(&key).await } else { self.raw_set(&key, used.to_string().as_bytes()).await };
            }
        }
        // The rate was this invocation's in the current second whatever it wrote: its
        // claim stays until the second ends (an invocation claiming in the same second
        // must still count it), under a key that says so.
        if let Some((rate, key)) = rate {
            let until = self.inner.unix_now() + 1;
            let short = quota::kv_rate_key(until, &self.owner);
            let moved = short != key && self.take_write().await.is_ok() && self.raw_set(&short, rate.to_string().as_bytes()).await.is_ok();
            if moved && self.take_write().await.is_ok() {
                let _ = self.raw_delete(&key).await;
            }
        }
        self.state.borrow_mut().rate = None;
    }

    /// Stops the invocation's use of `quota` until `retry_at`; the error that refuses
    /// the request or write is the stop itself.
    fn stop(&self, quota: &'static str, limit: u64, retry_at: u64) -> IoError {
        let stop = self.state.borrow_mut().stop.get_or_insert(QuotaStop { quota, limit, retry_at }).clone();
        IoError::new(stop)
    }

    /// One more outbound request within the hour's claims, claiming more when needed
    /// (parts in flight ask at once: each takes from the claims only what is there).
    async fn take_request(&self) -> Result<(), IoError> {
        let Some(limit) = self.quotas.outbound_per_hour else { return Ok(()) };
        loop {
            let hour = quota::hour(self.inner.unix_now());
            {
                let mut s = self.state.borrow_mut();
                if let Some(stop) = &s.stop {
                    if stop.quota == "outbound_per_hour" && quota::hour(stop.retry_at) > hour {
                        return Err(IoError::new(stop.clone()));
                    }
                }
                if s.outbound.last().is_none_or(|c| c.0 != hour) {
                    s.outbound.push((hour, 0, 0));
                }
                let c = s.outbound.last_mut().expect("pushed");
                if c.2 < c.1 {
                    c.2 += 1;
                    return Ok(());
                }
            }
            if std::mem::replace(&mut self.state.borrow_mut().claiming, true) {
                self.inner.sleep(Duration::from_millis(1)).await;
                continue;
            }
            if self.inner.now() >= self.deadline {
                // Past its life, as its claim's key says: others may have folded the claim.
                // Not a quota used up: the invocation is over.
                self.state.borrow_mut().claiming = false;
                return Err(IoError::msg("the invocation's time limit is past: no more requests are claimed"));
            }
            let got = self.claim_requests(limit, hour).await;
            self.state.borrow_mut().claiming = false;
            // A store that failed is the store's error (the upload retries), not a quota used up.
            if !got? {
                return Err(self.stop("outbound_per_hour", limit, (hour + 1) * 3600));
            }
        }
    }

    /// Claims up to [`quota::outbound_chunk`] more requests in `hour`; whether any
    /// more fit.
    async fn claim_requests(&self, limit: u64, hour: u64) -> Result<bool, IoError> {
        let key = quota::outbound_key(hour, self.until, &self.owner);
        let (mine, used) = self.state.borrow().outbound.iter().find(|c| c.0 == hour).map_or((0, 0), |c| (c.1, c.2));
        let others = outbound_hour(self, &self.keys().await?, hour, &self.owner).await?.others;
        let want = mine + quota::fit(limit, others + mine, quota::outbound_chunk(limit));
        if want <= used {
            return Ok(false);
        }
        self.write(&key, want.to_string().as_bytes()).await?;
        // Kept only as far as it fits beside every claim written before this read.
        let after = outbound_hour(self, &self.keys().await?, hour, &self.owner).await?;
        let keep = want.min(limit.saturating_sub(after.others)).max(used);
        if keep < want {
            self.write(&key, keep.to_string().as_bytes()).await?;
        }
        if let Some(c) = self.state.borrow_mut().outbound.iter_mut().find(|c| c.0 == hour) {
            c.1 = keep;
        }
        if let (Some(fold), true) = (after.fold, keep > used) {
            // Best effort: an unfolded hour only costs the next claimer more reads.
            let _ = self.fold(hour, fold).await;
        }
        Ok(keep > used)
    }

    /// Writes a fold of `hour`'s final claims, then removes what it covers (cut short,
    /// what is left is covered by the fold all the same).
    async fn fold(&self, hour: u64, fold: Fold) -> Result<(), IoError> {
        self.write(&quota::fold_key(hour, fold.upto), fold.value.to_string().as_bytes()).await?;
        for key in fold.covers {
            self.kv_delete(&key).await?;
        }
        Ok(())
    }

    /// Waits until one more key-value write fits this invocation's rate in the current
    /// unix second, claiming a rate first.
    async fn take_write(&self) -> Result<(), IoError> {
        let Some(limit) = self.quotas.kv_writes_per_second else { return Ok(()) };
        if let Some(stop) = self.state.borrow().stop.as_ref().filter(|s| s.quota == "kv_writes_per_second") {
            // Once stopped, no claim is tried again (each try costs writes of the margin).
            return Err(IoError::new(stop.clone()));
        }
        let rate = self.state.borrow().rate.as_ref().map_or(0, |r| r.0);
        let rate = if rate == 0 { self.claim_rate(limit).await? } else { rate };
        loop {
            let now = self.inner.unix_now();
            {
                let mut s = self.state.borrow_mut();
                if s.second.0 != now {
                    s.second = (now, 0);
                }
                if s.second.1 < rate {
                    s.second.1 += 1;
                    return Ok(());
                }
            }
            let step = Duration::from_millis(50);
            if self.inner.now() + step >= self.deadline {
                return Err(self.stop("kv_writes_per_second", limit, now + 1));
            }
            // The unix second has no finer clock here: look again shortly.
            self.inner.sleep(step).await;
            self.state.borrow_mut().usage.kv_throttled_ms += 50;
        }
    }

    /// Claims a write rate, waiting (within the invocation's life) while others hold it all.
    async fn claim_rate(&self, limit: u64) -> Result<u64, IoError> {
        let cap = limit - quota::kv_margin(limit).min(limit.saturating_sub(1));
        let key = quota::kv_rate_key(self.until, &self.owner);
        loop {
            let now = self.inner.unix_now();
            let (others, next_free) = self.rate_others(now).await?;
            let want = quota::fit(cap, others, quota::kv_share(limit));
            if want > 0 {
                self.raw_set(&key, want.to_string().as_bytes()).await?;
                let (others, _) = self.rate_others(now).await?;
                let keep = want.min(cap.saturating_sub(others));
                if keep > 0 {
                    if keep < want {
                        self.raw_set(&key, keep.to_string().as_bytes()).await?;
                    }
                    // The claim's own writes are its first in this second: only a claim
                    // that lost a race spends the margin.
                    let mut s = self.state.borrow_mut();
                    let spent = 1 + u64::from(keep < want);
                    s.second = if s.second.0 == now { (now, s.second.1 + spent) } else { (now, spent) };
                    s.rate = Some((keep, key));
                    return Ok(keep);
                }
                self.raw_delete(&key).await?;
            }
            let wake = next_free.unwrap_or(now + 1).max(now + 1);
            if self.inner.now() + Duration::from_secs(wake - now) >= self.deadline {
                return Err(self.stop("kv_writes_per_second", limit, wake));
            }
            self.inner.sleep(Duration::from_secs(wake - now)).await;
        }
    }

    /// The rates other live claims hold, and when the first of them ends (claims that
    /// ended are told from their keys, unread).
    async fn rate_others(&self, now: u64) -> Result<(u64, Option<u64>), IoError> {
        let (mut sum, mut first_end) = (0, None::<u64>);
        for key in self.keys().await? {
            if let Some((until, owner)) = quota::kv_rate_of_key(&key) {
                if owner != self.owner && until > now {
                    sum += self.get(&key).await?.map_or(0, |v| quota::decode_count(&v));
                    first_end = Some(first_end.map_or(until, |e| e.min(until)));
                }
            }
        }
        Ok((sum, first_end))
    }

    async fn write(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.take_write().await?;
        self.raw_set(key, value).await
    }

    /// A write outside the rate (the rate's own claim; trims at the end): counted, and
    /// out of the margin the rates leave.
    async fn raw_set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.state.borrow_mut().usage.kv_writes += 1;
        self.inner.kv_set(key, value).await
    }

    async fn raw_delete(&self, key: &str) -> Result<(), IoError> {
        self.state.borrow_mut().usage.kv_writes += 1;
        self.inner.kv_delete(key).await
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.state.borrow_mut().usage.kv_reads += 1;
        self.inner.kv_get(key).await
    }

    async fn keys(&self) -> Result<Vec<String>, IoError> {
        self.state.borrow_mut().usage.kv_reads += 1;
        self.inner.kv_keys().await
    }
}

impl<I: Io> Io for Metered<'_, I> {
    type Body = I::Body;

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse<I::Body>, IoError> {
        self.take_request().await?;
        {
            let mut s = self.state.borrow_mut();
            if request.url.starts_with(&self.vod_prefix) {
                s.usage.vod_requests += 1;
            } else if request.method == "GET" {
                s.usage.source_requests += 1;
            } else {
                s.usage.other_requests += 1;
            }
        }
        self.inner.send(request).await
    }

    async fn kv_get(&self, key: &str) -> Result<Option<Vec<u8>>, IoError> {
        self.get(key).await
    }

    async fn kv_set(&self, key: &str, value: &[u8]) -> Result<(), IoError> {
        self.write(key, value).await
    }

    async fn kv_delete(&self, key: &str) -> Result<(), IoError> {
        self.take_write().await?;
        self.raw_delete(key).await
    }

    async fn kv_keys(&self) -> Result<Vec<String>, IoError> {
        self.keys().await
    }

    async fn sleep(&self, duration: Duration) {
        self.inner.sleep(duration).await
    }

    fn now(&self) -> Duration {
        self.inner.now()
    }

    fn unix_now(&self) -> u64 {
        self.inner.unix_now()
    }

    fn unix_millis(&self) -> u64 {
        self.inner.unix_millis()
    }

    fn random(&self) -> u32 {
        self.inner.random()
    }

    async fn file_info(&self, path: &str) -> std::io::Result<FileInfo> {
        self.inner.file_info(path).await
    }

    async fn read_file(&self, path: &str, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        self.inner.read_file(path, offset, len).await
    }

    fn quota_stop(&self) -> Option<QuotaStop> {
        self.state.borrow().stop.clone()
    }

    fn observe(&self, advanced: &super::io::Advanced) {
        self.state.borrow_mut().usage.uploads.push(advanced.clone());
        self.inner.observe(advanced);
    }
}

/// One hour's outbound requests, as the claims in the store count them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourUse {
    /// Over every claim.
    pub used: u64,
    /// Over the claims of owners other than the one asking.
    pub others: u64,
    /// A fold of the hour's final claims that is due.
    fold: Option<Fold>,
}

/// A fold to write (see [`crate::quota`]).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fold {
    upto: u64,
    value: u64,
    /// The keys it covers, removed once it is written.
    covers: Vec<String>,
}

/// Reads `hour`'s outbound claims from the store, starting from a listing of its keys;
/// `owner`'s own claim is left out of [`HourUse::others`]. A key listed but gone when
/// read (a claim trimmed to nothing, or covered by a newer fold) means the listing is
/// out of date: the store is listed again.
pub async fn outbound_hour<I: Io>(io: &I, keys: &[String], hour: u64, owner: &str) -> Result<HourUse, IoError> {
    let mut relisted = None;
    for _ in 0..4 {
        let view = quota::HourClaims::of(relisted.as_deref().unwrap_or(keys), hour);
        if let Some(read) = read_hour(io, &view, owner).await? {
            return Ok(read);
        }
        relisted = Some(io.kv_keys().await?);
    }
    Err(IoError::msg("the outbound quota's claims kept changing while they were read"))
}

async fn read_hour<I: Io>(io: &I, view: &quota::HourClaims, owner: &str) -> Result<Option<HourUse>, IoError> {
    let base = match &view.fold {
        Some((key, _)) => match io.kv_get(key).await? {
            Some(v) => quota::decode_count(&v),
            None => return Ok(None),
        },
        None => 0,
    };
    let upto = quota::fold_upto(io.unix_now());
    let mut read = HourUse { used: base, others: base, fold: None };
    let mut fold = Fold { upto, value: base, covers: Vec::new() };
    for (key, until, by) in &view.claims {
        let Some(v) = io.kv_get(key).await? else { return Ok(None) };
        let n = quota::decode_count(&v);
        read.used += n;
        if by != owner {
            read.others += n;
        }
        if *until <= upto {
            fold.value += n;
            fold.covers.push(key.clone());
        }
    }
    if fold.covers.len() >= quota::FOLD_AT && view.fold.as_ref().is_none_or(|(_, t)| *t < upto) {
        fold.covers.extend(view.covered.iter().cloned());
        fold.covers.extend(view.fold.as_ref().map(|(k, _)| k.clone()));
        read.fold = Some(fold);
    }
    Ok(Some(read))
}

/// Removes quota claims no window needs any more: outbound claims of hours past, write
/// rate claims a minute past their end.
pub async fn sweep<I: Io>(io: &I, keys: &[String]) -> Result<(), IoError> {
    let now = io.unix_now();
    for key in keys {
        let stale = if let Some(hour) = quota::outbound_hour_of_key(key) {
            hour < quota::hour(now)
        } else if let Some((until, _)) = quota::kv_rate_of_key(key) {
            until + 60 < now
        } else {
            false
        };
        if stale {
            io.kv_delete(key).await?;
        }
    }
    Ok(())
}
