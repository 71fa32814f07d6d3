//! Taking and giving back an upload's leases (see [`crate::lease`]): the hashing pass
//! and each part range of the upload pass is worked on by one invocation at a time,
//! as far as a store without compare-and-swap allows.

use super::io::Io;
use super::records::storage;
use super::run::Run;
use crate::checkpoint;
use crate::error::Error;
use crate::lease::Lease;

impl<I: Io> Run<'_, I> {
    /// Holds lease `name` of upload `id` for this invocation, taking it when it is free,
    /// expired or already this invocation's: write it, then read it back, and back off
    /// if another owner's write landed last. `Ok(false)`, with [`Run::busy`] saying who
    /// holds it, when another invocation does.
    pub(crate) async fn hold(&mut self, id: &str, name: &str) -> Result<bool, Error> {
        let key = checkpoint::lease_key(id, name);
        if self.held.contains(&key) {
            self.busy = None;
            return Ok(true);
        }
        let now = self.io.unix_millis();
        if let Some(lease) = self.read_lease(&key).await? {
            if lease.live(now) && lease.owner != self.owner {
                self.busy = Some((name.to_owned(), lease));
                return Ok(false);
            }
        }
        let mine = Lease { owner: self.owner.clone(), until_ms: self.lease_until_ms };
        self.io.kv_set(&key, &mine.encode()).await.map_err(storage)?;
        // Invocations that start together all find the lease free and write it; each
        // reading its own write back at once would make every one of them its owner.
        // Read back only after the others' writes have landed: the last write wins.
        self.io.sleep(self.s.lease_settle).await;
        match self.read_lease(&key).await? {
            Some(lease) if lease.owner != self.owner => {
                // Another owner wrote after us: theirs now (not ours to remove).
                self.busy = Some((name.to_owned(), lease));
                Ok(false)
            }
            _ => {
                self.held.push(key);
                self.busy = None;
                Ok(true)
            }
        }
    }

    /// Whether this invocation still holds lease `name` of upload `id`, read again from
    /// the store. Two invocations can both believe they took a lease (the second one's
    /// write landed after the first read back); once both writes are in, the stored
    /// owner is one of them, and reading it again tells the other to stop. A lease
    /// found missing or expired is still this invocation's to work on.
    pub(crate) async fn still_holds(&mut self, id: &str, name: &str) -> Result<bool, Error> {
        let key = checkpoint::lease_key(id, name);
        match self.read_lease(&key).await? {
            Some(lease) if lease.owner != self.owner && lease.live(self.io.unix_millis()) => {
                self.held.retain(|k| *k != key);
                self.busy = Some((name.to_owned(), lease));
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    /// Gives back lease `name` of upload `id`, if this invocation still holds it. Best
    /// effort: a lease not given back expires.
    pub(crate) async fn let_go(&mut self, id: &str, name: &str) {
        let key = checkpoint::lease_key(id, name);
        if let Some(at) = self.held.iter().position(|k| *k == key) {
            self.held.remove(at);
            self.remove_if_mine(&key).await;
        }
    }

    /// Gives back every lease this invocation holds.
    pub(crate) async fn let_go_all(&mut self) {
        for key in std::mem::take(&mut self.held) {
            self.remove_if_mine(&key).await;
        }
    }

    async fn remove_if_mine(&self, key: &str) {
        if let Ok(Some(lease)) = self.read_lease(key).await {
            if lease.owner == self.owner {
                let _ = self.io.kv_delete(key).await;
            }
        }
    }

    async fn read_lease(&self, key: &str) -> Result<Option<Lease>, Error> {
        Ok(self.io.kv_get(key).await.map_err(storage)?.and_then(|bytes| Lease::decode(&bytes)))
    }
}

/// The leases of upload `id` that still hold, by name, from a listing of the store's
/// keys (for its status).
pub async fn leases<I: Io>(io: &I, keys: &[String], id: &str) -> Result<Vec<(String, Lease)>, Error> {
    let now = io.unix_millis();
    let mut held = Vec::new();
    for key in keys {
        if let Some((of, name)) = checkpoint::lease_of_key(key) {
            if of == id {
                if let Some(lease) = io.kv_get(key).await.map_err(storage)?.and_then(|b| Lease::decode(&b)) {
                    if lease.live(now) {
                        held.push((name.to_owned(), lease));
                    }
                }
            }
        }
    }
    Ok(held)
}
