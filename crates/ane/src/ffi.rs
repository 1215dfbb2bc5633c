//! The real backend: Apple's libraries opened at run time with `dlopen`/`dlsym`, so the crate
//! builds and links everywhere and only fails (with [`crate::Error::Unavailable`]) when opened.
//!
//! NEVER RUN ON AN ANE: this file was written from the sources listed in docs/ane-runtime.md and checked
//! only by compiling it and by the pure tests of the signature table it dispatches on.

use std::ffi::{CString, c_char, c_void};

use libloading::Library;

use crate::backend::{Arg, Backend, Id, Ret, SurfaceRef};
use crate::protocol::{ClassName, Receiver, Selector, Shape};
use crate::surface::{SurfaceKey, surface_properties};

/// The Objective-C runtime.
pub const LIBOBJC: &str = "/usr/lib/libobjc.A.dylib";
/// CoreFoundation (CFNumber, CFDictionary, CFRelease).
pub const CORE_FOUNDATION: &str = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation";
/// Foundation (NSData, NSString, …, `NSTemporaryDirectory`).
pub const FOUNDATION: &str = "/System/Library/Frameworks/Foundation.framework/Foundation";
/// IOSurface.
pub const IOSURFACE: &str = "/System/Library/Frameworks/IOSurface.framework/IOSurface";
/// The private Neural Engine framework (only loaded, never dlsym'd: its classes register
/// themselves with the Objective-C runtime on load).
pub const APPLE_NEURAL_ENGINE: &str =
    "/System/Library/PrivateFrameworks/AppleNeuralEngine.framework/AppleNeuralEngine";

/// Objective-C `BOOL` as a C return type. On arm64 Apple platforms `BOOL` is C `bool`
/// (`OBJC_BOOL_IS_BOOL`), so the callee returns 0 or 1 and Rust `bool` is exact. Elsewhere (x86_64)
/// it is `signed char`, which may hold any value, so it is read as `i8` and compared with 0.
#[cfg(target_arch = "aarch64")]
type ObjcBool = bool;
#[cfg(not(target_arch = "aarch64"))]
type ObjcBool = i8;

#[cfg(target_arch = "aarch64")]
fn objc_bool(b: ObjcBool) -> bool {
    b
}
#[cfg(not(target_arch = "aarch64"))]
fn objc_bool(b: ObjcBool) -> bool {
    b != 0
}

/// `kCFNumberSInt64Type`.
const CF_NUMBER_SINT64_TYPE: isize = 4;

type Ptr = *mut c_void;
type CPtr = *const c_void;

/// Function pointers and constants resolved from Apple's libraries.
pub struct FfiBackend {
    msg_send: CPtr,
    get_class: unsafe extern "C" fn(*const c_char) -> Ptr,
    class_get_class_method: unsafe extern "C" fn(Ptr, CPtr) -> Ptr,
    class_get_instance_method: unsafe extern "C" fn(Ptr, CPtr) -> Ptr,
    class_responds_to_selector: unsafe extern "C" fn(Ptr, CPtr) -> ObjcBool,
    pool_push: unsafe extern "C" fn() -> Ptr,
    pool_pop: unsafe extern "C" fn(Ptr),
    cf_number_create: unsafe extern "C" fn(CPtr, isize, CPtr) -> CPtr,
    cf_dictionary_create: unsafe extern "C" fn(CPtr, *const CPtr, *const CPtr, isize, CPtr, CPtr) -> CPtr,
    cf_release: unsafe extern "C" fn(CPtr),
    key_callbacks: CPtr,
    value_callbacks: CPtr,
    ns_temporary_directory: unsafe extern "C" fn() -> Ptr,
    surface_create: unsafe extern "C" fn(CPtr) -> Ptr,
    surface_lock: unsafe extern "C" fn(Ptr, u32, *mut u32) -> i32,
    surface_unlock: unsafe extern "C" fn(Ptr, u32, *mut u32) -> i32,
    surface_base: unsafe extern "C" fn(Ptr) -> Ptr,
    surface_alloc_size: unsafe extern "C" fn(Ptr) -> usize,
    /// `CFStringRef` values of the `kIOSurface*` keys, indexed by [`SurfaceKey::index`].
    surface_keys: [CPtr; SurfaceKey::ALL.len()],
    /// Registered selectors, indexed by [`Selector::index`].
    sels: [CPtr; Selector::ALL.len()],
    /// Kept open for the life of the backend; Apple's images are never unloaded anyway.
    _libs: Vec<Library>,
}

// SAFETY: the fields are addresses of functions and immutable constants inside system images that
// stay loaded while `_libs` lives; the functions called through them (objc runtime, CF, IOSurface)
// are documented thread-safe, and the struct has no interior mutability.
unsafe impl Send for FfiBackend {}
// SAFETY: as for `Send`; `&FfiBackend` only reads immutable fields.
unsafe impl Sync for FfiBackend {}

fn open(path: &str) -> Result<Library, String> {
    #[cfg(unix)]
    {
        use libloading::os::unix::{Library as UnixLibrary, RTLD_GLOBAL, RTLD_NOW};
        // SAFETY: loading a system library runs its initialisers; Apple's libraries are designed
        // to be loaded into any process. On other systems the path does not exist and dlopen fails.
        let lib = unsafe { UnixLibrary::open(Some(path), RTLD_NOW | RTLD_GLOBAL) };
        lib.map(Library::from)
            .map_err(|e| format!("cannot load {path}: {e}"))
    }
    #[cfg(not(unix))]
    {
        Err(format!("cannot load {path}: not a Unix system"))
    }
}

/// Reads symbol `name` from `lib` as a `T` (a function pointer type, or `*const c_void` for the
/// address of a data symbol).
///
/// # Safety
///
/// `T` must be the symbol's true type (the exact C signature for functions).
unsafe fn sym<T: Copy>(lib: &Library, path: &str, name: &str) -> Result<T, String> {
    let cname = format!("{name}\0");
    // SAFETY: the caller guarantees `T` matches the symbol.
    let s = unsafe { lib.get::<T>(cname.as_bytes()) };
    s.map(|s| *s)
        .map_err(|e| format!("symbol {name} missing in {path}: {e}"))
}

impl FfiBackend {
    /// Opens every library and resolves every symbol, in the order libobjc, CoreFoundation,
    /// Foundation, IOSurface, AppleNeuralEngine. The error names the first thing missing.
    pub fn load() -> Result<FfiBackend, String> {
        let objc = open(LIBOBJC)?;
        let cf = open(CORE_FOUNDATION)?;
        let foundation = open(FOUNDATION)?;
        let iosurface = open(IOSURFACE)?;
        let ane = open(APPLE_NEURAL_ENGINE)?;
        // SAFETY: for every `sym` call below, the type is the C prototype from Apple's public headers
        // (objc/runtime.h, objc/message.h, CoreFoundation, Foundation, IOSurface/IOSurfaceRef.h);
        // data symbols are read as their address.
        unsafe {
            let msg_send: CPtr = sym(&objc, LIBOBJC, "objc_msgSend")?;
            let sel_register_name: unsafe extern "C" fn(*const c_char) -> CPtr =
                sym(&objc, LIBOBJC, "sel_registerName")?;
            let mut sels = [std::ptr::null(); Selector::ALL.len()];
            for s in Selector::ALL {
                let name = CString::new(s.name()).map_err(|e| e.to_string())?;
                sels[s.index()] = sel_register_name(name.as_ptr());
            }
            let mut surface_keys = [std::ptr::null(); SurfaceKey::ALL.len()];
            for k in SurfaceKey::ALL {
                // A `const CFStringRef` variable: read its value through the symbol's address.
                let addr: *const CPtr = sym(&iosurface, IOSURFACE, k.symbol())?;
                surface_keys[k.index()] = *addr;
            }
            Ok(FfiBackend {
                msg_send,
                get_class: sym(&objc, LIBOBJC, "objc_getClass")?,
                class_get_class_method: sym(&objc, LIBOBJC, "class_getClassMethod")?,
                class_get_instance_method: sym(&objc, LIBOBJC, "class_getInstanceMethod")?,
                class_responds_to_selector: sym(&objc, LIBOBJC, "class_respondsToSelector")?,
                pool_push: sym(&objc, LIBOBJC, "objc_autoreleasePoolPush")?,
                pool_pop: sym(&objc, LIBOBJC, "objc_autoreleasePoolPop")?,
                cf_number_create: sym(&cf, CORE_FOUNDATION, "CFNumberCreate")?,
                cf_dictionary_create: sym(&cf, CORE_FOUNDATION, "CFDictionaryCreate")?,
                cf_release: sym(&cf, CORE_FOUNDATION, "CFRelease")?,
                key_callbacks: sym(&cf, CORE_FOUNDATION, "kCFTypeDictionaryKeyCallBacks")?,
                value_callbacks: sym(&cf, CORE_FOUNDATION, "kCFTypeDictionaryValueCallBacks")?,
                ns_temporary_directory: sym(&foundation, FOUNDATION, "NSTemporaryDirectory")?,
                surface_create: sym(&iosurface, IOSURFACE, "IOSurfaceCreate")?,
                surface_lock: sym(&iosurface, IOSURFACE, "IOSurfaceLock")?,
                surface_unlock: sym(&iosurface, IOSURFACE, "IOSurfaceUnlock")?,
                surface_base: sym(&iosurface, IOSURFACE, "IOSurfaceGetBaseAddress")?,
                surface_alloc_size: sym(&iosurface, IOSURFACE, "IOSurfaceGetAllocSize")?,
                surface_keys,
                sels,
                _libs: vec![objc, cf, foundation, iosurface, ane],
            })
        }
    }

    /// Calls `objc_msgSend` cast to the function type `shape` names. Arguments that do not match
    /// the shape (never the case after the runtime's check) yield `None` without a call.
    ///
    /// # Safety
    ///
    /// As [`Backend::send`]; `shape` is the shape of the selector's signature.
    unsafe fn dispatch(&self, recv: Ptr, sel: CPtr, shape: Shape, args: &[Arg]) -> Option<Ret> {
        use Arg as G;
        use std::mem::transmute;
        let m = self.msg_send;
        let id = |p: Ptr| Ret::Id(Id(p));
        // SAFETY: in every arm, `objc_msgSend` is a trampoline that jumps to the method
        // implementation with the registers untouched, so calling it through the method's exact C
        // function type is the documented way to send a message (required on arm64, where
        // variadic and non-variadic calls differ). Each type below is spelled from the selector's
        // signature in `protocol.rs`; the caller guarantees the receiver and pointer arguments.
        unsafe {
            Some(match (shape, args) {
                (Shape::RetId, []) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr) -> Ptr = transmute(m);
                    id(f(recv, sel))
                }
                (Shape::RetPtr, []) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr) -> CPtr = transmute(m);
                    Ret::Ptr(f(recv, sel))
                }
                (Shape::RetVoid, []) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr) = transmute(m);
                    f(recv, sel);
                    Ret::Void
                }
                (Shape::IdToId, [G::Id(a)]) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr, Ptr) -> Ptr = transmute(m);
                    id(f(recv, sel, a.0))
                }
                (Shape::Id3ToId, [G::Id(a), G::Id(b), G::Id(c)]) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr, Ptr, Ptr, Ptr) -> Ptr = transmute(m);
                    id(f(recv, sel, a.0, b.0, c.0))
                }
                (
                    Shape::Id7ToId,
                    [
                        G::Id(a),
                        G::Id(b),
                        G::Id(c),
                        G::Id(d),
                        G::Id(e),
                        G::Id(g),
                        G::Id(h),
                    ],
                ) => {
                    type F7 = unsafe extern "C" fn(Ptr, CPtr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr, Ptr) -> Ptr;
                    let f: F7 = transmute(m);
                    id(f(recv, sel, a.0, b.0, c.0, d.0, e.0, g.0, h.0))
                }
                (Shape::PtrToId, [G::Ptr(p)]) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr, CPtr) -> Ptr = transmute(m);
                    id(f(recv, sel, *p))
                }
                (Shape::I32ToId, [G::I32(v)]) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr, i32) -> Ptr = transmute(m);
                    id(f(recv, sel, *v))
                }
                (Shape::PtrUsizeToId, [G::Ptr(p), G::Usize(n)]) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr, CPtr, usize) -> Ptr = transmute(m);
                    id(f(recv, sel, *p, *n))
                }
                (Shape::PtrPtrUsizeToId, [G::Ptr(p), G::Ptr(q), G::Usize(n)]) => {
                    let f: unsafe extern "C" fn(Ptr, CPtr, CPtr, CPtr, usize) -> Ptr = transmute(m);
                    id(f(recv, sel, *p, *q, *n))
                }
                (Shape::U32ErrToBool, [G::U32(q), G::ErrOut(e)]) => {
                    type F = unsafe extern "C" fn(Ptr, CPtr, u32, *mut Ptr) -> ObjcBool;
                    let f: F = transmute(m);
                    Ret::Bool(objc_bool(f(recv, sel, *q, e.cast())))
                }
                (Shape::U32IdErrToBool, [G::U32(q), G::Id(o), G::ErrOut(e)]) => {
                    type F = unsafe extern "C" fn(Ptr, CPtr, u32, Ptr, *mut Ptr) -> ObjcBool;
                    let f: F = transmute(m);
                    Ret::Bool(objc_bool(f(recv, sel, *q, o.0, e.cast())))
                }
                (Shape::U32IdIdErrToBool, [G::U32(q), G::Id(o), G::Id(r), G::ErrOut(e)]) => {
                    type F = unsafe extern "C" fn(Ptr, CPtr, u32, Ptr, Ptr, *mut Ptr) -> ObjcBool;
                    let f: F = transmute(m);
                    Ret::Bool(objc_bool(f(recv, sel, *q, o.0, r.0, e.cast())))
                }
                _ => return None,
            })
        }
    }
}

// SAFETY: every method forwards to the documented C function with its exact prototype;
// `surface_base` returns IOSurface memory (page-aligned, `IOSurfaceGetAllocSize` bytes, stable
// while the surface lives), and `UTF8String` results live until the autorelease pool pops.
unsafe impl Backend for FfiBackend {
    fn class(&self, name: ClassName) -> Id {
        let Ok(c) = CString::new(name.name()) else {
            return Id::NIL;
        };
        // SAFETY: `objc_getClass` takes a NUL-terminated string and returns a class or nil.
        Id(unsafe { (self.get_class)(c.as_ptr()) })
    }

    fn has_method(&self, class: Id, selector: Selector) -> bool {
        if class.is_nil() {
            return false;
        }
        let sel = self.sels[selector.index()];
        // SAFETY: `class` is a class pointer from `objc_getClass` and `sel` a registered selector;
        // the lookups only read runtime tables.
        unsafe {
            match selector.signature().receiver {
                Receiver::Class(_) => !(self.class_get_class_method)(class.0, sel).is_null(),
                Receiver::Instance(_) => {
                    !(self.class_get_instance_method)(class.0, sel).is_null()
                        || objc_bool((self.class_responds_to_selector)(class.0, sel))
                }
            }
        }
    }

    unsafe fn send(&self, receiver: Id, selector: Selector, args: &[Arg]) -> Ret {
        let sig = selector.signature();
        let Some(shape) = Shape::of(&sig) else {
            return Ret::failure(sig.ret);
        };
        let sel = self.sels[selector.index()];
        // SAFETY: the caller guarantees receiver and arguments (Backend::send contract); `shape`
        // comes from the selector's own signature.
        let r = unsafe { self.dispatch(receiver.0, sel, shape, args) };
        r.unwrap_or(Ret::failure(sig.ret))
    }

    fn pool_push(&self) -> *mut c_void {
        // SAFETY: pushing an autorelease pool has no preconditions.
        unsafe { (self.pool_push)() }
    }

    unsafe fn pool_pop(&self, token: *mut c_void) {
        // SAFETY: the caller passes a token from `pool_push` in LIFO order.
        unsafe { (self.pool_pop)(token) }
    }

    fn temporary_directory(&self) -> Id {
        // SAFETY: `NSTemporaryDirectory` takes no arguments and returns an autoreleased NSString.
        Id(unsafe { (self.ns_temporary_directory)() })
    }

    fn surface_create(&self, bytes: usize) -> SurfaceRef {
        let props = surface_properties(bytes);
        let mut keys = [std::ptr::null(); SurfaceKey::ALL.len()];
        let mut values = [std::ptr::null(); SurfaceKey::ALL.len()];
        // SAFETY: CFNumberCreate reads one i64 from the given address (kCFNumberSInt64Type);
        // CFDictionaryCreate copies `n` key and value pointers and retains them through the
        // kCFType callbacks, so our numbers can be released right after; IOSurfaceCreate reads
        // the dictionary and returns a +1 surface or NULL. Every object created here is released.
        unsafe {
            for (i, (key, value)) in props.iter().enumerate() {
                keys[i] = self.surface_keys[key.index()];
                values[i] = (self.cf_number_create)(
                    std::ptr::null(),
                    CF_NUMBER_SINT64_TYPE,
                    (value as *const i64).cast(),
                );
            }
            let numbers_ok = values.iter().all(|v| !v.is_null());
            let dict = if numbers_ok {
                (self.cf_dictionary_create)(
                    std::ptr::null(),
                    keys.as_ptr(),
                    values.as_ptr(),
                    props.len() as isize,
                    self.key_callbacks,
                    self.value_callbacks,
                )
            } else {
                std::ptr::null()
            };
            for v in values.iter().filter(|v| !v.is_null()) {
                (self.cf_release)(*v);
            }
            if dict.is_null() {
                return SurfaceRef(std::ptr::null_mut());
            }
            let surface = (self.surface_create)(dict);
            (self.cf_release)(dict);
            SurfaceRef(surface)
        }
    }

    unsafe fn surface_lock(&self, surface: SurfaceRef, options: u32) -> i32 {
        // SAFETY: live surface (caller); the seed pointer may be NULL.
        unsafe { (self.surface_lock)(surface.0, options, std::ptr::null_mut()) }
    }

    unsafe fn surface_unlock(&self, surface: SurfaceRef, options: u32) -> i32 {
        // SAFETY: live, locked surface (caller); the seed pointer may be NULL.
        unsafe { (self.surface_unlock)(surface.0, options, std::ptr::null_mut()) }
    }

    unsafe fn surface_base(&self, surface: SurfaceRef) -> *mut u8 {
        // SAFETY: live surface (caller).
        unsafe { (self.surface_base)(surface.0).cast() }
    }

    unsafe fn surface_alloc_size(&self, surface: SurfaceRef) -> usize {
        // SAFETY: live surface (caller).
        unsafe { (self.surface_alloc_size)(surface.0) }
    }

    unsafe fn cf_release(&self, surface: SurfaceRef) {
        // SAFETY: the caller owns one reference and gives it up.
        unsafe { (self.cf_release)(surface.0) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On this machine (not macOS) the first library is already missing, and the reason names it.
    #[cfg(not(target_os = "macos"))]
    #[test]
    fn load_names_libobjc_first_on_non_apple_systems() {
        let Err(reason) = FfiBackend::load() else {
            panic!("Apple libraries unexpectedly present");
        };
        assert!(reason.contains(LIBOBJC), "{reason}");
    }

    #[test]
    fn objc_bool_reads_zero_as_false() {
        assert!(!objc_bool(Default::default()));
    }
}
