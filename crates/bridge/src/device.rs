//! Which device the bridge compiles for, opening it, and the compile count.
//!
//! The choice is, in order: the last `ane_bridge_set_device`, else `ANE_BRIDGE_DEVICE`, else
//! `auto` (the Neural Engine where it opens, else `cpu`). The device is opened by
//! `ane_bridge_init` or, if the program skipped it, by the first compile. Every device counts
//! compiles against the runtime's process-wide budget ([`CompileBudget::global`],
//! `ANE_MAX_COMPILES`), so a program rehearses its exec()-restart on `cpu` and `ane-sim` too;
//! the bridge's compile count is that budget's count since the last reset.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use ane_runtime::budget::CompileBudget;
use ane_runtime::cpu::CpuDevice;
use ane_runtime::{Device, Error as RtError, Fidelity};

use crate::error::{BridgeError, Result};
use crate::memo::Memo;

/// The environment variable naming the default device.
pub const ENV_DEVICE: &str = "ANE_BRIDGE_DEVICE";

/// A device choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The CPU executor, f32 compute.
    Cpu,
    /// The CPU executor with the Neural Engine's fp16 rounding and rules.
    AneSim,
    /// The Neural Engine (macOS only).
    Ane,
    /// `ane` where it opens, else `cpu`.
    Auto,
}

impl Choice {
    /// Parses `cpu`, `ane-sim`, `ane` or `auto`.
    pub fn parse(name: &str) -> Option<Choice> {
        match name {
            "cpu" => Some(Choice::Cpu),
            "ane-sim" => Some(Choice::AneSim),
            "ane" => Some(Choice::Ane),
            "auto" => Some(Choice::Auto),
            _ => None,
        }
    }

    /// The name as a static C string.
    pub fn c_name(self) -> &'static CStr {
        match self {
            Choice::Cpu => c"cpu",
            Choice::AneSim => c"ane-sim",
            Choice::Ane => c"ane",
            Choice::Auto => c"auto",
        }
    }
}

/// The device opened, with its kernel cache.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The device.
    pub device: Arc<dyn Device>,
    /// Kernels compiled on it in this process.
    pub memo: Arc<Memo>,
    /// What it was opened as (`Auto` resolved to `Ane` or `Cpu`).
    pub kind: Choice,
}

impl Opened {
    /// `device` (opened as `kind`) with an empty kernel cache.
    pub fn new(device: Arc<dyn Device>, kind: Choice) -> Self {
        Opened {
            device,
            memo: Arc::new(Memo::default()),
            kind,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    chosen: Option<Choice>,
    opened: Option<Opened>,
}

static STATE: Mutex<State> = Mutex::new(State {
    chosen: None,
    opened: None,
});

/// The compile budget's count at the last reset.
static BASELINE: AtomicUsize = AtomicUsize::new(0);

fn state() -> MutexGuard<'static, State> {
    // The state is two plain fields, consistent after any panic.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The device choice now in force.
pub fn chosen() -> Result<Choice> {
    if let Some(c) = state().chosen {
        return Ok(c);
    }
    match std::env::var_os(ENV_DEVICE) {
        None => Ok(Choice::Auto),
        Some(raw) => {
            let value = raw.to_string_lossy();
            Choice::parse(&value).ok_or_else(|| {
                BridgeError::Runtime(RtError::Config {
                    name: ENV_DEVICE.into(),
                    value: value.into_owned(),
                    expected: "one of cpu, ane-sim, ane, auto".into(),
                })
            })
        }
    }
}

/// Chooses the device for the next `init` (or compile); the device open now, if any, is
/// dropped (handles compiled on it keep working).
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
pub unsafe fn set_device(name: *const c_char) -> Result<()> {
    if name.is_null() {
        return Err(BridgeError::Null("name"));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    let choice = Choice::parse(&s).ok_or_else(|| {
        BridgeError::Argument(format!(
            "unknown device {s:?}: use one of cpu, ane-sim, ane, auto"
        ))
    })?;
    let mut st = state();
    st.chosen = Some(choice);
    st.opened = None;
    Ok(())
}

/// The device open now, or (before one is opened) the choice.
pub fn name() -> Result<&'static CStr> {
    if let Some(o) = &state().opened {
        return Ok(o.kind.c_name());
    }
    Ok(chosen()?.c_name())
}

/// Opens the chosen device unless it is open, and resets the compile count.
pub fn init() -> Result<()> {
    current()?;
    reset_compile_count()
}

/// The device open now, opening the chosen one first if none is.
pub fn current() -> Result<Opened> {
    if let Some(o) = &state().opened {
        return Ok(o.clone());
    }
    let choice = chosen()?;
    let (device, kind) = open(choice)?;
    let mut st = state();
    // Another thread may have opened one meanwhile; the first one stays.
    let o = st.opened.get_or_insert_with(|| Opened::new(device, kind));
    Ok(o.clone())
}

fn open(choice: Choice) -> Result<(Arc<dyn Device>, Choice)> {
    let budget: &'static CompileBudget = CompileBudget::global()?;
    let cpu = |f| -> Arc<dyn Device> {
        Arc::new(CpuDevice::new(f).with_compile_budget(Arc::new(budget)))
    };
    match choice {
        Choice::Cpu => Ok((cpu(Fidelity::Exact), Choice::Cpu)),
        Choice::AneSim => Ok((cpu(Fidelity::Ane), Choice::AneSim)),
        Choice::Ane => Ok((ane_runtime::open("ane")?, Choice::Ane)),
        Choice::Auto => match ane_runtime::open("ane") {
            Ok(d) => Ok((d, Choice::Ane)),
            Err(RtError::Unavailable(_)) => Ok((cpu(Fidelity::Exact), Choice::Cpu)),
            Err(e) => Err(e.into()),
        },
    }
}

/// Compiles counted by the runtime's budget since the last reset.
pub fn compile_count() -> Result<usize> {
    let used = CompileBudget::global()?.used();
    Ok(used.saturating_sub(BASELINE.load(Ordering::Acquire)))
}

/// Makes the compile count start again from 0. The budget itself (the leak it models) is not
/// reset: `ANE_MAX_COMPILES` still bounds the process.
pub fn reset_compile_count() -> Result<()> {
    let used = CompileBudget::global()?.used();
    BASELINE.store(used, Ordering::Release);
    Ok(())
}
