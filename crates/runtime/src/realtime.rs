//! Raising the calling thread's scheduling priority around latency-sensitive evaluation.
//!
//! On Linux the thread asks for `SCHED_FIFO` priority 1, falling back to nice -10; on macOS it
//! asks for the user-interactive QoS class. Where the OS refuses (no privilege, a container
//! without `CAP_SYS_NICE`), nothing changes and the reason is reported — evaluation never fails
//! because of it. [`end`] restores what [`begin`] changed on the same thread.

use std::cell::Cell;

use crate::device::Realtime;

/// What `begin` changed on this thread, so `end` can undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Saved {
    Nothing,
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Policy {
        policy: i32,
        priority: i32,
    },
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Nice(i32),
    #[cfg_attr(not(target_os = "macos"), allow(dead_code))]
    Qos,
}

thread_local! {
    static SAVED: Cell<Saved> = const { Cell::new(Saved::Nothing) };
}

/// Raises the calling thread's priority; see the module docs.
pub fn begin() -> Realtime {
    if SAVED.with(Cell::get) != Saved::Nothing {
        return Realtime::Active;
    }
    match sys::raise() {
        Ok(saved) => {
            SAVED.with(|s| s.set(saved));
            Realtime::Active
        }
        Err(reason) => Realtime::Unavailable(reason),
    }
}

/// Restores the priority `begin` raised on this thread (a no-op if it raised nothing).
pub fn end() -> Realtime {
    let saved = SAVED.with(|s| s.replace(Saved::Nothing));
    if saved == Saved::Nothing {
        return Realtime::Unavailable("realtime was not active on this thread".into());
    }
    match sys::restore(saved) {
        Ok(()) => Realtime::Active,
        Err(reason) => Realtime::Unavailable(reason),
    }
}

#[cfg(target_os = "linux")]
mod sys {
    use super::Saved;

    #[repr(C)]
    struct SchedParam {
        sched_priority: i32,
    }

    const SCHED_FIFO: i32 = 1;
    const PRIO_PROCESS: i32 = 0;

    extern "C" {
        fn sched_getscheduler(pid: i32) -> i32;
        fn sched_getparam(pid: i32, param: *mut SchedParam) -> i32;
        fn sched_setscheduler(pid: i32, policy: i32, param: *const SchedParam) -> i32;
        fn getpriority(which: i32, who: u32) -> i32;
        fn setpriority(which: i32, who: u32, prio: i32) -> i32;
    }

    /// Pid 0 / who 0 mean the calling thread for these calls on Linux.
    pub fn raise() -> Result<Saved, String> {
        let mut old = SchedParam { sched_priority: 0 };
        // SAFETY: plain libc calls on the calling thread with a valid, initialised struct.
        let policy = unsafe { sched_getscheduler(0) };
        // SAFETY: as above; `old` is a valid out-pointer.
        let got = unsafe { sched_getparam(0, &mut old) };
        let fifo = SchedParam { sched_priority: 1 };
        // SAFETY: as above; `fifo` outlives the call.
        if policy >= 0 && got == 0 && unsafe { sched_setscheduler(0, SCHED_FIFO, &fifo) } == 0 {
            return Ok(Saved::Policy {
                policy,
                priority: old.sched_priority,
            });
        }
        let fifo_err = std::io::Error::last_os_error();
        // SAFETY: plain libc calls on the calling thread.
        let nice = unsafe { getpriority(PRIO_PROCESS, 0) };
        // SAFETY: as above.
        if unsafe { setpriority(PRIO_PROCESS, 0, -10) } == 0 {
            return Ok(Saved::Nice(nice));
        }
        let nice_err = std::io::Error::last_os_error();
        Err(format!(
            "the OS refused a higher priority (SCHED_FIFO: {fifo_err}; nice -10: {nice_err}); needs CAP_SYS_NICE or root"
        ))
    }

    pub fn restore(saved: Saved) -> Result<(), String> {
        let ok = match saved {
            Saved::Policy { policy, priority } => {
                let p = SchedParam {
                    sched_priority: priority,
                };
                // SAFETY: restoring the values read in `raise` on the same thread.
                unsafe { sched_setscheduler(0, policy, &p) == 0 }
            }
            // SAFETY: restoring the nice value read in `raise` on the same thread.
            Saved::Nice(n) => unsafe { setpriority(PRIO_PROCESS, 0, n) == 0 },
            _ => true,
        };
        if ok {
            Ok(())
        } else {
            Err(format!(
                "could not restore the priority: {}",
                std::io::Error::last_os_error()
            ))
        }
    }
}

#[cfg(target_os = "macos")]
mod sys {
    use super::Saved;

    const QOS_CLASS_USER_INTERACTIVE: u32 = 0x21;
    const QOS_CLASS_DEFAULT: u32 = 0x15;

    extern "C" {
        fn pthread_set_qos_class_self_np(class: u32, relative_priority: i32) -> i32;
    }

    pub fn raise() -> Result<Saved, String> {
        // SAFETY: a plain libSystem call on the calling thread.
        match unsafe { pthread_set_qos_class_self_np(QOS_CLASS_USER_INTERACTIVE, 0) } {
            0 => Ok(Saved::Qos),
            e => Err(format!("pthread_set_qos_class_self_np failed with {e}")),
        }
    }

    pub fn restore(_saved: Saved) -> Result<(), String> {
        // SAFETY: as above.
        match unsafe { pthread_set_qos_class_self_np(QOS_CLASS_DEFAULT, 0) } {
            0 => Ok(()),
            e => Err(format!("pthread_set_qos_class_self_np failed with {e}")),
        }
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
mod sys {
    use super::Saved;

    pub fn raise() -> Result<Saved, String> {
        Err("realtime priority is not implemented on this OS".into())
    }

    pub fn restore(_saved: Saved) -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn begin_and_end_pair_up_or_report_why_not() {
        let t = std::thread::spawn(|| {
            let b = begin();
            let e = end();
            (b, e)
        });
        let (b, e) = t.join().unwrap();
        match b {
            Realtime::Active => assert_eq!(e, Realtime::Active),
            Realtime::Unavailable(reason) => {
                assert!(!reason.is_empty());
                assert!(matches!(e, Realtime::Unavailable(_)));
            }
        }
        assert!(
            matches!(end(), Realtime::Unavailable(_)),
            "end without begin reports it"
        );
    }
}
