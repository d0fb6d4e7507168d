//! A small time-bounded cache for the bridge's hot paths: what events refer
//! to (streams, node origins) and when an API token's use was last recorded.
//! Entries expire after a fixed time; the map is swept when it grows large.
//! Concurrent misses of one key share one load ([`TtlCache::get_or_load`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;

/// Entries beyond which expired ones are swept on insert.
const SWEEP_ABOVE: usize = 10_000;

/// One key's value, or its load in progress, and when the load began.
type Entry<V> = (Instant, Arc<OnceCell<V>>);

#[derive(Debug, Clone)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    entries: Arc<Mutex<HashMap<K, Entry<V>>>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Arc::default(),
        }
    }

    /// The value stored less than the TTL ago, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .and_then(|(_, cell)| cell.get().cloned())
    }

    pub fn insert(&self, key: K, value: V) {
        let cell = Arc::new(OnceCell::new_with(Some(value)));
        self.put(key, cell);
    }

    /// The value stored less than the TTL ago, or else what `load` answers,
    /// stored. Callers missing the same key at once wait for one load (a
    /// thousand subscribers of a stream that just changed ask the database
    /// once, not a thousand times); a failed load is not stored, and the
    /// next caller loads again.
    pub async fn get_or_load<E, F>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: AsyncFnOnce() -> Result<V, E>,
    {
        let cell = {
            let mut entries = self.lock();
            match entries.get(key) {
                Some((at, cell)) if at.elapsed() < self.ttl => cell.clone(),
                _ => {
                    let cell = Arc::new(OnceCell::new());
                    Self::sweep(&mut entries, self.ttl);
                    entries.insert(key.clone(), (Instant::now(), cell.clone()));
                    cell
                }
            }
        };
        cell.get_or_try_init(|| load()).await.cloned()
    }

    fn put(&self, key: K, cell: Arc<OnceCell<V>>) {
        let mut entries = self.lock();
        Self::sweep(&mut entries, self.ttl);
        entries.insert(key, (Instant::now(), cell));
    }

    fn sweep(entries: &mut HashMap<K, Entry<V>>, ttl: Duration) {
        if entries.len() > SWEEP_ABOVE {
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Entry<V>>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_millis(50));
        cache.insert("a", 1);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(cache.get(&"a"), None);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let loads = Arc::new(AtomicUsize::new(0));
        let callers = (0..100).map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            tokio::spawn(async move {
                cache
                    .get_or_load(&"stream", async || {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(7)
                    })
                    .await
            })
        });
        for caller in futures::future::join_all(callers).await {
            assert_eq!(caller.unwrap(), Ok(7));
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(cache.get(&"stream"), Some(7));
    }

    #[tokio::test]
    async fn a_failed_load_is_not_stored() {
        let cache = TtlCache::new(Duration::from_secs(60));
        let failed: Result<u32, &str> = cache.get_or_load(&"a", async || Err("down")).await;
        assert_eq!(failed, Err("down"));
        assert_eq!(cache.get(&"a"), None);
        let loaded: Result<u32, &str> = cache.get_or_load(&"a", async || Ok(3)).await;
        assert_eq!(loaded, Ok(3));
    }
}
