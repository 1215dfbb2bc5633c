//! One error type for the crate. Every failure reported by the framework carries the kernel's name
//! and, where the framework gave one, the `NSError` description, so a log line alone says what failed.

use std::path::PathBuf;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between a [`crate::KernelSpec`] and its outputs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A library or symbol the backend needs is missing (always the case off macOS).
    #[error("Apple Neural Engine unavailable: {reason}")]
    Unavailable {
        /// The first library or symbol that failed, with the loader's message.
        reason: String,
    },

    /// A required Objective-C class is not registered (framework changed or not loaded).
    #[error("Apple Neural Engine unavailable: class {class} not found")]
    MissingClass {
        /// Class name, e.g. `_ANERequest`.
        class: String,
    },

    /// A class does not implement a selector the protocol needs.
    #[error("Apple Neural Engine unavailable: {class} does not implement {selector}")]
    MissingSelector {
        /// Class name.
        class: String,
        /// `+selector` for class methods, `-selector` for instance methods.
        selector: String,
    },

    /// The spec cannot be turned into a program (caught before any framework call).
    #[error("kernel `{kernel}`: invalid spec: {reason}")]
    InvalidSpec {
        /// Kernel name.
        kernel: String,
        /// What is wrong.
        reason: String,
    },

    /// `modelWithMILText:weights:optionsPlist:` returned nil: the MIL text or weights were rejected.
    #[error(
        "kernel `{kernel}`: _ANEInMemoryModelDescriptor rejected the MIL text or weights (nil descriptor)"
    )]
    Descriptor {
        /// Kernel name.
        kernel: String,
    },

    /// `inMemoryModelWithDescriptor:` or `hexStringIdentifier` returned nil or unusable data.
    #[error("kernel `{kernel}`: model creation failed: {detail}")]
    Model {
        /// Kernel name.
        kernel: String,
        /// Which step failed.
        detail: String,
    },

    /// `compileWithQoS:options:error:` returned NO.
    #[error("kernel `{kernel}`: ANE compile failed: {description}")]
    Compile {
        /// Kernel name.
        kernel: String,
        /// The NSError's description.
        description: String,
    },

    /// `loadWithQoS:options:error:` returned NO (after the retry, if configured).
    #[error("kernel `{kernel}`: ANE load failed: {description}")]
    Load {
        /// Kernel name.
        kernel: String,
        /// The NSError's description.
        description: String,
    },

    /// `unloadWithQoS:error:` returned NO (only reported by [`crate::AneKernel::close`]).
    #[error("kernel `{kernel}`: ANE unload failed: {description}")]
    Unload {
        /// Kernel name.
        kernel: String,
        /// The NSError's description.
        description: String,
    },

    /// `requestWithInputs:…` returned nil.
    #[error("kernel `{kernel}`: _ANERequest creation failed: {detail}")]
    Request {
        /// Kernel name.
        kernel: String,
        /// Which object was nil.
        detail: String,
    },

    /// `evaluateWithQoS:options:request:error:` returned NO; outputs are stale.
    #[error("kernel `{kernel}`: ANE evaluate failed: {description}")]
    Evaluate {
        /// Kernel name.
        kernel: String,
        /// The NSError's description.
        description: String,
    },

    /// Creating, locking or unlocking an IOSurface failed.
    #[error("kernel `{kernel}`: IOSurface for `{name}`: {detail}")]
    Surface {
        /// Kernel name.
        kernel: String,
        /// Tensor name.
        name: String,
        /// What failed.
        detail: String,
    },

    /// A host slice does not have the tensor's element (or byte) count.
    #[error("kernel `{kernel}`: `{name}` holds {expected} values, got {got}")]
    BufferSize {
        /// Kernel name.
        kernel: String,
        /// Tensor name.
        name: String,
        /// Element count (or byte count for the byte APIs) of the tensor.
        expected: usize,
        /// Length of the slice passed.
        got: usize,
    },

    /// No input/output with that name or index.
    #[error("kernel `{kernel}`: no {direction} `{name}`")]
    UnknownTensor {
        /// Kernel name.
        kernel: String,
        /// "input" or "output".
        direction: &'static str,
        /// The name or index asked for.
        name: String,
    },

    /// The per-process compile budget is spent; checkpoint and [`crate::reexec_self`].
    #[error(
        "ANE compile budget exhausted ({used} of {budget} compiles used in this process); restart the process to continue"
    )]
    CompileBudgetExhausted {
        /// Compiles started so far in this process.
        used: usize,
        /// The configured budget.
        budget: usize,
    },

    /// Writing the program's temporary directory failed.
    #[error("kernel `{kernel}`: {path}: {source}")]
    Io {
        /// Kernel name.
        kernel: String,
        /// File or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The kernel this error is about, when it is about one.
    pub fn kernel(&self) -> Option<&str> {
        match self {
            Error::InvalidSpec { kernel, .. }
            | Error::Descriptor { kernel }
            | Error::Model { kernel, .. }
            | Error::Compile { kernel, .. }
            | Error::Load { kernel, .. }
            | Error::Unload { kernel, .. }
            | Error::Request { kernel, .. }
            | Error::Evaluate { kernel, .. }
            | Error::Surface { kernel, .. }
            | Error::BufferSize { kernel, .. }
            | Error::UnknownTensor { kernel, .. }
            | Error::Io { kernel, .. } => Some(kernel),
            Error::Unavailable { .. }
            | Error::MissingClass { .. }
            | Error::MissingSelector { .. }
            | Error::CompileBudgetExhausted { .. } => None,
        }
    }

    /// Whether the Neural Engine cannot be used at all on this machine (as opposed to one kernel
    /// failing): callers fall back to the CPU executor on these.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. } | Error::MissingClass { .. } | Error::MissingSelector { .. }
        )
    }
}
