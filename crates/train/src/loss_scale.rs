//! Dynamic loss scaling for fp16 devices.
//!
//! On an fp16 device the loss gradient is multiplied by the loss scale before backward so that
//! small gradients do not flush to zero in fp16; the optimizer divides it out again. Too high a
//! scale overflows fp16 (a non-finite gradient); too low loses precision. [`LossScaler`] keeps
//! the scale as high as works: it starts at [`START`] (2^16), halves on every overflow (the
//! update is skipped), and doubles after [`GROWTH_INTERVAL`] clean updates in a row, never
//! below [`MIN`] (1) nor above [`MAX`] (2^24). An overflow AT the floor means the gradient is
//! not finite even unscaled: the trainer counts those and stops after a few in a row
//! ([`crate::trainer::MAX_SKIPPED_IN_A_ROW`]).
//!
//! fp32 devices use [`LossScaler::fixed_one`]: scale 1, which never changes. Every scale is a
//! power of two, so multiplying by it and by its inverse is exact.

/// First scale of a run on an fp16 device (2^16).
pub const START: f32 = 65536.0;
/// Smallest scale (2^0); halving stops here.
pub const MIN: f32 = 1.0;
/// Largest scale (2^24); doubling stops here.
pub const MAX: f32 = 16_777_216.0;
/// Clean updates in a row after which the scale doubles (the usual mixed-precision default).
pub const GROWTH_INTERVAL: u32 = 2000;
/// The fixed scale of checkpoints written before the dynamic scaler (format versions 1, 2).
pub const LEGACY_SCALE: f32 = 256.0;

/// What an overflow did to the scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// The scale was halved.
    Halved,
    /// The scale is already at its floor and did not change.
    AtFloor,
}

/// The loss scale and its clean-update counter; see the module docs.
///
/// Invariants: `scale` is a power of two in `[MIN, MAX]` (exactly 1 when fixed);
/// `clean_run < interval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScaler {
    scale: f32,
    clean_run: u32,
    interval: u32,
    dynamic: bool,
}

impl LossScaler {
    /// The scaler of a fresh run on an fp16 device: [`START`], growth after
    /// [`GROWTH_INTERVAL`] clean updates.
    pub fn dynamic() -> LossScaler {
        LossScaler {
            scale: START,
            clean_run: 0,
            interval: GROWTH_INTERVAL,
            dynamic: true,
        }
    }

    /// The scaler of an fp32 device: scale 1 forever.
    pub fn fixed_one() -> LossScaler {
        LossScaler {
            scale: 1.0,
            clean_run: 0,
            interval: GROWTH_INTERVAL,
            dynamic: false,
        }
    }

    /// A dynamic scaler at `scale` with `clean_run` clean updates behind it and growth after
    /// `interval` (e.g. from a checkpoint). Errors (a message) unless `scale` is a power of
    /// two in `[MIN, MAX]`, `interval >= 1` and `clean_run < interval`.
    pub fn restore(scale: f32, clean_run: u32, interval: u32) -> Result<LossScaler, String> {
        check_scale(scale)?;
        if interval == 0 || clean_run >= interval {
            return Err(format!(
                "clean-update counter {clean_run} with growth interval {interval}: the \
                 interval must be at least 1 and the counter below it"
            ));
        }
        Ok(LossScaler {
            scale,
            clean_run,
            interval,
            dynamic: true,
        })
    }

    /// The scaler with growth after `interval` clean updates (at least 1) instead of
    /// [`GROWTH_INTERVAL`]; the counter is reduced below it if needed. No effect when fixed.
    pub fn with_interval(mut self, interval: u32) -> LossScaler {
        self.interval = interval.max(1);
        self.clean_run %= self.interval;
        self
    }

    /// The current scale: what the loss gradient is multiplied by, and divided out by the
    /// optimizer.
    pub fn scale(&self) -> f32 {
        self.scale
    }

    /// Clean updates in a row since the last change of the scale.
    pub fn clean_run(&self) -> u32 {
        self.clean_run
    }

    /// Clean updates in a row after which the scale doubles.
    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// Whether the scale can change (fp16 devices).
    pub fn is_dynamic(&self) -> bool {
        self.dynamic
    }

    /// An overflow (non-finite gradient or loss; the update is skipped): halves the scale
    /// unless it is at [`MIN`], and restarts the clean-update count.
    pub fn on_overflow(&mut self) -> Backoff {
        self.clean_run = 0;
        if !self.dynamic || self.scale <= MIN {
            return Backoff::AtFloor;
        }
        self.scale = (self.scale * 0.5).max(MIN);
        Backoff::Halved
    }

    /// A clean update: counts it, and doubles the scale (up to [`MAX`]) after `interval` in a
    /// row. Returns whether the scale grew.
    pub fn on_clean(&mut self) -> bool {
        if !self.dynamic {
            return false;
        }
        self.clean_run += 1;
        if self.clean_run < self.interval {
            return false;
        }
        self.clean_run = 0;
        let grown = (self.scale * 2.0).min(MAX);
        let changed = grown != self.scale;
        self.scale = grown;
        changed
    }
}

/// Ok when `scale` is a power of two in `[MIN, MAX]`; else a message saying why not.
pub fn check_scale(scale: f32) -> Result<(), String> {
    let ok =
        scale.is_finite() && (MIN..=MAX).contains(&scale) && scale.to_bits() & 0x007f_ffff == 0;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "loss scale {scale} is not a power of two between {MIN} and {MAX}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_down_to_the_floor() {
        let mut s = LossScaler::dynamic();
        assert_eq!(s.scale(), START);
        assert_eq!(s.on_overflow(), Backoff::Halved);
        assert_eq!(s.scale(), START / 2.0);
        for _ in 0..40 {
            s.on_overflow();
        }
        assert_eq!(s.scale(), MIN);
        assert_eq!(s.on_overflow(), Backoff::AtFloor);
        assert_eq!(s.scale(), MIN);
    }

    #[test]
    fn growth_after_interval_clean_updates_up_to_the_cap() {
        let mut s = LossScaler::dynamic().with_interval(3);
        assert!(!s.on_clean());
        assert!(!s.on_clean());
        assert_eq!(s.clean_run(), 2);
        assert!(s.on_clean());
        assert_eq!((s.scale(), s.clean_run()), (START * 2.0, 0));
        // An overflow restarts the count.
        s.on_clean();
        s.on_overflow();
        assert_eq!((s.scale(), s.clean_run()), (START, 0));
        let mut top = LossScaler::restore(MAX, 0, 1).unwrap();
        assert!(!top.on_clean());
        assert_eq!(top.scale(), MAX);
    }

    #[test]
    fn fixed_one_never_changes() {
        let mut s = LossScaler::fixed_one().with_interval(1);
        assert_eq!(s.on_overflow(), Backoff::AtFloor);
        assert!(!s.on_clean());
        assert!(!s.on_clean());
        assert_eq!((s.scale(), s.clean_run(), s.is_dynamic()), (1.0, 0, false));
    }

    #[test]
    fn restore_is_strict() {
        assert!(LossScaler::restore(256.0, 5, GROWTH_INTERVAL).is_ok());
        for bad in [0.0, -2.0, 3.0, 0.5, f32::NAN, f32::INFINITY, MAX * 2.0] {
            assert!(LossScaler::restore(bad, 0, 10).is_err(), "{bad}");
        }
        assert!(LossScaler::restore(256.0, 10, 10).is_err());
        assert!(LossScaler::restore(256.0, 0, 0).is_err());
    }
}
