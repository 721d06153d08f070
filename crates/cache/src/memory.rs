//! The in-process backend: a bounded moka cache with per-entry TTL, plus the tag index and the
//! invalidation generations that the Redis backend keeps in Redis.
//!
//! `moka::sync` rather than `moka::future`: "check the generations, then insert" must be atomic with
//! respect to an invalidation, so both run under one std mutex; the sync cache never awaits, so no lock is
//! held across `.await`, and a sync call is cheaper than a future on the hot read path.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;

/// A stored value and the TTL it was stored with (the near cache keeps the same entries).
#[derive(Clone)]
pub(crate) struct Entry {
    pub bytes: Bytes,
    pub ttl: Duration,
    pub stored: Instant,
}

pub(crate) struct PerEntryTtl;

impl Expiry<String, Entry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &Entry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Tag memberships and generations, guarded together: see the module comment.
#[derive(Default)]
struct Index {
    /// Bumped by every invalidation; a load's snapshot is its value when the load started.
    clock: u64,
    /// Generations forgotten to bound memory are treated as this (conservative: it may refuse a fresh
    /// value, never accept a stale one).
    floor: u64,
    gens: HashMap<String, u64>,
    tags: HashMap<String, HashSet<String>>,
    memberships: usize,
}

pub(crate) struct MemoryStore {
    entries: moka::sync::Cache<String, Entry>,
    index: Mutex<Index>,
    /// Above this many generations or tag memberships the index is compacted.
    index_limit: usize,
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(max_entries)
            .expire_after(PerEntryTtl)
            .build();
        let index_limit = usize::try_from(max_entries)
            .unwrap_or(usize::MAX)
            .saturating_mul(2)
            .max(10_000);
        Self {
            entries,
            index: Mutex::new(Index::default()),
            index_limit,
        }
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn get(&self, key: &str) -> Option<Bytes> {
        self.entries.get(key).map(|entry| entry.bytes)
    }

    pub fn snapshot(&self) -> u64 {
        self.index().clock
    }

    /// Stores the value unless (with a snapshot) the key or a tag was invalidated after the snapshot.
    pub fn set(
        &self,
        key: &str,
        bytes: Bytes,
        ttl: Duration,
        tags: &[String],
        snapshot: Option<u64>,
    ) -> bool {
        let mut index = self.index();
        if let Some(snapshot) = snapshot {
            let newer = |name: &str| index.gens.get(name).is_some_and(|&gen_| gen_ > snapshot);
            if snapshot < index.floor
                || newer(&gen_key(key))
                || tags.iter().any(|tag| newer(&gen_tag(tag)))
            {
                return false;
            }
        }
        let entry = Entry {
            bytes,
            ttl,
            stored: Instant::now(),
        };
        self.entries.insert(key.to_owned(), entry);
        for tag in tags {
            if index
                .tags
                .entry(tag.clone())
                .or_default()
                .insert(key.to_owned())
            {
                index.memberships += 1;
            }
        }
        if index.memberships > self.index_limit {
            // Expired and evicted entries leave memberships behind; drop those of keys no longer cached.
            let entries = &self.entries;
            index.tags.retain(|_, keys| {
                keys.retain(|k| entries.contains_key(k));
                !keys.is_empty()
            });
            index.memberships = index.tags.values().map(HashSet::len).sum();
        }
        true
    }

    /// Deletes the keys and records that they changed now, so an in-flight load cannot store its older
    /// value. Returns how many were cached.
    pub fn invalidate_keys(&self, keys: &[String]) -> u64 {
        let mut index = self.index();
        let now = self.bump(&mut index);
        let mut removed = 0;
        for key in keys {
            index.gens.insert(gen_key(key), now);
            if self.entries.remove(key).is_some() {
                removed += 1;
            }
        }
        removed
    }

    pub fn invalidate_tags(&self, tags: &[String]) -> u64 {
        let mut index = self.index();
        let now = self.bump(&mut index);
        let mut removed = 0;
        for tag in tags {
            index.gens.insert(gen_tag(tag), now);
            if let Some(keys) = index.tags.remove(tag) {
                index.memberships = index.memberships.saturating_sub(keys.len());
                for key in keys {
                    if self.entries.remove(&key).is_some() {
                        removed += 1;
                    }
                }
            }
        }
        removed
    }

    fn bump(&self, index: &mut Index) -> u64 {
        index.clock += 1;
        if index.gens.len() >= self.index_limit {
            // Forget every generation at once: loads that started before now are refused via the floor.
            index.gens.clear();
            index.floor = index.clock;
        }
        index.clock
    }

    pub fn exists(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    pub fn expire(&self, key: &str, ttl: Duration) -> bool {
        // Under the index lock so a concurrent invalidation cannot be undone by the re-insert.
        let _index = self.index();
        match self.entries.get(key) {
            Some(mut entry) => {
                entry.ttl = ttl;
                entry.stored = Instant::now();
                self.entries.insert(key.to_owned(), entry);
                true
            }
            None => false,
        }
    }

    pub fn ttl(&self, key: &str) -> Option<Duration> {
        self.entries
            .get(key)
            .map(|entry| entry.ttl.saturating_sub(entry.stored.elapsed()))
    }

    /// Keys matching a glob (`*`, `?`), invalidated like `invalidate_keys`.
    pub fn delete_pattern(&self, pattern: &str) -> u64 {
        let keys: Vec<String> = self
            .entries
            .iter()
            .filter(|(key, _)| glob_match(pattern.as_bytes(), key.as_bytes()))
            .map(|(key, _)| Arc::unwrap_or_clone(key))
            .collect();
        if keys.is_empty() {
            return 0;
        }
        self.invalidate_keys(&keys)
    }
}

fn gen_key(key: &str) -> String {
    format!("k:{key}")
}

fn gen_tag(tag: &str) -> String {
    format!("t:{tag}")
}

/// Redis-style glob: `*` any run, `?` one byte, `\x` a literal x. Iterative with one backtrack point,
/// so it is linear-ish and cannot blow the stack on a hostile pattern.
pub(crate) fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
                continue;
            }
            Some(b'?') => {
                p += 1;
                t += 1;
                continue;
            }
            Some(b'\\') if pattern.get(p + 1) == Some(&text[t]) => {
                p += 2;
                t += 1;
                continue;
            }
            Some(&c) if c != b'\\' && c == text[t] => {
                p += 1;
                t += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((sp, st)) => {
                p = sp + 1;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob_match(b"user:*", b"user:1"));
        assert!(glob_match(b"*:sku:*", b"product:sku:AB-1"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(!glob_match(b"user:*", b"product:1"));
        assert!(glob_match(b"a\\*b", b"a*b"));
        assert!(!glob_match(b"a\\*b", b"axb"));
        assert!(glob_match(b"*", b""));
    }

    #[test]
    fn forgetting_generations_refuses_loads_that_started_before() {
        let store = MemoryStore::new(10);
        let snapshot = store.snapshot();
        for i in 0..store.index_limit + 1 {
            store.invalidate_keys(&[format!("other:{i}")]);
        }
        assert!(!store.set(
            "k",
            Bytes::from_static(b"v"),
            Duration::from_secs(5),
            &[],
            Some(snapshot)
        ));
        let fresh = store.snapshot();
        assert!(store.set(
            "k",
            Bytes::from_static(b"v"),
            Duration::from_secs(5),
            &[],
            Some(fresh)
        ));
    }
}
