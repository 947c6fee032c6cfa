//! libobjc: classes, selectors, `objc_msgSend` through one correctly typed function pointer
//! per method signature, retain/release and autorelease pools.
//!
//! Ownership conventions (Cocoa's): a method whose name starts with `alloc`, `new`, `copy` or
//! `mutableCopy` returns +1; every other method (all class factories used here:
//! `dataWithBytes:length:`, `modelWithMILText:…`, `requestWithInputs:…`) returns an
//! autoreleased (+0) object that lives until the enclosing [`AutoreleasePool`] drains.
//! Whatever the driver keeps beyond one call is `objc_retain`ed into a [`Retained`], which
//! `objc_release`s it on drop.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::NonNull;

use super::dl::Library;
use crate::ane::backend::SysError;

/// An Objective-C object pointer (`id`); may be nil.
pub type Id = *mut c_void;
/// A class object (`Class`).
pub type Class = *mut c_void;
/// A registered selector (`SEL`).
pub type Sel = *const c_void;
/// `BOOL`: `signed char` on x86_64, `bool` on arm64 — both one byte, read as `!= 0`.
pub type ObjcBool = i8;

/// Path of the Objective-C runtime.
pub const LIBOBJC: &str = "/usr/lib/libobjc.A.dylib";

/// The libobjc functions used, resolved once.
#[derive(Debug)]
pub struct Objc {
    msg_send: *mut c_void,
    get_class: unsafe extern "C" fn(*const c_char) -> Class,
    sel_register: unsafe extern "C" fn(*const c_char) -> Sel,
    object_get_class: unsafe extern "C" fn(Id) -> Class,
    class_responds: unsafe extern "C" fn(Class, Sel) -> ObjcBool,
    retain: unsafe extern "C" fn(Id) -> Id,
    release: unsafe extern "C" fn(Id),
    pool_push: unsafe extern "C" fn() -> *mut c_void,
    pool_pop: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: every field is the address of a libobjc function, immutable for the process.
unsafe impl Send for Objc {}
// SAFETY: as above; the runtime functions themselves are thread-safe.
unsafe impl Sync for Objc {}

impl Objc {
    /// Resolves the runtime from [`LIBOBJC`].
    pub fn load() -> Result<Self, SysError> {
        let lib = Library::open(LIBOBJC)?;
        // SAFETY: each type below is the documented C signature of the named libobjc
        // function (objc/runtime.h, objc/message.h; objc_retain/release and the pool
        // functions are the exported ARC entry points).
        unsafe {
            Ok(Objc {
                msg_send: lib.symbol(c"objc_msgSend")?.as_ptr(),
                get_class: lib.function(c"objc_getClass")?,
                sel_register: lib.function(c"sel_registerName")?,
                object_get_class: lib.function(c"object_getClass")?,
                class_responds: lib.function(c"class_respondsToSelector")?,
                retain: lib.function(c"objc_retain")?,
                release: lib.function(c"objc_release")?,
                pool_push: lib.function(c"objc_autoreleasePoolPush")?,
                pool_pop: lib.function(c"objc_autoreleasePoolPop")?,
            })
        }
    }

    /// `objc_getClass(name)`; `Missing` when no such class is registered.
    pub fn class(&self, name: &str) -> Result<Class, SysError> {
        let c = cstring(name)?;
        // SAFETY: `c` is NUL-terminated; objc_getClass returns nil for unknown names.
        let cls = unsafe { (self.get_class)(c.as_ptr()) };
        if cls.is_null() {
            return Err(SysError::Missing(format!(
                "class {name} is not registered (AppleNeuralEngine.framework changed?)"
            )));
        }
        Ok(cls)
    }

    /// `sel_registerName(name)`.
    pub fn sel(&self, name: &CStr) -> Sel {
        // SAFETY: `name` is NUL-terminated; registering is idempotent and never fails.
        unsafe { (self.sel_register)(name.as_ptr()) }
    }

    /// Whether instances of `cls` respond to `sel` (`class_respondsToSelector`).
    pub fn instances_respond(&self, cls: Class, sel: Sel) -> bool {
        // SAFETY: `cls` is a registered class, `sel` a registered selector.
        unsafe { (self.class_responds)(cls, sel) != 0 }
    }

    /// Whether the class object `cls` responds to `sel` (a class method): asks its metaclass.
    pub fn class_responds(&self, cls: Class, sel: Sel) -> bool {
        // SAFETY: `cls` is a registered class object; object_getClass of it is its metaclass.
        let meta = unsafe { (self.object_get_class)(cls) };
        !meta.is_null() && self.instances_respond(meta, sel)
    }

    /// `Missing` unless instances of `cls` (or, with `class_method`, `cls` itself) respond to
    /// `sel`. Sending a selector an object lacks raises an Objective-C exception, which
    /// aborts a Rust process — so every private selector is checked before first use.
    pub fn require(
        &self,
        cls: Class,
        class_name: &str,
        sel: &CStr,
        class_method: bool,
    ) -> Result<Sel, SysError> {
        let s = self.sel(sel);
        let ok = if class_method {
            self.class_responds(cls, s)
        } else {
            self.instances_respond(cls, s)
        };
        if !ok {
            let sign = if class_method { '+' } else { '-' };
            return Err(SysError::Missing(format!(
                "{class_name} has no {sign}{} on this macOS",
                sel.to_string_lossy()
            )));
        }
        Ok(s)
    }

    /// Opens an autorelease pool; objects autoreleased on this thread while it is alive are
    /// released when it drops.
    pub fn pool(&self) -> AutoreleasePool<'_> {
        // SAFETY: no preconditions; the token is popped exactly once, in Drop.
        let token = unsafe { (self.pool_push)() };
        AutoreleasePool { objc: self, token }
    }

    /// Takes +1 ownership of `obj` (`objc_retain`); `None` for nil.
    pub fn retain(&'static self, obj: Id) -> Option<Retained> {
        let ptr = NonNull::new(obj)?;
        // SAFETY: `obj` is a live object (nil was excluded); retain has no other precondition.
        unsafe { (self.retain)(ptr.as_ptr()) };
        Some(Retained { ptr, objc: self })
    }

    /// Casts `objc_msgSend` to the method signature `F`.
    ///
    /// # Safety
    /// `F` must be `unsafe extern "C" fn(Id or Class, Sel, args...) -> R` with exactly the C
    /// signature of the method it will be used to send (reference §1.2 for the private
    /// ones). No method used here returns a struct, so plain `objc_msgSend` is right on both
    /// arm64 and x86_64.
    unsafe fn msg<F: Copy>(&self) -> F {
        const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
        // SAFETY: pointer-sized function-pointer type (checked above) matching the target
        // method (caller's contract).
        unsafe { std::mem::transmute_copy::<*mut c_void, F>(&self.msg_send) }
    }
}

fn cstring(s: &str) -> Result<CString, SysError> {
    CString::new(s).map_err(|_| SysError::failed(format!("{s:?} contains a NUL byte")))
}

/// One typed sender per method signature. Each is `unsafe`: the receiver must be a live
/// object (or class) that responds to `sel` (checked with [`Objc::require`] at load), with
/// exactly the stated C signature; every object argument must be a live object or nil.
impl Objc {
    /// `id (id, SEL)`: `hexStringIdentifier`, `description`, `domain`, `+sharedConnection`.
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_id(&self, recv: Id, sel: Sel) -> Id {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel) -> Id>()(recv, sel) }
    }

    /// `const char * (id, SEL)`: `UTF8String` (the buffer lives as long as the string's
    /// enclosing autorelease pool).
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_cstr(&self, recv: Id, sel: Sel) -> *const c_char {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel) -> *const c_char>()(recv, sel) }
    }

    /// `NSInteger (id, SEL)`: `-[NSError code]`.
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_isize(&self, recv: Id, sel: Sel) -> isize {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel) -> isize>()(recv, sel) }
    }

    /// `void (id, SEL)`: `beginRealTimeTask`, `endRealTimeTask`.
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_void(&self, recv: Id, sel: Sel) {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel)>()(recv, sel) }
    }

    /// `id (id, SEL, void *)`: `inMemoryModelWithDescriptor:`, `objectWithIOSurface:`
    /// (an `IOSurfaceRef`), `stringWithUTF8String:` (a `const char *`).
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_id_ptr(&self, recv: Id, sel: Sel, a: *const c_void) -> Id {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel, *const c_void) -> Id>()(recv, sel, a) }
    }

    /// `id (id, SEL, const void *, NSUInteger)`: `+[NSData dataWithBytes:length:]` (copies).
    ///
    /// # Safety
    /// See the impl block; `bytes` addresses `len` readable bytes.
    pub unsafe fn send_id_bytes(&self, recv: Id, sel: Sel, bytes: *const c_void, len: usize) -> Id {
        // SAFETY: the caller guarantees this is the method's signature and the buffer.
        unsafe {
            self.msg::<unsafe extern "C" fn(Id, Sel, *const c_void, usize) -> Id>()(
                recv, sel, bytes, len,
            )
        }
    }

    /// `id (id, SEL, long long)`: `+[NSNumber numberWithLongLong:]`.
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_id_i64(&self, recv: Id, sel: Sel, v: i64) -> Id {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel, i64) -> Id>()(recv, sel, v) }
    }

    /// `id (id, SEL, const id *, NSUInteger)`: `+[NSArray arrayWithObjects:count:]`.
    ///
    /// # Safety
    /// See the impl block; `objs` addresses `n` live objects.
    pub unsafe fn send_id_objs(&self, recv: Id, sel: Sel, objs: *const Id, n: usize) -> Id {
        // SAFETY: the caller guarantees this is the method's signature and the array.
        unsafe {
            self.msg::<unsafe extern "C" fn(Id, Sel, *const Id, usize) -> Id>()(recv, sel, objs, n)
        }
    }

    /// `id (id, SEL, const id *, const id *, NSUInteger)`:
    /// `+[NSDictionary dictionaryWithObjects:forKeys:count:]`.
    ///
    /// # Safety
    /// See the impl block; `objs` and `keys` each address `n` live objects.
    pub unsafe fn send_id_objs_keys(
        &self,
        recv: Id,
        sel: Sel,
        objs: *const Id,
        keys: *const Id,
        n: usize,
    ) -> Id {
        // SAFETY: the caller guarantees this is the method's signature and the arrays.
        unsafe {
            self.msg::<unsafe extern "C" fn(Id, Sel, *const Id, *const Id, usize) -> Id>()(
                recv, sel, objs, keys, n,
            )
        }
    }

    /// `id (Class, SEL, id, id, id)`: `modelWithMILText:weights:optionsPlist:`.
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_id_3(&self, recv: Id, sel: Sel, a: Id, b: Id, c: Id) -> Id {
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<unsafe extern "C" fn(Id, Sel, Id, Id, Id) -> Id>()(recv, sel, a, b, c) }
    }

    /// `id (Class, SEL, id × 7)`:
    /// `requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:`.
    ///
    /// # Safety
    /// See the impl block.
    pub unsafe fn send_id_7(&self, recv: Id, sel: Sel, a: [Id; 7]) -> Id {
        type F = unsafe extern "C" fn(Id, Sel, Id, Id, Id, Id, Id, Id, Id) -> Id;
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<F>()(recv, sel, a[0], a[1], a[2], a[3], a[4], a[5], a[6]) }
    }

    /// `BOOL (id, SEL, unsigned int qos, id options, NSError **)`:
    /// `compileWithQoS:options:error:`, `loadWithQoS:options:error:`.
    ///
    /// # Safety
    /// See the impl block; `err` is a valid `id` slot.
    pub unsafe fn send_qos_opts(
        &self,
        recv: Id,
        sel: Sel,
        qos: u32,
        opts: Id,
        err: *mut Id,
    ) -> bool {
        type F = unsafe extern "C" fn(Id, Sel, u32, Id, *mut Id) -> ObjcBool;
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<F>()(recv, sel, qos, opts, err) != 0 }
    }

    /// `BOOL (id, SEL, unsigned int qos, id options, id request, NSError **)`:
    /// `evaluateWithQoS:options:request:error:`.
    ///
    /// # Safety
    /// See the impl block; `err` is a valid `id` slot.
    pub unsafe fn send_qos_opts_req(
        &self,
        recv: Id,
        sel: Sel,
        qos: u32,
        opts: Id,
        req: Id,
        err: *mut Id,
    ) -> bool {
        type F = unsafe extern "C" fn(Id, Sel, u32, Id, Id, *mut Id) -> ObjcBool;
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<F>()(recv, sel, qos, opts, req, err) != 0 }
    }

    /// `BOOL (id, SEL, unsigned int qos, NSError **)`: `unloadWithQoS:error:`.
    ///
    /// # Safety
    /// See the impl block; `err` is a valid `id` slot.
    pub unsafe fn send_qos(&self, recv: Id, sel: Sel, qos: u32, err: *mut Id) -> bool {
        type F = unsafe extern "C" fn(Id, Sel, u32, *mut Id) -> ObjcBool;
        // SAFETY: the caller guarantees this is the method's signature.
        unsafe { self.msg::<F>()(recv, sel, qos, err) != 0 }
    }
}

/// An autorelease pool scope (`objc_autoreleasePoolPush`/`Pop`).
#[derive(Debug)]
pub struct AutoreleasePool<'a> {
    objc: &'a Objc,
    token: *mut c_void,
}

impl Drop for AutoreleasePool<'_> {
    fn drop(&mut self) {
        // SAFETY: `token` came from the matching push on this thread (the pool is !Send
        // because of the raw pointer) and is popped once.
        unsafe { (self.objc.pool_pop)(self.token) }
    }
}

/// A +1 reference to an Objective-C object, released on drop.
#[derive(Debug)]
pub struct Retained {
    ptr: NonNull<c_void>,
    objc: &'static Objc,
}

// SAFETY: retain/release are atomic; the ANE objects held this way (models, requests) are
// used from one thread at a time by the driver (a Binding is Send, not Sync), and upstream
// uses them from GCD queues other than the creating thread. UNVERIFIED on hardware.
unsafe impl Send for Retained {}
// SAFETY: as above.
unsafe impl Sync for Retained {}

impl Retained {
    /// The object pointer (valid while `self` lives).
    pub fn id(&self) -> Id {
        self.ptr.as_ptr()
    }
}

impl Drop for Retained {
    fn drop(&mut self) {
        let _pool = self.objc.pool();
        // SAFETY: balances the retain taken in `Objc::retain`.
        unsafe { (self.objc.release)(self.ptr.as_ptr()) }
    }
}
