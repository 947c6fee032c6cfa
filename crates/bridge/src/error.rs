//! The bridge's errors, the thread-local `last_error`, and the guard every C entry point runs
//! its body in (no panic crosses the FFI boundary).

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What went wrong in a bridge call; its text becomes `ane_bridge_last_error()`.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A pointer argument that must not be NULL was NULL.
    #[error("{0} is NULL")]
    Null(&'static str),
    /// A pointer argument is not aligned for its element type.
    #[error("{0} is not aligned for its element type")]
    Misaligned(&'static str),
    /// A handle that is not live: freed already, or never returned by a compile function.
    #[error(
        "{0} is not a live kernel handle (already freed, or never returned by ane_bridge_compile*)"
    )]
    NotAHandle(&'static str),
    /// An index outside `0..count`.
    #[error("{what} index {index} is out of range: the kernel has {count} {what}s (0..{count})")]
    Index {
        /// `input`, `weight` or `output`.
        what: &'static str,
        /// The index given.
        index: i64,
        /// How many there are.
        count: usize,
    },
    /// A count or size argument that cannot be right (negative, zero where one is needed, too big).
    #[error("{0}")]
    Argument(String),
    /// The byte sizes given do not match the tensor types the MIL declares.
    #[error("{0}")]
    Mismatch(String),
    /// A write larger than the tensor; nothing was written.
    #[error("{0}")]
    Oversize(String),
    /// The MIL text is not UTF-8.
    #[error("the MIL text is not valid UTF-8: {0}")]
    Utf8(#[from] std::str::Utf8Error),
    /// The MIL text does not parse.
    #[error("MIL text: {0}")]
    Parse(#[from] ane_mil::ParseError),
    /// The MIL program is not valid.
    #[error("MIL: {0}")]
    Mil(#[from] ane_mil::Error),
    /// Realtime scheduling was refused; evaluation works as before.
    #[error("realtime unavailable: {0}")]
    Realtime(String),
    /// The runtime (device, compile, binding, eval) failed.
    #[error("{0}")]
    Runtime(#[from] ane_runtime::Error),
}

/// Result with [`BridgeError`].
pub type Result<T, E = BridgeError> = std::result::Result<T, E>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Sets this thread's last error (`""` clears it). NUL bytes in `msg` become `?`.
pub fn set_last_error(msg: &str) {
    let clean = CString::new(msg.replace('\0', "?")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = clean);
}

/// This thread's last error as a C string, valid until the next bridge call on this thread.
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// This thread's last error as a Rust string (for tests).
pub fn last_error() -> String {
    LAST_ERROR.with(|e| e.borrow().to_string_lossy().into_owned())
}

/// Runs one entry point's body: `""` becomes the last error on success, the error's text on
/// failure (returning `failed`), and a panic is caught, reported as an internal error and
/// turned into `failed` too.
pub fn guard<T>(failed: T, body: impl FnOnce() -> Result<T>) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(v)) => {
            set_last_error("");
            v
        }
        Ok(Err(e)) => {
            set_last_error(&e.to_string());
            failed
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!(
                "internal error (a bug in ane-bridge, please report it): {what}"
            ));
            failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_sets_clears_and_catches() {
        assert_eq!(guard(0, || Err(BridgeError::Null("data"))), 0);
        assert_eq!(last_error(), "data is NULL");
        assert_eq!(guard(0, || Ok(7)), 7);
        assert_eq!(last_error(), "");
        let r = guard(-1, || -> Result<i32> { panic!("boom") });
        assert_eq!(r, -1);
        assert!(last_error().contains("boom"), "{}", last_error());
        set_last_error("a\0b");
        assert_eq!(last_error(), "a?b");
    }
}
