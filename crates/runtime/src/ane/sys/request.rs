//! `_ANEIOSurfaceObject` and `_ANERequest` (reference §1.2): a request names the input and
//! output surfaces of one evaluation with their symbol indices. Built once per Binding.

use std::ptr;

use super::foundation::Foundation;
use super::io_surface::IoSurfaceRef;
use super::objc::{Class, Id, Objc, Retained, Sel};
use crate::ane::backend::SysError;

/// The request classes and selectors, each checked to exist at load.
#[derive(Debug)]
pub struct RequestApi {
    surface_object: Class,
    request: Class,
    object_with_surface: Sel,
    request_with: Sel,
}

// SAFETY: class and selector pointers are immutable runtime data.
unsafe impl Send for RequestApi {}
// SAFETY: as above.
unsafe impl Sync for RequestApi {}

const SURFACE_OBJECT: &str = "_ANEIOSurfaceObject";
const REQUEST: &str = "_ANERequest";

impl RequestApi {
    /// Resolves the classes and checks every selector.
    pub fn load(objc: &Objc) -> Result<Self, SysError> {
        let surface_object = objc.class(SURFACE_OBJECT)?;
        let request = objc.class(REQUEST)?;
        Ok(RequestApi {
            surface_object,
            request,
            object_with_surface: objc.require(
                surface_object,
                SURFACE_OBJECT,
                c"objectWithIOSurface:",
                true,
            )?,
            request_with: objc.require(
                request,
                REQUEST,
                c"requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex:",
                true,
            )?,
        })
    }

    /// Wraps every surface with `objectWithIOSurface:` and builds the request with
    /// `weightsBuffer:nil perfStats:nil procedureIndex:@(procedure)` (an NSNumber, not an
    /// integer). Each side is (surfaces, symbol indices). Returns it retained; it retains its surface objects, which retain their
    /// IOSurfaces.
    pub fn new_request(
        &self,
        objc: &'static Objc,
        ns: &Foundation,
        (inputs, input_indices): (&[&IoSurfaceRef], &[usize]),
        (outputs, output_indices): (&[&IoSurfaceRef], &[usize]),
        procedure: usize,
    ) -> Result<Retained, SysError> {
        let _pool = objc.pool();
        let wrap = |set: &[&IoSurfaceRef]| -> Result<Id, SysError> {
            let objs: Vec<Id> = set
                .iter()
                // SAFETY: checked class method id (Class, SEL, IOSurfaceRef); the surface is
                // live; the result is autoreleased and retained by the array below.
                .map(|s| unsafe {
                    objc.send_id_ptr(self.surface_object, self.object_with_surface, s.as_ptr())
                })
                .collect();
            if objs.iter().any(|o| o.is_null()) {
                return Err(SysError::failed("objectWithIOSurface: returned nil"));
            }
            Ok(ns.array(objc, &objs))
        };
        let numbers = |idx: &[usize]| -> Id {
            let n: Vec<Id> = idx.iter().map(|&i| ns.number(objc, i as i64)).collect();
            ns.array(objc, &n)
        };
        let args = [
            wrap(inputs)?,
            numbers(input_indices),
            wrap(outputs)?,
            numbers(output_indices),
            ptr::null_mut(),
            ptr::null_mut(),
            ns.number(objc, procedure as i64),
        ];
        // SAFETY: checked class method with signature id (Class, SEL, id × 7); the arrays and
        // number are live (autoreleased in this pool), weightsBuffer and perfStats nil.
        let req = unsafe { objc.send_id_7(self.request, self.request_with, args) };
        objc.retain(req).ok_or_else(|| {
            SysError::failed("requestWithInputs:… returned nil (the request failed validation)")
        })
    }
}
