//! `SurfacePool`: hit/miss counting, exact size matching, the capacity bound, concurrent use
//! without lost or duplicated allocations, and release of everything pooled on drop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ane_runtime::pool::{PoolStats, SurfacePool, DEFAULT_POOL_CAPACITY};

/// An allocation that counts its releases.
struct Counted {
    id: usize,
    released: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.released.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn counts_hits_and_misses() {
    let pool: SurfacePool<u32> = SurfacePool::new(8);
    assert_eq!(pool.take(4096), None);
    assert_eq!(pool.give(4096, 7), None);
    assert_eq!(pool.take(4096), Some(7));
    assert_eq!(pool.take(4096), None);
    assert_eq!(
        pool.stats(),
        PoolStats {
            hits: 1,
            misses: 2,
            pooled: 0,
            capacity: 8
        }
    );
}

#[test]
fn sizes_never_mix() {
    let pool: SurfacePool<&'static str> = SurfacePool::new(8);
    pool.give(49_152, "a48k");
    pool.give(98_304, "b96k");
    pool.give(49_152, "c48k");
    assert_eq!(
        pool.take(65_536),
        None,
        "no allocation of a size never given"
    );
    assert_eq!(pool.take(49_153), None, "one byte off is a different size");
    let mut small = vec![pool.take(49_152).unwrap(), pool.take(49_152).unwrap()];
    small.sort_unstable();
    assert_eq!(small, ["a48k", "c48k"]);
    assert_eq!(pool.take(49_152), None);
    assert_eq!(pool.take(98_304), Some("b96k"));
    assert!(pool.is_empty());
}

#[test]
fn capacity_bounds_all_sizes_together() {
    let pool: SurfacePool<usize> = SurfacePool::new(3);
    assert_eq!(pool.give(100, 1), None);
    assert_eq!(pool.give(200, 2), None);
    assert_eq!(pool.give(300, 3), None);
    assert_eq!(
        pool.give(100, 4),
        Some(4),
        "a full pool hands the allocation back"
    );
    assert_eq!(pool.len(), 3);
    assert_eq!(pool.take(200), Some(2));
    assert_eq!(pool.give(400, 5), None, "room again after a take");
    assert_eq!(pool.stats().pooled, 3);

    let disabled: SurfacePool<usize> = SurfacePool::new(0);
    assert_eq!(disabled.give(100, 1), Some(1));
}

#[test]
fn default_capacity_is_128() {
    let pool: SurfacePool<usize> = SurfacePool::default();
    assert_eq!(pool.capacity(), DEFAULT_POOL_CAPACITY);
    for i in 0..DEFAULT_POOL_CAPACITY {
        assert_eq!(pool.give(i % 5, i), None);
    }
    assert_eq!(pool.give(0, 999), Some(999));
}

#[test]
fn clear_and_drop_release_everything_pooled() {
    let released = Arc::new(AtomicUsize::new(0));
    let make = |id| Counted {
        id,
        released: Arc::clone(&released),
    };
    let pool = SurfacePool::new(4);
    for id in 0..4 {
        assert!(pool.give(64 * (id % 2 + 1), make(id)).is_none());
    }
    let overflow = pool.give(64, make(4)).expect("pool is full");
    drop(overflow);
    assert_eq!(released.load(Ordering::SeqCst), 1);

    let taken = pool.take(128).expect("two of size 128 were given");
    assert_eq!(taken.id % 2, 1);
    pool.clear();
    assert_eq!(
        released.load(Ordering::SeqCst),
        4,
        "clear released the 3 pooled"
    );
    assert!(pool.is_empty());

    for id in 10..13 {
        assert!(pool.give(256, make(id)).is_none());
    }
    drop(pool);
    assert_eq!(
        released.load(Ordering::SeqCst),
        7,
        "drop released the 3 pooled"
    );
    drop(taken);
    assert_eq!(released.load(Ordering::SeqCst), 8);
}

#[test]
fn pool_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SurfacePool<Vec<u8>>>();
    // Send but not Sync contents still give a Sync pool: each item is only ever moved.
    assert_send_sync::<SurfacePool<std::cell::Cell<u8>>>();
}

#[test]
fn concurrent_take_and_give_lose_and_duplicate_nothing() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 2_000;
    const SIZES: [usize; 3] = [49_152, 98_304, 196_608];
    let pool: SurfacePool<(usize, usize)> = SurfacePool::new(64);
    let counts: Vec<HashMap<(usize, usize), usize>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let pool = &pool;
                s.spawn(move || {
                    // Each allocation is (size, unique id); every one made here is either still
                    // held at the end, pooled, or handed back full and "released" (recorded).
                    let mut held: Vec<(usize, usize)> = Vec::new();
                    let mut released = HashMap::new();
                    for r in 0..ROUNDS {
                        let size = SIZES[(t + r) % SIZES.len()];
                        if r % 3 != 2 {
                            let item = pool.take(size).unwrap_or((size, t * ROUNDS + r));
                            assert_eq!(item.0, size, "a pooled item of another size came back");
                            held.push(item);
                        } else {
                            while let Some(item) = held.pop() {
                                if let Some(back) = pool.give(item.0, item) {
                                    *released.entry(back).or_insert(0) += 1;
                                }
                            }
                        }
                    }
                    for item in held {
                        *released.entry(item).or_insert(0) += 1;
                    }
                    released
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });

    let takes_per_thread = (0..ROUNDS).filter(|r| r % 3 != 2).count();
    let after_threads = pool.stats();
    assert_eq!(
        after_threads.hits + after_threads.misses,
        (THREADS * takes_per_thread) as u64
    );

    let mut seen: HashMap<(usize, usize), usize> = HashMap::new();
    for map in counts {
        for (item, n) in map {
            *seen.entry(item).or_insert(0) += n;
        }
    }
    while !pool.is_empty() {
        let before = pool.len();
        for size in SIZES {
            if let Some(item) = pool.take(size) {
                *seen.entry(item).or_insert(0) += 1;
            }
        }
        assert!(
            pool.len() < before,
            "pool reports items but none can be taken"
        );
    }
    assert!(
        seen.values().all(|&n| n == 1),
        "an allocation was duplicated"
    );
    // Every miss in the threads created one new allocation; each must be accounted for once.
    assert_eq!(
        seen.len() as u64,
        after_threads.misses,
        "an allocation was lost"
    );
}
