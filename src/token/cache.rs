//! The verification cache: tokens that passed every check, by the SHA-256 of their text,
//! so that a repeated token skips the signature check.
//!
//! An entry is only a shortcut. Before it is used, its `exp` and `nbf` are checked
//! against the time of the request again, and the key that verified it must still be
//! among the issuer's usable keys. A token past its expiry or verified with a key that a
//! refresh removed, or whose source expired, therefore goes through full verification
//! and gets the same result it would get without the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::VerifiedToken;

/// A verified token with what is needed to check that it is still valid.
pub(super) struct CachedToken {
    pub(super) token: VerifiedToken,
    /// Identity of the key that verified the signature.
    pub(super) key_id: u64,
    pub(super) exp: f64,
    pub(super) nbf: Option<f64>,
    pub(super) iat: Option<f64>,
}

/// Bounded cache of verified tokens; a capacity of 0 turns it off.
pub(super) struct VerifyCache {
    entries: Option<quick_cache::sync::Cache<[u8; 32], Arc<CachedToken>>>,
    capacity: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Counters of the verification cache, for the status route and metrics.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CacheStats {
    pub entries: usize,
    pub capacity: usize,
    /// Tokens returned from the cache.
    pub hits: u64,
    /// Tokens that went through full verification (the cache being on).
    pub misses: u64,
}

impl VerifyCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Returns the cache key of `token`, or `None` when the cache is off.
    pub(super) fn digest(&self, token: &str) -> Option<[u8; 32]> {
        self.entries
            .as_ref()
            .map(|_| Sha256::digest(token.as_bytes()).into())
    }

    /// Returns the entry of `digest` when `accept` approves it. A rejected entry is
    /// removed, because it will not become valid again in the usual forward flow of time.
    pub(super) fn get(
        &self,
        digest: &[u8; 32],
        accept: impl FnOnce(&CachedToken) -> bool,
    ) -> Option<Arc<CachedToken>> {
        let entries = self.entries.as_ref()?;
        match entries.get(digest) {
            Some(entry) if accept(&entry) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry)
            }
            Some(_) => {
                entries.remove(digest);
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Returns whether `digest` has an entry, without checking or counting it.
    pub(super) fn contains(&self, digest: &[u8; 32]) -> bool {
        self.entries
            .as_ref()
            .is_some_and(|entries| entries.contains_key(digest))
    }

    pub(super) fn insert(&self, digest: [u8; 32], entry: CachedToken) {
        if let Some(entries) = &self.entries {
            entries.insert(digest, Arc::new(entry));
        }
    }

    /// Drops the entries verified with any of `key_ids`, after a refresh removed them.
    pub(super) fn remove_keys(&self, key_ids: &[u64]) {
        if let Some(entries) = &self.entries
            && !key_ids.is_empty()
        {
            entries.retain(|_, entry| !key_ids.contains(&entry.key_id));
        }
    }

    pub(super) fn stats(&self) -> CacheStats {
        CacheStats {
            entries: self.entries.as_ref().map_or(0, |entries| entries.len()),
            capacity: self.capacity,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}
