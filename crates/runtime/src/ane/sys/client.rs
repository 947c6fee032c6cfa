//! `_ANEClient` real-time task calls (reference §1.7; used by forks, never by upstream):
//! `[[_ANEClient sharedConnection] beginRealTimeTask]` / `endRealTimeTask`. The connection
//! comes from the public-looking class method, not from a model's private `_sharedConnection`
//! ivar (the PR #22 defect). Every piece is optional: a missing class or selector makes
//! realtime unavailable with the reason, never an error.

use super::objc::{Class, Objc, Sel};

const CLIENT: &str = "_ANEClient";

/// What realtime needs, or why it is unavailable.
#[derive(Debug)]
pub enum ClientApi {
    /// The class and all three selectors exist.
    Available {
        /// `_ANEClient`.
        class: Class,
        /// `+sharedConnection`.
        shared: Sel,
        /// `-beginRealTimeTask`.
        begin: Sel,
        /// `-endRealTimeTask`.
        end: Sel,
    },
    /// Why not.
    Unavailable(String),
}

// SAFETY: class and selector pointers are immutable runtime data.
unsafe impl Send for ClientApi {}
// SAFETY: as above.
unsafe impl Sync for ClientApi {}

impl ClientApi {
    /// Looks the class and selectors up.
    pub fn load(objc: &Objc) -> Self {
        let found = (|| {
            let class = objc.class(CLIENT)?;
            Ok::<_, crate::ane::backend::SysError>(ClientApi::Available {
                class,
                shared: objc.require(class, CLIENT, c"sharedConnection", true)?,
                begin: objc.require(class, CLIENT, c"beginRealTimeTask", false)?,
                end: objc.require(class, CLIENT, c"endRealTimeTask", false)?,
            })
        })();
        found.unwrap_or_else(|e| ClientApi::Unavailable(e.to_string()))
    }

    /// Sends `beginRealTimeTask` (`begin`) or `endRealTimeTask` to the shared connection.
    pub fn realtime(&self, objc: &Objc, begin: bool) -> Result<(), String> {
        let (class, shared, sel) = match self {
            ClientApi::Available {
                class,
                shared,
                begin: b,
                end,
            } => (*class, *shared, if begin { *b } else { *end }),
            ClientApi::Unavailable(why) => return Err(why.clone()),
        };
        let _pool = objc.pool();
        // SAFETY: `_ANEClient` responds to +sharedConnection (checked), id (Class, SEL).
        let conn = unsafe { objc.send_id(class, shared) };
        if conn.is_null() {
            return Err("+[_ANEClient sharedConnection] returned nil".into());
        }
        // SAFETY: instances respond to the selector (checked); void (id, SEL).
        unsafe { objc.send_void(conn, sel) };
        Ok(())
    }
}
