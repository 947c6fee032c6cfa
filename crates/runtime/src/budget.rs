//! The per-process compile budget.
//!
//! The Neural Engine leaks resources with every compile; after about 119 compiles in one process,
//! compiles start to fail (`reference/ane-upstream.md` §1.5). Each compile first takes one unit
//! of the budget; when the budget is spent the caller checkpoints and restarts the process.
//! Loads served from the compile cache are counted too (the ANE driver takes one unit for each),
//! until it is measured whether they leak like real compiles.
//!
//! The limit comes from `ANE_MAX_COMPILES` (default [`DEFAULT_MAX_COMPILES`]) or from a CLI flag,
//! both validated by [`parse_limit`]: unlike upstream's `atoi`, a bad value is an error, never a
//! silent `0`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::error::{Error, Result};

/// The environment variable holding the per-process compile limit.
pub const ENV_MAX_COMPILES: &str = "ANE_MAX_COMPILES";

/// Compile limit when [`ENV_MAX_COMPILES`] is not set (upstream's default; below the ~119 leak).
pub const DEFAULT_MAX_COMPILES: usize = 100;

/// The largest limit [`parse_limit`] accepts.
pub const MAX_COMPILES_CEILING: usize = 100_000;

/// What [`parse_limit`] accepts, as given in its error.
const EXPECTED: &str =
    "a positive integer up to 100000 (the Neural Engine leaks resources after about 119 compiles)";

/// Parses a compile limit: ASCII digits only (no sign, no spaces, no exponent), value in
/// `1..=`[`MAX_COMPILES_CEILING`]. Shared by [`CompileBudget::from_env`] and the CLI flag.
///
/// Errors: [`Error::Config`] naming [`ENV_MAX_COMPILES`] and the value given.
pub fn parse_limit(value: &str) -> Result<usize> {
    let invalid = || Error::Config {
        name: ENV_MAX_COMPILES.to_string(),
        value: value.to_string(),
        expected: EXPECTED.to_string(),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_COMPILES_CEILING).contains(&n) => Ok(n),
        _ => Err(invalid()),
    }
}

/// Counts compiles against a fixed limit. Lock-free; shared by reference between threads.
///
/// Invariant: `used() <= limit()` at all times; `used` only grows.
#[derive(Debug)]
pub struct CompileBudget {
    used: AtomicUsize,
    limit: usize,
}

impl CompileBudget {
    /// A budget of `limit` compiles, none used. `0` allows no compile at all.
    pub fn new(limit: usize) -> Self {
        CompileBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// A budget whose limit is `ANE_MAX_COMPILES` ([`DEFAULT_MAX_COMPILES`] when unset).
    ///
    /// Errors: [`Error::Config`] when the variable is set but not accepted by [`parse_limit`]
    /// (including a value that is not valid Unicode).
    pub fn from_env() -> Result<Self> {
        let limit = match std::env::var_os(ENV_MAX_COMPILES) {
            None => DEFAULT_MAX_COMPILES,
            Some(raw) => parse_limit(&raw.to_string_lossy())?,
        };
        Ok(CompileBudget::new(limit))
    }

    /// Counts one compile and returns the number used including it (`1..=limit`).
    ///
    /// Errors: [`Error::BudgetExhausted`] when `limit` compiles are already counted; the count
    /// is then left unchanged, so the error can be retried or reported without drift.
    pub fn try_acquire(&self) -> Result<usize> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < self.limit).then_some(used + 1)
            })
            .map(|before| before + 1)
            .map_err(|used| Error::BudgetExhausted {
                used,
                limit: self.limit,
            })
    }

    /// Compiles counted so far.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The most compiles this budget allows.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Compiles still allowed: `limit - used`.
    pub fn remaining(&self) -> usize {
        self.limit.saturating_sub(self.used())
    }

    /// Whether `n` more compiles would go past the limit — ask before a batch of `n` kernels so
    /// the process can checkpoint and restart first instead of failing half-way.
    pub fn would_exceed(&self, n: usize) -> bool {
        self.used().saturating_add(n) > self.limit
    }
}

/// Counts compiles against a budget. The driver counts every real compile and every load
/// served from the compile cache: whether a cache-served load leaks like a compile is
/// unmeasured (style-anchors rec. 5), so it is counted until someone measures it.
pub trait CompileCounter: Send + Sync + std::fmt::Debug {
    /// Counts one compile and returns how many are counted, or
    /// [`crate::Error::BudgetExhausted`] (counting nothing) when the budget is spent.
    fn try_acquire(&self) -> Result<usize>;

    /// Compiles still allowed, or `None` when the counter has no limit.
    fn remaining(&self) -> Option<usize> {
        None
    }
}

impl CompileCounter for CompileBudget {
    fn try_acquire(&self) -> Result<usize> {
        CompileBudget::try_acquire(self)
    }
    fn remaining(&self) -> Option<usize> {
        Some(CompileBudget::remaining(self))
    }
}

impl CompileCounter for &'static CompileBudget {
    fn try_acquire(&self) -> Result<usize> {
        CompileBudget::try_acquire(self)
    }
    fn remaining(&self) -> Option<usize> {
        Some(CompileBudget::remaining(self))
    }
}

static GLOBAL: OnceLock<CompileBudget> = OnceLock::new();

impl CompileBudget {
    /// Sets the process-wide budget to `limit` (e.g. from a CLI flag, which wins over the
    /// environment) and returns it. Call it before any compile.
    ///
    /// Errors: [`Error::Config`] when `limit` is outside `1..=`[`MAX_COMPILES_CEILING`], or when
    /// the process-wide budget already exists with a different limit (it was initialised earlier,
    /// by this function or by [`CompileBudget::global`]).
    pub fn init_global(limit: usize) -> Result<&'static CompileBudget> {
        let value = limit.to_string();
        parse_limit(&value)?;
        let budget = GLOBAL.get_or_init(|| CompileBudget::new(limit));
        if budget.limit() == limit {
            Ok(budget)
        } else {
            Err(Error::Config {
                name: ENV_MAX_COMPILES.to_string(),
                value,
                expected: format!(
                    "the limit set when the process-wide compile budget was first used ({})",
                    budget.limit()
                ),
            })
        }
    }

    /// The process-wide budget, initialised on first use by [`CompileBudget::from_env`] unless
    /// [`CompileBudget::init_global`] was called first. Never panics.
    ///
    /// Errors: [`Error::Config`] when it is not yet initialised and `ANE_MAX_COMPILES` is invalid;
    /// nothing is initialised then, so every later call reports the same error.
    pub fn global() -> Result<&'static CompileBudget> {
        if let Some(budget) = GLOBAL.get() {
            return Ok(budget);
        }
        let budget = CompileBudget::from_env()?;
        // If another thread initialised it meanwhile, its budget wins and ours is dropped unused.
        Ok(GLOBAL.get_or_init(|| budget))
    }
}
