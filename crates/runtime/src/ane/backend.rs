//! The trait the ANE driver is written against: one method per step of the private-API
//! sequence of `reference/ane-upstream.md` §1.3, with the framework's argument shapes kept
//! (a weights dictionary that may be nil, index arrays beside surface arrays) so that a fake
//! can enforce the same argument rules the framework does.
//!
//! Two implementations: [`super::sys::AppleSys`] (the real frameworks, resolved with dlopen)
//! and [`super::fake::FakeSys`] (a model of their observable behaviour, for Linux tests).
//! Handles are associated types that own what they refer to: dropping a `Model`, `Surface` or
//! `Request` releases it (Objective-C `release` / `CFRelease` on the real one).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A weight file handed to the descriptor: the BLOBFILE path exactly as written in the MIL
/// (`@model_path/weights/wq.bin`) and the file's bytes.
pub type WeightFile = (String, Arc<[u8]>);

/// What the framework (or the fake) reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SysError {
    /// A library, symbol, class or selector does not exist on this machine.
    Missing(String),
    /// A call returned NO / nil. `code` is the NSError code or the status the message names
    /// (e.g. `0x1d`), `message` the NSError description (or what returned nil).
    Failed {
        /// NSError code or hardware status, where one is known.
        code: Option<i64>,
        /// The framework's message.
        message: String,
    },
}

impl SysError {
    /// The same error with `context` appended to its message.
    pub fn with_context(self, context: &str) -> Self {
        match self {
            SysError::Missing(m) => SysError::Missing(format!("{m}; {context}")),
            SysError::Failed { code, message } => SysError::Failed {
                code,
                message: format!("{message}; {context}"),
            },
        }
    }

    /// A failure without a code.
    pub fn failed(message: impl Into<String>) -> Self {
        SysError::Failed {
            code: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SysError::Missing(m) => f.write_str(m),
            SysError::Failed {
                code: Some(c),
                message,
            } => write!(f, "{message} (code {c:#x})"),
            SysError::Failed {
                code: None,
                message,
            } => f.write_str(message),
        }
    }
}

/// One message or C call per method; see the module docs. All methods are thread-safe.
pub trait AneSys: Send + Sync + fmt::Debug + 'static {
    /// A compiled-or-not `_ANEInMemoryModel` (retained).
    type Model: Send + Sync + fmt::Debug;
    /// An IOSurface (owned, +1).
    type Surface: Send + Sync + fmt::Debug;
    /// An `_ANERequest` (retained; it retains its surfaces).
    type Request: Send + Sync + fmt::Debug;

    /// Checks that every class and selector the driver sends exists
    /// (`respondsToSelector:` / `class_respondsToSelector`); `Missing` names the first that
    /// does not.
    fn probe(&self) -> Result<(), SysError>;

    /// One line describing the machine (OS build, framework path).
    fn describe(&self) -> String;

    /// The OS build (`kern.osversion`), part of every compile-cache key.
    fn os_build(&self) -> String;

    /// `NSTemporaryDirectory()`: the root under which each model's directory
    /// (`<root>/<hexStringIdentifier>`) is created.
    fn temp_root(&self) -> PathBuf;

    /// `[_ANEInMemoryModelDescriptor modelWithMILText:weights:optionsPlist:]` then
    /// `[_ANEInMemoryModel inMemoryModelWithDescriptor:]`. `mil` is the UTF-8 MIL text (passed
    /// as NSData); `weights` becomes the weights dictionary `{path: {"offset": 0, "data":
    /// bytes}}` — `None` passes nil, which the framework rejects (rule 13).
    fn new_model(
        &self,
        mil: &[u8],
        weights: Option<&[WeightFile]>,
    ) -> Result<Self::Model, SysError>;

    /// `[model hexStringIdentifier]`: the model's identity and temp-dir name.
    fn model_id(&self, model: &Self::Model) -> Result<String, SysError>;

    /// `[model compileWithQoS:qos options:@{} error:&e]`.
    fn compile(&self, model: &Self::Model, qos: u32) -> Result<(), SysError>;

    /// `[model loadWithQoS:qos options:@{} error:&e]`.
    fn load(&self, model: &Self::Model, qos: u32) -> Result<(), SysError>;

    /// `[model unloadWithQoS:qos error:&e]`.
    fn unload(&self, model: &Self::Model, qos: u32) -> Result<(), SysError>;

    /// `IOSurfaceCreate` of a flat `bytes`-byte buffer (§3.1 properties).
    fn new_surface(&self, bytes: usize) -> Result<Self::Surface, SysError>;

    /// `IOSurfaceGetAllocSize`.
    fn surface_len(&self, surface: &Self::Surface) -> usize;

    /// `IOSurfaceLock` (read-only when `!write`, `kIOSurfaceLockReadOnly` = 1) then
    /// `IOSurfaceGetBaseAddress`.
    fn lock(&self, surface: &Self::Surface, write: bool) -> Result<*mut u8, SysError>;

    /// `IOSurfaceUnlock` with the same options as the matching `lock`.
    fn unlock(&self, surface: &Self::Surface, write: bool);

    /// `IOSurfaceGetBaseAddress` without a lock, for the device itself while it evaluates.
    fn base_address(&self, surface: &Self::Surface) -> *mut u8;

    /// `[_ANERequest requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:nil
    /// perfStats:nil procedureIndex:@(procedure)]`, each surface wrapped with
    /// `[_ANEIOSurfaceObject objectWithIOSurface:]`. Slot `i` of `inputs` is symbol index
    /// `input_indices[i]`.
    fn new_request(
        &self,
        inputs: &[&Self::Surface],
        input_indices: &[usize],
        outputs: &[&Self::Surface],
        output_indices: &[usize],
        procedure: usize,
    ) -> Result<Self::Request, SysError>;

    /// `[model evaluateWithQoS:qos options:@{} request:req error:&e]` (synchronous).
    fn evaluate(
        &self,
        model: &Self::Model,
        request: &Self::Request,
        qos: u32,
    ) -> Result<(), SysError>;

    /// `[[_ANEClient sharedConnection] beginRealTimeTask]`; `Err` says why it is unavailable.
    fn realtime_begin(&self) -> Result<(), String>;

    /// `[[_ANEClient sharedConnection] endRealTimeTask]`.
    fn realtime_end(&self) -> Result<(), String>;
}
