//! The device handle: opens the backend, verifies the protocol, compiles kernels under the budget.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::budget::{CompileCounter, DEFAULT_COMPILE_BUDGET};
use crate::device::DeviceInfo;
use crate::error::{Error, Result};
use crate::ffi::FfiBackend;
use crate::kernel::AneKernel;
use crate::objc::Runtime;
use crate::spec::KernelSpec;
use crate::surface::{BindingOrder, SurfacePolicy};

/// QoS passed to compile, load, evaluate and unload: 21 everywhere in maderix/ANE
/// (docs/ane-runtime.md §6; 0–63 all reported to work on M5, 0 with a slower first load).
pub const DEFAULT_QOS: u32 = 21;

/// Tunables. The defaults reproduce maderix/ANE's working path.
#[derive(Clone, Debug)]
pub struct AneConfig {
    /// `unsigned int` QoS for every call.
    pub qos: u32,
    /// Compiles allowed per process before [`Error::CompileBudgetExhausted`].
    pub compile_budget: usize,
    /// Surface sizing.
    pub surface_policy: SurfacePolicy,
    /// Order of surfaces in the request.
    pub binding_order: BindingOrder,
    /// Retry a failed load once after this delay (`None`: no retry).
    pub load_retry_delay: Option<Duration>,
    /// Where compiles are counted; the process-wide counter unless a test supplies its own.
    pub counter: Arc<CompileCounter>,
}

impl Default for AneConfig {
    fn default() -> Self {
        AneConfig {
            qos: DEFAULT_QOS,
            compile_budget: DEFAULT_COMPILE_BUDGET,
            surface_policy: SurfacePolicy::default(),
            binding_order: BindingOrder::default(),
            load_retry_delay: Some(Duration::from_millis(100)),
            counter: CompileCounter::global(),
        }
    }
}

/// An open Neural Engine.
#[derive(Clone)]
pub struct Ane {
    rt: Arc<Runtime>,
    config: AneConfig,
}

impl std::fmt::Debug for Ane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ane")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Ane {
    /// Loads Apple's libraries and checks every class and selector the protocol needs.
    /// Off macOS this returns [`Error::Unavailable`] naming the first library that failed.
    pub fn open() -> Result<Ane> {
        let backend = FfiBackend::load().map_err(|reason| Error::Unavailable { reason })?;
        Ane::open_with(Arc::new(backend))
    }

    /// Opens over any backend (tests use a recording fake).
    pub fn open_with(backend: Arc<dyn Backend>) -> Result<Ane> {
        Ok(Ane {
            rt: Arc::new(Runtime::new(backend)?),
            config: AneConfig::default(),
        })
    }

    /// Replaces the configuration (affects kernels compiled afterwards).
    pub fn with_config(mut self, config: AneConfig) -> Ane {
        self.config = config;
        self
    }

    /// The configuration in force.
    pub fn config(&self) -> &AneConfig {
        &self.config
    }

    /// Compiles, loads and binds a program. Fails with [`Error::CompileBudgetExhausted`] before
    /// touching the framework when the budget is spent.
    pub fn compile(&self, spec: &KernelSpec) -> Result<AneKernel> {
        AneKernel::compile(self.rt.clone(), spec, &self.config)
    }

    /// Compiles started in this process (on the configured counter).
    pub fn compiles_used(&self) -> usize {
        self.config.counter.used()
    }

    /// Compiles left under the budget.
    pub fn compiles_left(&self) -> usize {
        self.config.compile_budget.saturating_sub(self.compiles_used())
    }

    /// The ANE sub-type and a chip-family guess (`subtype` is `None` if `_ANEDeviceInfo` is
    /// missing).
    pub fn device_info(&self) -> DeviceInfo {
        DeviceInfo::from_subtype(self.rt.ane_sub_type())
    }
}

/// Whether the Neural Engine can be opened here; the error says why not (for `malus doctor`).
pub fn availability() -> Result<(), String> {
    Ane::open().map(|_| ()).map_err(|e| e.to_string())
}
