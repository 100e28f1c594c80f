//! Keys read from the store, kept in memory for a bounded time so a request needs no store read.
//!
//! A cached key is still verified on every use (secret hash, revocation, expiry against the
//! clock). What the cache can make stale is a change made elsewhere: a revocation or tier change
//! through another instance is seen here when that instance's announcement arrives (Postgres
//! `NOTIFY`), and at the latest once the entry is older than the bound (`ttl`). Changes made
//! through this instance clear the cache at once, and a generation number keeps a store read
//! that started before such a change from putting the old record back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use sluice_store::ApiKey;
use sluice_types::Tier;

/// More distinct keys than this in one bound: the cache starts over rather than grow.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    key: Arc<ApiKey>,
    tier: Tier,
    read_at: Instant,
}

/// The key cache of one instance; `ttl` zero turns it off (a store read per request).
pub struct KeyCache {
    ttl: Duration,
    generation: AtomicU64,
    entries: RwLock<HashMap<String, Entry>>,
}

impl KeyCache {
    pub fn new(ttl: Duration) -> KeyCache {
        KeyCache {
            ttl,
            generation: AtomicU64::new(0),
            entries: RwLock::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The key stored under `lookup`, if it was read from the store less than `ttl` ago.
    pub fn get(&self, lookup: &str) -> Option<(Arc<ApiKey>, Tier)> {
        if !self.enabled() {
            return None;
        }
        // No code panics while holding the lock; a poisoned map is still a valid map.
        let entries = self.entries.read().unwrap_or_else(PoisonError::into_inner);
        let e = entries.get(lookup)?;
        (e.read_at.elapsed() < self.ttl).then(|| (e.key.clone(), e.tier))
    }

    /// Taken before a store read; `put` with it keeps the record only if nothing was
    /// invalidated meanwhile.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn put(&self, generation: u64, key: Arc<ApiKey>, tier: Tier, read_at: Instant) {
        if !self.enabled() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        // Checked under the write lock: `invalidate` bumps the generation under it too.
        if self.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key.lookup.clone(), Entry { key, tier, read_at });
    }

    /// Forgets every key (after a revocation or an account change, here or announced by
    /// another instance).
    pub fn invalidate(&self) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(lookup: &str) -> Arc<ApiKey> {
        Arc::new(ApiKey {
            id: "key_1".into(),
            account_id: "acct_1".into(),
            name: "k".into(),
            lookup: lookup.into(),
            secret_hash: String::new(),
            scopes: Vec::new(),
            models: None,
            expires_at: None,
            revoked_at: None,
            created_at: 0,
            max_spend: None,
            limits: Default::default(),
            lineage: Vec::new(),
        })
    }

    #[test]
    fn an_entry_is_served_until_it_is_older_than_the_bound() {
        let c = KeyCache::new(Duration::from_millis(200));
        c.put(c.generation(), key("abc"), Tier::T1, Instant::now());
        assert!(c.get("abc").is_some());
        assert!(c.get("other").is_none());
        let old = Instant::now() - Duration::from_millis(250);
        c.put(c.generation(), key("old"), Tier::T1, old);
        assert!(c.get("old").is_none(), "older than the bound: read again");
    }

    #[test]
    fn a_read_that_began_before_an_invalidation_is_not_kept() {
        let c = KeyCache::new(Duration::from_secs(60));
        c.put(c.generation(), key("abc"), Tier::T1, Instant::now());
        let before = c.generation();
        c.invalidate();
        assert!(c.get("abc").is_none(), "invalidation forgets every key");
        c.put(before, key("abc"), Tier::T1, Instant::now());
        assert!(c.get("abc").is_none(), "a stale read is not put back");
        c.put(c.generation(), key("abc"), Tier::T1, Instant::now());
        assert!(c.get("abc").is_some());
    }

    #[test]
    fn a_zero_bound_caches_nothing() {
        let c = KeyCache::new(Duration::ZERO);
        c.put(c.generation(), key("abc"), Tier::T1, Instant::now());
        assert!(c.get("abc").is_none());
    }
}
