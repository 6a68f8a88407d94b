//! Where results are remembered: the cache-store trait (a cycle breaker the cache crate
//! implements through the engine) and an in-memory store for tests and one-off builds.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::key::CacheKey;

/// A stored result: the value and the key that vertices depending on it use.
///
/// `output_key` is the content key when the op offered one, else the cheap key. A hit on the cheap
/// key must hand dependents the same key as the miss that produced the record did, or a rebuild
/// would key its dependents differently; that is why the record carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRecord<T> {
    /// The key dependents of this vertex derive their own keys from.
    pub output_key: CacheKey,
    /// The result.
    pub value: T,
}

/// Cache-key → result records. Failures are never saved.
///
/// Defined here so the solver needs no storage crate; the engine adapts the real store to it.
pub trait CacheStore<T>: Send + Sync + 'static {
    /// Why loading or saving failed; it fails the vertex.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The record saved under `key`, if any.
    fn load(
        &self,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<CacheRecord<T>>, Self::Error>> + Send;

    /// Saves one record under every key in `keys` (the cheap key, then the content key if any);
    /// a store should write them atomically.
    fn save(
        &self,
        keys: &[CacheKey],
        record: &CacheRecord<T>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A cache store in memory, counting its calls (tests read the counters).
#[derive(Debug)]
pub struct MemoryStore<T> {
    records: Mutex<HashMap<CacheKey, CacheRecord<T>>>,
    loads: AtomicUsize,
    saves: AtomicUsize,
}

impl<T> Default for MemoryStore<T> {
    fn default() -> Self {
        Self {
            records: Mutex::new(HashMap::new()),
            loads: AtomicUsize::new(0),
            saves: AtomicUsize::new(0),
        }
    }
}

impl<T: Clone> MemoryStore<T> {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The record under `key`, without counting a load.
    pub fn get(&self, key: &CacheKey) -> Option<CacheRecord<T>> {
        self.lock().get(key).cloned()
    }

    /// Stores a record directly, without counting a save.
    pub fn insert(&self, key: CacheKey, record: CacheRecord<T>) {
        self.lock().insert(key, record);
    }

    /// Drops the record under `key` (as a garbage collector would).
    pub fn remove(&self, key: &CacheKey) -> Option<CacheRecord<T>> {
        self.lock().remove(key)
    }

    /// How many keys have a record.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key has a record.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// How many `load` calls were made.
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    /// How many `save` calls were made.
    pub fn saves(&self) -> usize {
        self.saves.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, CacheRecord<T>>> {
        // A panic while holding this lock cannot leave the map half-updated, so poison is moot.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Clone + Send + Sync + 'static> CacheStore<T> for MemoryStore<T> {
    type Error = Infallible;

    async fn load(&self, key: &CacheKey) -> Result<Option<CacheRecord<T>>, Infallible> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        Ok(self.get(key))
    }

    async fn save(&self, keys: &[CacheKey], record: &CacheRecord<T>) -> Result<(), Infallible> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        let mut records = self.lock();
        for key in keys {
            records.insert(*key, record.clone());
        }
        Ok(())
    }
}

/// A shared store is a store, so the caller can keep a handle to it next to the solver.
impl<T, S: CacheStore<T>> CacheStore<T> for std::sync::Arc<S> {
    type Error = S::Error;

    fn load(
        &self,
        key: &CacheKey,
    ) -> impl Future<Output = Result<Option<CacheRecord<T>>, Self::Error>> + Send {
        (**self).load(key)
    }

    fn save(
        &self,
        keys: &[CacheKey],
        record: &CacheRecord<T>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).save(keys, record)
    }
}
