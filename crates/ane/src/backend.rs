//! The seam between the runtime logic and the operating system: a small trait over the
//! Objective-C runtime, CoreFoundation and IOSurface. [`crate::ffi`] implements it with the real
//! libraries; the test fake (`fake` module) records every call instead, so the whole protocol is
//! checked on Linux.

use std::ffi::c_void;

use crate::protocol::{ArgKind, ClassName, RetKind, Selector};

/// An Objective-C object or class pointer (`id` / `Class`); null is `nil`. Transparent, so a
/// `&[Id]` is a valid `const id*`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Id(pub *mut c_void);

impl Id {
    /// `nil`.
    pub const NIL: Id = Id(std::ptr::null_mut());

    /// Whether this is `nil`.
    pub fn is_nil(self) -> bool {
        self.0.is_null()
    }
}

/// An `IOSurfaceRef` (a CoreFoundation object, not an Objective-C one); null means failure.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SurfaceRef(pub *mut c_void);

impl SurfaceRef {
    /// Whether creation failed.
    pub fn is_null(self) -> bool {
        self.0.is_null()
    }
}

/// One message argument, tagged with its C type so it can be checked against the selector's
/// [`crate::protocol::Signature`] before anything is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// `id` (nil allowed).
    Id(Id),
    /// `unsigned int`.
    U32(u32),
    /// `int`.
    I32(i32),
    /// `NSUInteger`.
    Usize(usize),
    /// `const void*`, `const char*`, `const id*` or `IOSurfaceRef`.
    Ptr(*const c_void),
    /// `NSError**`: where the callee may store an autoreleased error.
    ErrOut(*mut Id),
}

impl Arg {
    /// The C type of this argument.
    pub fn kind(&self) -> ArgKind {
        match self {
            Arg::Id(_) => ArgKind::Id,
            Arg::U32(_) => ArgKind::U32,
            Arg::I32(_) => ArgKind::I32,
            Arg::Usize(_) => ArgKind::Usize,
            Arg::Ptr(_) => ArgKind::Ptr,
            Arg::ErrOut(_) => ArgKind::ErrOut,
        }
    }
}

/// A message's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ret {
    /// An object (nil allowed).
    Id(Id),
    /// A `BOOL`, already converted to Rust `bool`.
    Bool(bool),
    /// A `const char*` or other raw pointer.
    Ptr(*const c_void),
    /// Nothing.
    Void,
}

impl Ret {
    /// The C type of this value.
    pub fn kind(&self) -> RetKind {
        match self {
            Ret::Id(_) => RetKind::Id,
            Ret::Bool(_) => RetKind::Bool,
            Ret::Ptr(_) => RetKind::Ptr,
            Ret::Void => RetKind::Void,
        }
    }

    /// The "failed" value of a return kind: what a send that could not be made yields.
    pub fn failure(kind: RetKind) -> Ret {
        match kind {
            RetKind::Id => Ret::Id(Id::NIL),
            RetKind::Bool => Ret::Bool(false),
            RetKind::Ptr => Ret::Ptr(std::ptr::null()),
            RetKind::Void => Ret::Void,
        }
    }
}

/// `kIOSurfaceLockReadOnly`.
pub const LOCK_READ_ONLY: u32 = 1;
/// Lock options for writing (no flags).
pub const LOCK_WRITE: u32 = 0;

/// The operating-system primitives the runtime needs.
///
/// # Safety
///
/// Implementors promise that:
/// - [`Backend::surface_base`] of a live surface returned by [`Backend::surface_create`] points to
///   at least [`Backend::surface_alloc_size`] bytes, aligned to 8, that stay valid (and are not
///   touched by anyone else) while the surface is locked by the caller;
/// - [`Backend::send`] reads the pointer arguments only within the bounds the selector's
///   Foundation/ANE contract defines and returns values of the selector's declared
///   [`RetKind`]; a returned `const char*` is NUL-terminated and lives until the enclosing
///   autorelease pool is popped.
///
/// The runtime relies on these promises when it builds slices over surface memory and C strings.
pub unsafe trait Backend: Send + Sync {
    /// `objc_getClass(name)`; nil when the class does not exist.
    fn class(&self, name: ClassName) -> Id;

    /// Whether `class` implements `selector` as the kind of method its signature names
    /// (`class_getClassMethod` for class methods, `class_getInstanceMethod` /
    /// `class_respondsToSelector` for instance methods).
    fn has_method(&self, class: Id, selector: Selector) -> bool;

    /// `objc_msgSend(receiver, selector, args...)` through the function type of the selector's
    /// signature. Never called with arguments that do not match the signature (the runtime
    /// checks first).
    ///
    /// # Safety
    ///
    /// `receiver` must be a live object (or class) that responds to `selector`; every
    /// [`Arg::Ptr`] / [`Arg::ErrOut`] must be valid for the access the selector's contract makes
    /// (e.g. `length` readable bytes for `dataWithBytes:length:`, a NUL-terminated string for
    /// `stringWithUTF8String:`, `count` object pointers for the collection constructors).
    unsafe fn send(&self, receiver: Id, selector: Selector, args: &[Arg]) -> Ret;

    /// `objc_autoreleasePoolPush()`.
    fn pool_push(&self) -> *mut c_void;

    /// `objc_autoreleasePoolPop(token)`.
    ///
    /// # Safety
    ///
    /// `token` comes from [`Backend::pool_push`] on this thread, and pools are popped in LIFO
    /// order; objects autoreleased since then must no longer be used.
    unsafe fn pool_pop(&self, token: *mut c_void);

    /// `NSTemporaryDirectory()`: an autoreleased `NSString`, or nil. Call inside a pool.
    fn temporary_directory(&self) -> Id;

    /// `IOSurfaceCreate` with the properties of [`crate::surface::surface_properties`];
    /// null on failure. The caller owns the result (release with [`Backend::cf_release`]).
    fn surface_create(&self, bytes: usize) -> SurfaceRef;

    /// `IOSurfaceLock(surface, options, NULL)`; returns the `kern_return_t` (0 = success).
    ///
    /// # Safety
    ///
    /// `surface` is a live surface from [`Backend::surface_create`].
    unsafe fn surface_lock(&self, surface: SurfaceRef, options: u32) -> i32;

    /// `IOSurfaceUnlock(surface, options, NULL)`; returns the `kern_return_t`.
    ///
    /// # Safety
    ///
    /// `surface` is live and locked by the caller with the same `options`.
    unsafe fn surface_unlock(&self, surface: SurfaceRef, options: u32) -> i32;

    /// `IOSurfaceGetBaseAddress(surface)`.
    ///
    /// # Safety
    ///
    /// `surface` is a live surface.
    unsafe fn surface_base(&self, surface: SurfaceRef) -> *mut u8;

    /// `IOSurfaceGetAllocSize(surface)`.
    ///
    /// # Safety
    ///
    /// `surface` is a live surface.
    unsafe fn surface_alloc_size(&self, surface: SurfaceRef) -> usize;

    /// `CFRelease(surface)`.
    ///
    /// # Safety
    ///
    /// The caller owns one reference to `surface` and gives it up; the surface is not used
    /// afterwards by the caller.
    unsafe fn cf_release(&self, surface: SurfaceRef);
}
