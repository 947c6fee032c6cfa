//! The totals of a restart chain: a compile-budget restart re-executes `ane-train train`, and
//! the process that ends the run reports on all of them. The earlier processes' totals travel
//! in an environment variable across the exec.

use anyhow::{bail, Result};
use serde::Serialize;

/// Environment variable carrying the totals of the chain's earlier processes:
/// `<processes>,<updates>,<train seconds>,<compiles>`.
pub(crate) const ENV_CHAIN: &str = "ANE_TRAIN_CHAIN";

/// Totals over every process of one run's restart chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct Chain {
    /// Processes of the chain (1: no restart).
    pub processes: u64,
    /// Compile-budget restarts (`processes - 1`).
    pub restarts: u64,
    /// Updates done, all processes.
    pub updates: u64,
    /// Wall seconds inside training updates, all processes.
    pub train_seconds: f64,
    /// Kernel compiles, all processes.
    pub compiles: u64,
}

impl Chain {
    /// The earlier processes' totals from [`ENV_CHAIN`] (none: all zero); a malformed value
    /// is refused naming the variable.
    pub(crate) fn inherited() -> Result<Chain> {
        let Ok(v) = std::env::var(ENV_CHAIN) else {
            return Ok(Chain::default());
        };
        let parts: Vec<&str> = v.split(',').collect();
        let parsed = match parts.as_slice() {
            [p, u, s, c] => (|| {
                Some(Chain {
                    processes: p.parse().ok()?,
                    restarts: 0,
                    updates: u.parse().ok()?,
                    train_seconds: s
                        .parse()
                        .ok()
                        .filter(|x: &f64| x.is_finite() && *x >= 0.0)?,
                    compiles: c.parse().ok()?,
                })
            })(),
            _ => None,
        };
        match parsed {
            Some(c) => Ok(c),
            None => bail!(
                "{ENV_CHAIN}={v:?}: expected <processes>,<updates>,<seconds>,<compiles> (set by \
                 ane-train itself across a restart)"
            ),
        }
    }

    /// These totals plus one more process that did `updates` updates in `train_seconds`
    /// with `compiles` compiles.
    pub(crate) fn plus(self, updates: u64, train_seconds: f64, compiles: u64) -> Chain {
        let processes = self.processes.saturating_add(1);
        Chain {
            processes,
            restarts: processes - 1,
            updates: self.updates.saturating_add(updates),
            train_seconds: self.train_seconds + train_seconds,
            compiles: self.compiles.saturating_add(compiles),
        }
    }

    /// The [`ENV_CHAIN`] value handing these totals to the next process.
    pub(crate) fn to_env(self) -> String {
        format!(
            "{},{},{},{}",
            self.processes, self.updates, self.train_seconds, self.compiles
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_up_and_round_trip_through_the_variable() {
        let c = Chain::default().plus(5, 1.5, 10).plus(3, 0.5, 4);
        assert_eq!(
            (c.processes, c.restarts, c.updates, c.compiles),
            (2, 1, 8, 14)
        );
        assert_eq!(c.train_seconds, 2.0);
        let text = c.to_env();
        assert_eq!(text, "2,8,2,14");
    }
}
