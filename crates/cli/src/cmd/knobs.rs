//! Settings from the environment, as upstream PR #33 reads them (`ANE_ACCUM_STEPS`,
//! `ANE_MAX_COMPILES`), validated before any work: unlike upstream's `atoi`, a value that is
//! not a whole number in range is an error naming the variable and the range, never a silent
//! default.

use anyhow::{bail, Result};

use ane_runtime::budget::{parse_limit, ENV_MAX_COMPILES};

/// Environment variable: the default of `train --accum` (windows per update) on every device.
pub(crate) const ENV_ACCUM_STEPS: &str = "ANE_ACCUM_STEPS";

/// The largest accumulation accepted (from the flag or the environment): beyond it one update
/// would take hours even on the smallest model, so it is a typo rather than a setting.
pub(crate) const MAX_ACCUM: u32 = 10_000;

/// The settings the environment gives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Knobs {
    /// `ANE_ACCUM_STEPS`, when set.
    pub accum: Option<u32>,
    /// `ANE_MAX_COMPILES`, when set.
    pub max_compiles: Option<usize>,
}

/// Reads and validates both variables (also where the device never compiles, so a typo shows
/// on the machine where it was made, not on the Mac later).
pub(crate) fn from_env() -> Result<Knobs> {
    let var = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    let accum = var(ENV_ACCUM_STEPS)
        .map(|v| parse_accum(ENV_ACCUM_STEPS, &v))
        .transpose()?;
    let max_compiles = var(ENV_MAX_COMPILES)
        .map(|v| parse_limit(&v).map_err(anyhow::Error::from))
        .transpose()?;
    Ok(Knobs {
        accum,
        max_compiles,
    })
}

/// Parses an accumulation (windows per update) given as `name`: ASCII digits only, `1..=`
/// [`MAX_ACCUM`].
pub(crate) fn parse_accum(name: &str, value: &str) -> Result<u32> {
    let n = value
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| value.parse::<u32>().ok())
        .flatten();
    match n {
        Some(n) if (1..=MAX_ACCUM).contains(&n) => Ok(n),
        _ => bail!(
            "{name}={value:?}: expected a whole number of windows per update from 1 to \
             {MAX_ACCUM}"
        ),
    }
}

/// Checks an accumulation given by `--accum`.
pub(crate) fn check_accum_flag(n: u32) -> Result<u32> {
    parse_accum("--accum", &n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accumulation_accepts_whole_numbers_in_range_only() {
        assert_eq!(parse_accum(ENV_ACCUM_STEPS, "1").unwrap(), 1);
        assert_eq!(parse_accum(ENV_ACCUM_STEPS, "10000").unwrap(), 10_000);
        for bad in [
            "",
            " ",
            "0",
            "-3",
            "abc",
            "1e9",
            "10001",
            " 5",
            "5 ",
            "+5",
            "99999999999",
        ] {
            let e = parse_accum(ENV_ACCUM_STEPS, bad).unwrap_err().to_string();
            assert!(
                e.contains("ANE_ACCUM_STEPS") && e.contains("1 to 10000"),
                "{bad:?}: {e}"
            );
        }
        assert!(check_accum_flag(0).is_err());
        assert_eq!(check_accum_flag(7).unwrap(), 7);
    }
}
