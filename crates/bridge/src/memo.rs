//! The in-process kernel cache: a compile of MIL text and weight bytes this process has already
//! compiled on the open device reuses the compiled (and, on the Neural Engine, loaded) kernel.
//!
//! Keyed with the runtime's [`CacheKey`] (SHA-256 of the MIL text, SHA-256 over the weight
//! files' names and bytes, the device kind), so a changed weight byte is a different entry.
//! Bounded to [`CAPACITY`] entries, least recently used evicted; one lock. A hit compiles
//! nothing and loads nothing, so it does not count against the compile budget.

use std::sync::{Mutex, PoisonError};

use ane_runtime::cache::CacheKey;
use ane_runtime::Kernel;

/// Most kernels kept (each keeps its program, and on the Neural Engine a loaded model).
pub const CAPACITY: usize = 32;

#[derive(Debug)]
struct Entry {
    key: CacheKey,
    kernel: Kernel,
    last_use: u64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct Memo {
    inner: Mutex<(Vec<Entry>, u64)>,
}

impl Memo {
    /// The kernel cached for `key`, marking it used.
    pub fn get(&self, key: &CacheKey) -> Option<Kernel> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (entries, tick) = &mut *g;
        *tick += 1;
        let e = entries.iter_mut().find(|e| &e.key == key)?;
        e.last_use = *tick;
        Some(e.kernel.clone())
    }

    /// Keeps `kernel` for `key`, evicting the least recently used entry when full.
    pub fn put(&self, key: CacheKey, kernel: Kernel) {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let (entries, tick) = &mut *g;
        *tick += 1;
        let last_use = *tick;
        if let Some(e) = entries.iter_mut().find(|e| e.key == key) {
            e.kernel = kernel;
            e.last_use = last_use;
            return;
        }
        if entries.len() >= CAPACITY {
            if let Some(oldest) = entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(i, _)| i)
            {
                entries.swap_remove(oldest);
            }
        }
        entries.push(Entry {
            key,
            kernel,
            last_use,
        });
    }

    /// Number of kernels kept.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .len()
    }

    /// Whether no kernel is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ane_runtime::{Device, Weights};

    fn kernel(dev: &dyn Device) -> Kernel {
        let text = "program(1.3)\n{\n    func main<ios18>(tensor<fp16, [1, 4, 1, 32]> x) {\n        tensor<fp16, [1,4,1,32]> y = add(x=x,y=x)[name=string(\"y\")];\n    } -> (y);\n}\n";
        dev.compile(&ane_mil::parse(text).unwrap(), &Weights::new())
            .unwrap()
    }

    #[test]
    fn hits_by_key_and_evicts_least_recently_used() {
        let dev = ane_runtime::open("cpu").unwrap();
        let k = kernel(dev.as_ref());
        let key = |i: usize| CacheKey::new(&format!("p{i}"), [0; 32], "cpu", "", "");
        let memo = Memo::default();
        assert!(memo.is_empty());
        for i in 0..CAPACITY {
            memo.put(key(i), k.clone());
        }
        assert!(
            memo.get(&key(0)).is_some(),
            "entry 0 is now the most recent"
        );
        memo.put(key(CAPACITY), k.clone());
        assert_eq!(memo.len(), CAPACITY);
        assert!(memo.get(&key(0)).is_some());
        assert!(
            memo.get(&key(1)).is_none(),
            "entry 1 was least recently used"
        );
        assert!(memo
            .get(&CacheKey::new("p0", [1; 32], "cpu", "", ""))
            .is_none());
    }
}
