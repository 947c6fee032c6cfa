//! `ane-train bench pool`: recompile cycles in one process with the surface pool on and off
//! (upstream PR #33's IOSurface pool, measured). One cycle builds a Baked model — compiling
//! every kernel and allocating its surfaces, as a restart does — runs one forward+backward and
//! drops the model, returning its surfaces to the pool. The two sides alternate, cycle by
//! cycle, on the same machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use ane_runtime::cpu::{CpuDevice, HostMemory};
use ane_runtime::pool::{SurfacePool, DEFAULT_POOL_CAPACITY};
use ane_runtime::Fidelity;
use ane_train::data::{corpus, TokenData};
use ane_train::kernels::WeightMode;
use ane_train::llama::{init_params, Model};
use anyhow::{bail, Result};
use clap::Args;

use super::bench_common::{model_config, print_header, table, write_json, Machine, Stat};

/// Arguments of `bench pool`.
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// Model preset or TOML file.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// Override the model's window length.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Cycles per side.
    #[arg(long, default_value_t = 5)]
    pub cycles: usize,
    /// Capacity of the pool when on.
    #[arg(long, default_value_t = DEFAULT_POOL_CAPACITY)]
    pub capacity: usize,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One side of the comparison.
#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    pool: &'static str,
    capacity: usize,
    cycles: usize,
    surfaces_created: u64,
    pool_hits: u64,
    ms_per_cycle: Stat,
}

/// Runs `bench pool`.
pub fn run(args: &PoolArgs) -> Result<ExitCode> {
    if args.cycles == 0 {
        bail!("--cycles must be at least 1");
    }
    let cfg = model_config(&args.model, args.seq_len)?;
    let machine = Machine::detect();
    print_header("pool", &machine);
    println!(
        "model {} (Baked, ane-sim device), {} recompile cycles per side, alternating; the \
         pool reuses allocations by exact size; medians [min, max]\n",
        cfg.name, args.cycles
    );
    let data = TokenData::from_text(corpus::builtin().as_bytes(), 0.05)?;
    data.check(cfg.vocab_size, cfg.seq_len)?;
    let window = &data.train[..=cfg.seq_len];
    let params = init_params(&cfg, 1);
    let sides = [("on", args.capacity), ("off", 0)];
    let pools: Vec<Arc<SurfacePool<HostMemory>>> = sides
        .iter()
        .map(|&(_, cap)| Arc::new(SurfacePool::new(cap)))
        .collect();
    let mut times = vec![Vec::new(); sides.len()];
    for _ in 0..args.cycles {
        for (pool, t) in pools.iter().zip(&mut times) {
            let device = Arc::new(CpuDevice::with_pool(Fidelity::Ane, pool.clone()));
            let start = Instant::now();
            let mut model = Model::new(cfg.clone(), device, WeightMode::Baked, params.clone())?;
            model.loss_and_grads(window)?;
            drop(model);
            t.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let rows: Vec<Row> = sides
        .iter()
        .zip(&pools)
        .zip(times)
        .map(|((&(name, capacity), pool), t)| {
            let s = pool.stats();
            Row {
                pool: name,
                capacity,
                cycles: args.cycles,
                surfaces_created: s.misses,
                pool_hits: s.hits,
                ms_per_cycle: Stat::of(t),
            }
        })
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                format!("{} (capacity {})", r.pool, r.capacity),
                r.cycles.to_string(),
                r.surfaces_created.to_string(),
                r.pool_hits.to_string(),
                r.ms_per_cycle.cell(1),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "pool",
                "cycles",
                "surfaces created",
                "pool hits",
                "ms/cycle"
            ],
            &cells
        )
    );
    if let Some(path) = &args.json {
        let j = serde_json::json!({
            "bench": "pool",
            "machine": machine,
            "model": cfg.name,
            "device": "ane-sim",
            "rows": rows,
        });
        write_json(path, &j)?;
    }
    Ok(ExitCode::SUCCESS)
}
