//! `malus-ane`: the Apple Neural Engine runtime of malus.
//!
//! It compiles MIL programs in memory through the private `AppleNeuralEngine.framework`
//! (`_ANEInMemoryModel`), binds one IOSurface per input and output, evaluates, and cleans up —
//! following the protocol documented in `docs/ane-runtime.md`, which was read from maderix/ANE and
//! the `ane` crate.
//!
//! ```no_run
//! use malus_ane::{Ane, IoDType, KernelSpec, TensorSpec};
//! # fn main() -> malus_ane::Result<()> {
//! let ane = Ane::open()?; // Error::Unavailable off macOS
//! let spec = KernelSpec {
//!     name: "identity".into(),
//!     mil_text: String::from("program(1.3) ..."),
//!     weights: vec![],
//!     inputs: vec![TensorSpec::new("x", IoDType::Fp16, [1, 64, 1, 64])],
//!     outputs: vec![TensorSpec::new("y", IoDType::Fp16, [1, 64, 1, 64])],
//! };
//! let mut k = ane.compile(&spec)?;
//! k.write_input_f32("x", &vec![0.5; 64 * 64])?;
//! k.run()?;
//! let mut y = vec![0.0; 64 * 64];
//! k.read_output_f32("y", &mut y)?;
//! # Ok(()) }
//! ```
//!
//! # What has and has not run
//!
//! **Nothing in this crate has ever run on an ANE.** The real backend ([`ffi`]: dlopen of libobjc,
//! CoreFoundation, Foundation, IOSurface and AppleNeuralEngine, the `objc_msgSend` casts, the
//! `IOSurfaceCreate` dictionary, `NSTemporaryDirectory`) was written from public sources and is
//! only compiled and exercised here as far as "the libraries are missing". Everything above it —
//! the order of messages, their arguments, the dictionaries and arrays built, the temp directory,
//! error mapping, cleanup, budget, surface sizes, binding order and fp16 conversion — is tested on
//! Linux against a recording fake backend ([`Backend`]) that checks each message against the
//! signature table in [`protocol`]. The fake also models reference counts, autorelease pools and
//! the model's state machine, so leaks, use-after-release and out-of-order calls fail tests.
//! On a Mac, `cargo test -p malus-ane --test hardware -- --ignored` runs two smoke tests on the
//! real device; that is the first thing to do with this crate on hardware.
//!
//! # Decisions a reader should know
//!
//! - Inputs and outputs are bound in byte-wise name order by default ([`BindingOrder`]); index
//!   arguments of the read/write methods always mean the spec's declaration order.
//! - Surfaces are exactly the tensor size by default ([`SurfacePolicy`]); data is always packed at
//!   offset 0.
//! - Every `compileWithQoS:` call counts against the budget, failed or not.
//! - A failed load is retried once after 100 ms, as maderix/ANE's bridge does.
//! - The temp directory comes from `NSTemporaryDirectory()` and is shared (reference-counted) by
//!   kernels with the same `hexStringIdentifier`.
//!
//! # Design
//!
//! - All FFI goes through [`Backend`], an `unsafe trait` over the Objective-C runtime and
//!   IOSurface. Messages are described by [`protocol::Selector`], whose [`protocol::Signature`]
//!   fixes the exact C function type `objc_msgSend` is cast to (required on arm64).
//! - All `unsafe` of malus lives in this crate, each block with a `// SAFETY:` note.
//! - The compile budget is per process ([`CompileCounter::global`]); when it is spent, checkpoint
//!   and [`reexec_self`].

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

mod ane;
pub mod backend;
mod budget;
mod device;
mod error;
pub mod ffi;
mod kernel;
mod objc;
pub mod protocol;
mod spec;
mod surface;
mod tempdir;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

#[cfg(test)]
mod tests;

pub use ane::{Ane, AneConfig, DEFAULT_QOS, availability};
pub use backend::Backend;
pub use budget::{CompileCounter, DEFAULT_COMPILE_BUDGET, REPORTED_COMPILE_LIMIT, reexec_args, reexec_self};
pub use device::{ChipFamily, DeviceInfo};
pub use error::{Error, Result};
pub use kernel::AneKernel;
pub use spec::{IoDType, IoRef, KernelSpec, MODEL_PATH_PREFIX, TensorSpec, weight_relative_path};
pub use surface::{BindingOrder, Equalize, SurfaceKey, SurfacePolicy, binding_order, surface_properties};
