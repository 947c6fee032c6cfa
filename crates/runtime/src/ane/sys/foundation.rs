//! Foundation: the NSData / NSString / NSNumber / NSArray / NSDictionary values the private
//! API takes, NSError reading, and `NSTemporaryDirectory()`. Every constructor here returns an
//! autoreleased (+0) object: call it inside an [`super::objc::AutoreleasePool`] and retain
//! whatever must outlive the pool.

use std::ffi::{c_char, c_void, CStr};
use std::path::PathBuf;
use std::ptr;

use super::dl::Library;
use super::objc::{Class, Id, Objc, Sel};
use crate::ane::backend::SysError;

/// Path of Foundation.
pub const FOUNDATION: &str = "/System/Library/Frameworks/Foundation.framework/Foundation";

/// Foundation classes, selectors and functions, resolved once.
#[derive(Debug)]
pub struct Foundation {
    ns_data: Class,
    ns_string: Class,
    ns_number: Class,
    ns_array: Class,
    ns_dictionary: Class,
    data_with_bytes: Sel,
    string_with_utf8: Sel,
    number_with_long_long: Sel,
    array_with_objects: Sel,
    dictionary_with_objects: Sel,
    utf8_string: Sel,
    description: Sel,
    code: Sel,
    temporary_directory: unsafe extern "C" fn() -> Id,
}

// SAFETY: class, selector and function addresses are immutable for the process.
unsafe impl Send for Foundation {}
// SAFETY: as above.
unsafe impl Sync for Foundation {}

impl Foundation {
    /// Opens Foundation and resolves what is used.
    pub fn load(objc: &Objc) -> Result<Self, SysError> {
        let lib = Library::open(FOUNDATION)?;
        Ok(Foundation {
            ns_data: objc.class("NSData")?,
            ns_string: objc.class("NSString")?,
            ns_number: objc.class("NSNumber")?,
            ns_array: objc.class("NSArray")?,
            ns_dictionary: objc.class("NSDictionary")?,
            data_with_bytes: objc.sel(c"dataWithBytes:length:"),
            string_with_utf8: objc.sel(c"stringWithUTF8String:"),
            number_with_long_long: objc.sel(c"numberWithLongLong:"),
            array_with_objects: objc.sel(c"arrayWithObjects:count:"),
            dictionary_with_objects: objc.sel(c"dictionaryWithObjects:forKeys:count:"),
            utf8_string: objc.sel(c"UTF8String"),
            description: objc.sel(c"description"),
            code: objc.sel(c"code"),
            // SAFETY: `NSString *NSTemporaryDirectory(void)` (NSPathUtilities.h).
            temporary_directory: unsafe { lib.function(c"NSTemporaryDirectory")? },
        })
    }

    /// `[NSData dataWithBytes:len:]` — copies `bytes`. Autoreleased.
    pub fn data(&self, objc: &Objc, bytes: &[u8]) -> Id {
        // SAFETY: NSData responds to +dataWithBytes:length: with this signature; the slice is
        // readable for its length and copied before the call returns.
        unsafe {
            objc.send_id_bytes(
                self.ns_data,
                self.data_with_bytes,
                bytes.as_ptr().cast(),
                bytes.len(),
            )
        }
    }

    /// `[NSString stringWithUTF8String:]`. Autoreleased; nil for text with a NUL byte.
    pub fn string(&self, objc: &Objc, s: &str) -> Id {
        let Ok(c) = std::ffi::CString::new(s) else {
            return ptr::null_mut();
        };
        // SAFETY: NSString responds to +stringWithUTF8String:; `c` is NUL-terminated UTF-8
        // and copied before the call returns.
        unsafe { objc.send_id_ptr(self.ns_string, self.string_with_utf8, c.as_ptr().cast()) }
    }

    /// `[NSNumber numberWithLongLong:]`. Autoreleased.
    pub fn number(&self, objc: &Objc, v: i64) -> Id {
        // SAFETY: NSNumber responds to +numberWithLongLong: with this signature.
        unsafe { objc.send_id_i64(self.ns_number, self.number_with_long_long, v) }
    }

    /// `[NSArray arrayWithObjects:count:]` (retains its elements). Autoreleased.
    pub fn array(&self, objc: &Objc, objs: &[Id]) -> Id {
        // SAFETY: NSArray responds to +arrayWithObjects:count:; `objs` holds live objects
        // (callers never pass nil elements).
        unsafe {
            objc.send_id_objs(
                self.ns_array,
                self.array_with_objects,
                objs.as_ptr(),
                objs.len(),
            )
        }
    }

    /// `[NSDictionary dictionaryWithObjects:forKeys:count:]`; `keys.len() == values.len()`.
    /// Autoreleased. An empty one is the `@{}` the private API wants instead of nil.
    pub fn dictionary(&self, objc: &Objc, keys: &[Id], values: &[Id]) -> Id {
        let n = keys.len().min(values.len());
        // SAFETY: NSDictionary responds to the selector with this signature; both arrays
        // hold at least `n` live objects.
        unsafe {
            objc.send_id_objs_keys(
                self.ns_dictionary,
                self.dictionary_with_objects,
                values.as_ptr(),
                keys.as_ptr(),
                n,
            )
        }
    }

    /// A copy of an NSString's UTF-8 text; `None` for nil.
    pub fn to_string(&self, objc: &Objc, s: Id) -> Option<String> {
        if s.is_null() {
            return None;
        }
        // SAFETY: `s` is a live NSString (callers pass only NSString results); the returned
        // buffer lives until the enclosing pool drains and is copied at once.
        let p: *const c_char = unsafe { objc.send_cstr(s, self.utf8_string) };
        if p.is_null() {
            return None;
        }
        // SAFETY: UTF8String returns a NUL-terminated buffer (above).
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }

    /// An NSError as a [`SysError::Failed`] (`code` + `description`); for nil, `what` failed
    /// without saying why.
    pub fn error(&self, objc: &Objc, err: Id, what: &str) -> SysError {
        if err.is_null() {
            return SysError::failed(format!("{what} returned NO without an NSError"));
        }
        // SAFETY: `err` is the NSError the framework stored in our out-parameter; NSError
        // responds to -description and -code with these signatures.
        let (desc, code) = unsafe {
            (
                objc.send_id(err, self.description),
                objc.send_isize(err, self.code),
            )
        };
        SysError::Failed {
            code: Some(code as i64),
            message: format!(
                "{what}: {}",
                self.to_string(objc, desc)
                    .unwrap_or_else(|| "(no description)".into())
            ),
        }
    }

    /// `NSTemporaryDirectory()`.
    pub fn temporary_directory(&self, objc: &Objc) -> PathBuf {
        let _pool = objc.pool();
        // SAFETY: takes no arguments; returns an autoreleased NSString, read inside the pool.
        let s = unsafe { (self.temporary_directory)() };
        self.to_string(objc, s)
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
    }

    /// The `void *` form of an object, for C functions taking toll-free bridged CF types.
    pub fn as_cf(obj: Id) -> *const c_void {
        obj.cast_const()
    }
}
