//! `CompileBudget`: counting, typed exhaustion that does not count, the limit holding under
//! concurrent use, validation of `ANE_MAX_COMPILES`, and the process-wide budget.
//!
//! No test here changes this process's environment: tests of `from_env` and `global` run this
//! test executable again as a child process with the variable set (see `child_probe`).

use std::process::Command;

use ane_runtime::budget::{
    parse_limit, CompileBudget, DEFAULT_MAX_COMPILES, ENV_MAX_COMPILES, MAX_COMPILES_CEILING,
};
use ane_runtime::Error;

#[test]
fn counts_each_compile() {
    let budget = CompileBudget::new(3);
    assert_eq!(
        (budget.used(), budget.remaining(), budget.limit()),
        (0, 3, 3)
    );
    assert_eq!(budget.try_acquire().unwrap(), 1);
    assert_eq!(budget.try_acquire().unwrap(), 2);
    assert_eq!((budget.used(), budget.remaining()), (2, 1));
}

#[test]
fn exhaustion_is_typed_and_does_not_count() {
    let budget = CompileBudget::new(2);
    budget.try_acquire().unwrap();
    budget.try_acquire().unwrap();
    for _ in 0..3 {
        match budget.try_acquire() {
            Err(Error::BudgetExhausted { used: 2, limit: 2 }) => {}
            other => panic!("expected BudgetExhausted {{ used: 2, limit: 2 }}, got {other:?}"),
        }
    }
    assert_eq!((budget.used(), budget.remaining()), (2, 0));

    let none = CompileBudget::new(0);
    assert!(matches!(
        none.try_acquire(),
        Err(Error::BudgetExhausted { used: 0, limit: 0 })
    ));
}

#[test]
fn would_exceed_looks_ahead_by_a_batch() {
    let budget = CompileBudget::new(100);
    for _ in 0..40 {
        budget.try_acquire().unwrap();
    }
    assert!(!budget.would_exceed(0));
    assert!(
        !budget.would_exceed(60),
        "exactly reaching the limit is allowed"
    );
    assert!(budget.would_exceed(61));
    assert!(budget.would_exceed(usize::MAX), "no overflow");
}

#[test]
fn concurrent_acquire_never_exceeds_the_limit() {
    const LIMIT: usize = 1_000;
    let budget = CompileBudget::new(LIMIT);
    let granted: Vec<Vec<usize>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = &budget;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for _ in 0..500 {
                        if let Ok(n) = budget.try_acquire() {
                            mine.push(n);
                        }
                    }
                    mine
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = granted.into_iter().flatten().collect();
    all.sort_unstable();
    // 4000 attempts for 1000 units: every count 1..=1000 handed out exactly once.
    assert_eq!(all, (1..=LIMIT).collect::<Vec<_>>());
    assert_eq!(budget.used(), LIMIT);
}

#[test]
fn parse_limit_accepts_positive_integers_up_to_the_ceiling() {
    for (text, want) in [
        ("1", 1),
        ("7", 7),
        ("100", 100),
        ("119", 119),
        ("007", 7),
        ("100000", MAX_COMPILES_CEILING),
    ] {
        assert_eq!(parse_limit(text).unwrap(), want, "value {text:?}");
    }
}

#[test]
fn parse_limit_rejects_everything_else() {
    for text in [
        "0",
        "-3",
        "+5",
        "abc",
        "",
        " 7",
        "7 ",
        "7\n",
        "1e3",
        "1.5",
        "0x10",
        "100001",
        "99999999999999999999999999",
        "１２",
    ] {
        match parse_limit(text) {
            Err(Error::Config {
                name,
                value,
                expected,
            }) => {
                assert_eq!(name, ENV_MAX_COMPILES);
                assert_eq!(value, text);
                assert!(expected.contains("positive integer"), "{expected}");
                assert!(expected.contains("119"), "{expected}");
            }
            other => panic!("{text:?} gave {other:?}"),
        }
    }
}

/// Runs `child_probe` in a fresh process with `ANE_MAX_COMPILES` set to `value` (or unset) and
/// returns the line it printed.
fn probe(value: Option<&str>) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_probe", "--nocapture", "--test-threads=1"])
        .env("ANE_BUDGET_PROBE", "1");
    match value {
        Some(v) => cmd.env(ENV_MAX_COMPILES, v),
        None => cmd.env_remove(ENV_MAX_COMPILES),
    };
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .lines()
        .find_map(|l| l.split_once("PROBE ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child_probe did not run: {stdout}"))
        .to_string()
}

/// In a child started by `probe`: reports what `from_env`, `global` and `init_global` give.
/// Does nothing in a normal test run.
#[test]
fn child_probe() {
    if std::env::var_os("ANE_BUDGET_PROBE").is_none() {
        return;
    }
    let from_env = match CompileBudget::from_env() {
        Ok(b) => format!("limit={}", b.limit()),
        Err(e) => format!("error={e}"),
    };
    let global = match CompileBudget::global() {
        Ok(b) => {
            b.try_acquire().unwrap();
            let same = std::ptr::eq(b, CompileBudget::global().unwrap());
            format!("limit={} used={} same={same}", b.limit(), b.used())
        }
        Err(e) => format!("error={}", matches!(e, Error::Config { .. })),
    };
    let init = match CompileBudget::init_global(42) {
        Ok(b) => format!("limit={}", b.limit()),
        Err(_) => "error".to_string(),
    };
    println!("PROBE from_env[{from_env}] global[{global}] init42[{init}]");
}

#[test]
fn environment_sets_the_process_budget() {
    let d = DEFAULT_MAX_COMPILES;
    assert_eq!(
        probe(None),
        format!("from_env[limit={d}] global[limit={d} used=1 same=true] init42[error]")
    );
    assert_eq!(
        probe(Some("42")),
        "from_env[limit=42] global[limit=42 used=1 same=true] init42[limit=42]"
    );
}

#[test]
fn invalid_environment_is_an_error_not_a_panic() {
    let line = probe(Some("0"));
    assert!(line.starts_with("from_env[error=invalid setting ANE_MAX_COMPILES=\"0\""));
    // `global` reported the error and set nothing, so a flag can still set the budget.
    assert!(
        line.ends_with("global[error=true] init42[limit=42]"),
        "{line}"
    );
}

#[test]
fn init_global_rejects_bad_limits() {
    assert!(matches!(
        CompileBudget::init_global(0),
        Err(Error::Config { .. })
    ));
    assert!(matches!(
        CompileBudget::init_global(MAX_COMPILES_CEILING + 1),
        Err(Error::Config { .. })
    ));
}
