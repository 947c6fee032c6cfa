//! The real sys layer: Apple's libraries resolved at run time with dlopen/dlsym, one small
//! file per Objective-C class or C API (reference §1, §3). Nothing is linked at build time, so
//! this compiles and is linted everywhere; on a machine without the frameworks
//! [`AppleSys::load`] fails with `Missing` naming what is absent.
//!
//! NOTHING in this module has been run on Apple hardware yet: every signature follows
//! `reference/ane-upstream.md` §1.2 and §3, but it is unverified until
//! `ane-train selftest --device ane` passes on a Mac.

mod client;
mod dl;
mod foundation;
mod io_surface;
mod model;
mod objc;
mod request;

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::sync::OnceLock;

use self::client::ClientApi;
use self::foundation::Foundation;
use self::io_surface::{IoSurfaceApi, IoSurfaceRef};
use self::model::ModelApi;
use self::objc::{Objc, Retained};
use self::request::RequestApi;
use super::backend::{AneSys, SysError, WeightFile};

pub(crate) use self::dl::Library;
pub use self::io_surface::LOCK_READ_ONLY;

/// Where the private framework lives (reference §1.1).
pub const ANE_FRAMEWORK: &str =
    "/System/Library/PrivateFrameworks/AppleNeuralEngine.framework/AppleNeuralEngine";

/// Everything resolved, once per process (libraries are never unloaded).
#[derive(Debug)]
struct Apple {
    objc: Objc,
    ns: Foundation,
    io: IoSurfaceApi,
    model: ModelApi,
    request: RequestApi,
    client: ClientApi,
}

fn apple() -> Result<&'static Apple, SysError> {
    static APPLE: OnceLock<Result<Apple, SysError>> = OnceLock::new();
    APPLE
        .get_or_init(|| {
            // The framework first: its absence is the informative message on other machines.
            dl::Library::open(ANE_FRAMEWORK).map_err(|e| {
                let e = e.to_string();
                let reason = e.strip_prefix(ANE_FRAMEWORK).unwrap_or(&e);
                SysError::Missing(format!(
                    "AppleNeuralEngine.framework not found at {ANE_FRAMEWORK}: this is not \
                     macOS on Apple Silicon; use --device cpu or ane-sim (dlopen{reason})"
                ))
            })?;
            let objc = Objc::load()?;
            let ns = Foundation::load(&objc)?;
            let io = IoSurfaceApi::load()?;
            let model = ModelApi::load(&objc)?;
            let request = RequestApi::load(&objc)?;
            let client = ClientApi::load(&objc);
            Ok(Apple {
                objc,
                ns,
                io,
                model,
                request,
                client,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The Neural Engine through Apple's frameworks. Cheap to copy; all state is process-wide.
#[derive(Debug, Clone, Copy)]
pub struct AppleSys {
    apple: &'static Apple,
}

impl AppleSys {
    /// Resolves every library, class and selector the driver uses; `Missing` says what is
    /// absent (on Linux: the framework).
    pub fn load() -> Result<Self, SysError> {
        Ok(AppleSys { apple: apple()? })
    }
}

/// `sysctlbyname(name)` as a string, where libc has it (macOS; not glibc).
fn sysctl_string(name: &CStr) -> Option<String> {
    type Sysctl =
        unsafe extern "C" fn(*const c_char, *mut c_void, *mut usize, *mut c_void, usize) -> i32;
    let f = dl::global_symbol(c"sysctlbyname")?;
    // SAFETY: on systems that export it, sysctlbyname has exactly this C signature
    // (sys/sysctl.h); the pointer is a function address from dlsym.
    let f: Sysctl = unsafe { std::mem::transmute::<*mut c_void, Sysctl>(f.as_ptr()) };
    let mut buf = [0u8; 256];
    let mut len = buf.len();
    // SAFETY: `buf` is writable for `len` bytes and `len` is updated to the bytes written;
    // no new value is set (null, 0).
    let rc = unsafe {
        f(
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    if rc != 0 {
        return None;
    }
    let bytes = &buf[..len.min(buf.len())];
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    Some(String::from_utf8_lossy(text).into_owned())
}

impl AneSys for AppleSys {
    type Model = Retained;
    type Surface = IoSurfaceRef;
    type Request = Retained;

    fn probe(&self) -> Result<(), SysError> {
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "{} (macOS build {}), Neural Engine via {ANE_FRAMEWORK}",
            sysctl_string(c"machdep.cpu.brand_string").unwrap_or_else(|| "unknown CPU".into()),
            self.os_build()
        )
    }

    fn os_build(&self) -> String {
        sysctl_string(c"kern.osversion").unwrap_or_else(|| "unknown".into())
    }

    fn temp_root(&self) -> PathBuf {
        self.apple.ns.temporary_directory(&self.apple.objc)
    }

    fn new_model(&self, mil: &[u8], weights: Option<&[WeightFile]>) -> Result<Retained, SysError> {
        let a = self.apple;
        a.model.new_model(&a.objc, &a.ns, mil, weights)
    }

    fn model_id(&self, model: &Retained) -> Result<String, SysError> {
        let a = self.apple;
        a.model.hex_id(&a.objc, &a.ns, model)
    }

    fn compile(&self, model: &Retained, qos: u32) -> Result<(), SysError> {
        let a = self.apple;
        a.model.compile_or_load(&a.objc, &a.ns, model, qos, true)
    }

    fn load(&self, model: &Retained, qos: u32) -> Result<(), SysError> {
        let a = self.apple;
        a.model.compile_or_load(&a.objc, &a.ns, model, qos, false)
    }

    fn unload(&self, model: &Retained, qos: u32) -> Result<(), SysError> {
        let a = self.apple;
        a.model.unload(&a.objc, &a.ns, model, qos)
    }

    fn new_surface(&self, bytes: usize) -> Result<IoSurfaceRef, SysError> {
        let a = self.apple;
        a.io.create(&a.objc, &a.ns, bytes)
    }

    fn surface_len(&self, surface: &IoSurfaceRef) -> usize {
        self.apple.io.alloc_size(surface)
    }

    fn lock(&self, surface: &IoSurfaceRef, write: bool) -> Result<*mut u8, SysError> {
        self.apple.io.lock(surface, write)
    }

    fn unlock(&self, surface: &IoSurfaceRef, write: bool) {
        self.apple.io.unlock(surface, write)
    }

    fn base_address(&self, surface: &IoSurfaceRef) -> *mut u8 {
        self.apple.io.base(surface)
    }

    fn new_request(
        &self,
        inputs: &[&IoSurfaceRef],
        input_indices: &[usize],
        outputs: &[&IoSurfaceRef],
        output_indices: &[usize],
        procedure: usize,
    ) -> Result<Retained, SysError> {
        let a = self.apple;
        a.request.new_request(
            &a.objc,
            &a.ns,
            (inputs, input_indices),
            (outputs, output_indices),
            procedure,
        )
    }

    fn evaluate(&self, model: &Retained, request: &Retained, qos: u32) -> Result<(), SysError> {
        let a = self.apple;
        a.model.evaluate(&a.objc, &a.ns, model, request, qos)
    }

    fn realtime_begin(&self) -> Result<(), String> {
        self.apple.client.realtime(&self.apple.objc, true)
    }

    fn realtime_end(&self) -> Result<(), String> {
        self.apple.client.realtime(&self.apple.objc, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_names_the_framework_where_it_is_missing() {
        // On macOS 11+ the framework lives in the dyld shared cache, not on disk, so only
        // dlopen can tell; where it opens there is nothing to check here.
        let Err(e) = AppleSys::load() else { return };
        let e = e.to_string();
        assert!(e.contains("AppleNeuralEngine.framework not found"), "{e}");
        assert!(e.contains("not macOS on Apple Silicon"), "{e}");
    }
}
