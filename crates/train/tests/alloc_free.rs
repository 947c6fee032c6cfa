//! A training step allocates nothing: `Model::loss_and_grads_into`, `Model::accumulate_grads`
//! and `Model::loss` make no heap allocation on any thread (every buffer is sized when the
//! model is built; the process's first call is left uncounted, for rayon's one-time thread-local setup), in every weight mode and both kernel sets, on `cpu` and on
//! `ane-sim`. Counted with a global allocator; this file holds one test so that no other test
//! allocates while it counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use ane_train::kernels::{KernelSet, WeightMode};
use ane_train::llama::{init_params, Model};
use ane_train::model::ModelConfig;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made while `f` runs (on any thread). `f` runs on a rayon worker, as a
/// training step does (`Model` enters the pool once per call; the one job that entry injects
/// costs rayon a queue block every 63 calls, which is not the step's doing).
fn count(f: impl FnOnce() + Send) -> usize {
    rayon::scope(|_| count_here(f))
}

fn count_here(f: impl FnOnce()) -> usize {
    ALLOCS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    f();
    COUNTING.store(false, Ordering::SeqCst);
    ALLOCS.load(Ordering::SeqCst)
}

#[test]
fn a_training_step_allocates_nothing() {
    let cfg = ModelConfig::from_toml_str(
        r#"
        name = "alloc"
        dim = 32
        n_layers = 2
        n_heads = 4
        n_kv_heads = 2
        head_dim = 8
        hidden_dim = 64
        vocab_size = 64
        seq_len = 32
        "#,
    )
    .unwrap();
    let tokens: Vec<u32> = (0..=cfg.seq_len as u32).map(|i| i * 7 % 64).collect();
    let mut failures = Vec::new();
    // Only the process's first step is left uncounted; every other model's first call is.
    let mut warm_up = true;
    for device in ["cpu", "ane-sim"] {
        let sets: &[KernelSet] = if device == "cpu" {
            &[KernelSet::Cpu, KernelSet::NeuralEngine]
        } else {
            &[KernelSet::NeuralEngine]
        };
        for &set in sets {
            for mode in WeightMode::ALL {
                let dev = ane_runtime::open(device).unwrap();
                let params = init_params(&cfg, 1);
                let mut model =
                    Model::with_kernel_set(cfg.clone(), dev, mode, params, set).unwrap();
                let mut grads = vec![0.0; model.params().len()];
                if std::mem::take(&mut warm_up) {
                    model.loss_and_grads_into(&tokens, &mut grads).unwrap();
                }
                let n = count(|| {
                    model.loss_and_grads_into(&tokens, &mut grads).unwrap();
                    model.accumulate_grads(&tokens, &mut grads).unwrap();
                    model.loss(&tokens).unwrap();
                });
                if n != 0 {
                    failures.push(format!("{device} {} {}: {n}", set.name(), mode.name()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "allocations in a steady-state step: {failures:?}"
    );
}
