//! `_ANEInMemoryModelDescriptor` and `_ANEInMemoryModel` (reference §1.2, §1.3): build a model
//! from MIL text and weights, then compile, load, evaluate and unload it. Every call runs in
//! its own autorelease pool; the model is returned retained (+1).

use std::ptr;

use super::foundation::Foundation;
use super::objc::{Class, Id, Objc, Retained, Sel};
use crate::ane::backend::{SysError, WeightFile};

/// The model classes and selectors, each checked to exist at load.
#[derive(Debug)]
pub struct ModelApi {
    descriptor: Class,
    model: Class,
    model_with_mil: Sel,
    in_memory_model: Sel,
    hex_id: Sel,
    compile: Sel,
    load: Sel,
    evaluate: Sel,
    unload: Sel,
}

// SAFETY: class and selector pointers are immutable runtime data.
unsafe impl Send for ModelApi {}
// SAFETY: as above.
unsafe impl Sync for ModelApi {}

const DESCRIPTOR: &str = "_ANEInMemoryModelDescriptor";
const MODEL: &str = "_ANEInMemoryModel";

impl ModelApi {
    /// Resolves the classes and checks every selector.
    pub fn load(objc: &Objc) -> Result<Self, SysError> {
        let descriptor = objc.class(DESCRIPTOR)?;
        let model = objc.class(MODEL)?;
        Ok(ModelApi {
            descriptor,
            model,
            model_with_mil: objc.require(
                descriptor,
                DESCRIPTOR,
                c"modelWithMILText:weights:optionsPlist:",
                true,
            )?,
            in_memory_model: objc.require(model, MODEL, c"inMemoryModelWithDescriptor:", true)?,
            hex_id: objc.require(model, MODEL, c"hexStringIdentifier", false)?,
            compile: objc.require(model, MODEL, c"compileWithQoS:options:error:", false)?,
            load: objc.require(model, MODEL, c"loadWithQoS:options:error:", false)?,
            evaluate: objc.require(
                model,
                MODEL,
                c"evaluateWithQoS:options:request:error:",
                false,
            )?,
            unload: objc.require(model, MODEL, c"unloadWithQoS:error:", false)?,
        })
    }

    /// Descriptor (`modelWithMILText:` NSData of the UTF-8 text, `weights:` the dictionary
    /// `{path: {"offset": @0, "data": NSData}}` or nil for `None`, `optionsPlist:` nil), then
    /// `inMemoryModelWithDescriptor:`. Returns the model retained.
    pub fn new_model(
        &self,
        objc: &'static Objc,
        ns: &Foundation,
        mil: &[u8],
        weights: Option<&[WeightFile]>,
    ) -> Result<Retained, SysError> {
        let _pool = objc.pool();
        let text = ns.data(objc, mil);
        let wdict = match weights {
            None => ptr::null_mut(),
            Some(files) => {
                let (offset_key, data_key) = (ns.string(objc, "offset"), ns.string(objc, "data"));
                let zero = ns.number(objc, 0);
                let keys: Vec<Id> = files.iter().map(|(p, _)| ns.string(objc, p)).collect();
                let values: Vec<Id> = files
                    .iter()
                    .map(|(_, b)| {
                        let data = ns.data(objc, b);
                        ns.dictionary(objc, &[offset_key, data_key], &[zero, data])
                    })
                    .collect();
                if keys.iter().chain(&values).any(|o| o.is_null()) {
                    return Err(SysError::failed("could not build the weights dictionary"));
                }
                ns.dictionary(objc, &keys, &values)
            }
        };
        // SAFETY: the descriptor class responds to this class method (checked at load) with
        // the signature id (Class, SEL, id, id, id); `text` is NSData, `wdict` an
        // NSDictionary or nil, options nil. The result is autoreleased.
        let desc = unsafe {
            objc.send_id_3(
                self.descriptor,
                self.model_with_mil,
                text,
                wdict,
                ptr::null_mut(),
            )
        };
        if desc.is_null() {
            return Err(SysError::failed(
                "modelWithMILText:weights:optionsPlist: returned nil",
            ));
        }
        // SAFETY: checked class method, signature id (Class, SEL, id); autoreleased result.
        let model =
            unsafe { objc.send_id_ptr(self.model, self.in_memory_model, desc.cast_const()) };
        objc.retain(model)
            .ok_or_else(|| SysError::failed("inMemoryModelWithDescriptor: returned nil"))
    }

    /// `hexStringIdentifier`.
    pub fn hex_id(
        &self,
        objc: &Objc,
        ns: &Foundation,
        model: &Retained,
    ) -> Result<String, SysError> {
        let _pool = objc.pool();
        // SAFETY: `model` is a live _ANEInMemoryModel; checked selector, id (id, SEL).
        let s = unsafe { objc.send_id(model.id(), self.hex_id) };
        ns.to_string(objc, s)
            .filter(|s| !s.is_empty() && !s.contains('/'))
            .ok_or_else(|| SysError::failed("hexStringIdentifier returned no usable name"))
    }

    /// `compileWithQoS:options:@{} error:` (`compile`) or `loadWithQoS:…` (`!compile`).
    pub fn compile_or_load(
        &self,
        objc: &Objc,
        ns: &Foundation,
        model: &Retained,
        qos: u32,
        compile: bool,
    ) -> Result<(), SysError> {
        let _pool = objc.pool();
        let (sel, what) = if compile {
            (self.compile, "compileWithQoS")
        } else {
            (self.load, "loadWithQoS")
        };
        let opts = ns.dictionary(objc, &[], &[]);
        let mut err: Id = ptr::null_mut();
        // SAFETY: live model; checked selector with signature BOOL (id, SEL, unsigned, id,
        // NSError **); `opts` is an empty NSDictionary; `err` is a valid slot read below
        // inside the same pool.
        let ok = unsafe { objc.send_qos_opts(model.id(), sel, qos, opts, &mut err) };
        if ok {
            Ok(())
        } else {
            Err(ns.error(objc, err, what))
        }
    }

    /// `evaluateWithQoS:options:@{} request:error:` (synchronous).
    pub fn evaluate(
        &self,
        objc: &Objc,
        ns: &Foundation,
        model: &Retained,
        request: &Retained,
        qos: u32,
    ) -> Result<(), SysError> {
        let _pool = objc.pool();
        let opts = ns.dictionary(objc, &[], &[]);
        let mut err: Id = ptr::null_mut();
        // SAFETY: live model and request; checked selector with signature BOOL (id, SEL,
        // unsigned, id, id, NSError **); `err` is a valid slot.
        let ok = unsafe {
            objc.send_qos_opts_req(model.id(), self.evaluate, qos, opts, request.id(), &mut err)
        };
        if ok {
            Ok(())
        } else {
            Err(ns.error(objc, err, "evaluateWithQoS"))
        }
    }

    /// `unloadWithQoS:error:`.
    pub fn unload(
        &self,
        objc: &Objc,
        ns: &Foundation,
        model: &Retained,
        qos: u32,
    ) -> Result<(), SysError> {
        let _pool = objc.pool();
        let mut err: Id = ptr::null_mut();
        // SAFETY: live model; checked selector with signature BOOL (id, SEL, unsigned,
        // NSError **); `err` is a valid slot.
        let ok = unsafe { objc.send_qos(model.id(), self.unload, qos, &mut err) };
        if ok {
            Ok(())
        } else {
            Err(ns.error(objc, err, "unloadWithQoS"))
        }
    }
}
