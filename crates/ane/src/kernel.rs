//! One compiled and loaded program: the lifecycle of docs/ane-runtime.md §3 (descriptor → model →
//! temp directory → compile → load → surfaces → request, once), then per step write inputs,
//! [`AneKernel::run`], read outputs; unload and clean up on drop.

use std::sync::Arc;

use half::f16;

use crate::ane::AneConfig;
use crate::backend::{Arg, Id, LOCK_READ_ONLY, LOCK_WRITE};
use crate::error::{Error, Result};
use crate::objc::{Pool, Runtime};
use crate::protocol::{ClassName, Selector};
use crate::spec::{IoDType, IoRef, KernelSpec, TensorSpec};
use crate::surface::{Surface, SurfaceGuard, binding_order, decode_f16, decode_f32, encode_f16, encode_f32};
use crate::tempdir::{ProgramDir, valid_identifier};

/// A program loaded on the Neural Engine, with one IOSurface per input and output.
///
/// Dropping it unloads the program, releases every object and surface, and removes the temp
/// directory; [`AneKernel::close`] does the same but reports an unload error.
pub struct AneKernel {
    rt: Arc<Runtime>,
    name: String,
    qos: u32,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Surfaces in spec order (the request lists them in binding order).
    in_surfaces: Vec<Surface>,
    out_surfaces: Vec<Surface>,
    /// Spec indices in binding order.
    in_binding: Vec<usize>,
    out_binding: Vec<usize>,
    /// Retained `_ANEInMemoryModel`, or nil.
    model: Id,
    loaded: bool,
    /// Retained empty `NSDictionary` passed as every `options:`.
    options: Id,
    /// Retained `_ANEIOSurfaceObject`s.
    wrappers: Vec<Id>,
    /// Retained `_ANERequest`, or nil.
    request: Id,
    /// Declared last: removed after everything else is released.
    dir: Option<ProgramDir>,
}

// SAFETY: the kernel exclusively owns its retained objects and surfaces; Objective-C reference
// counting and IOSurface are thread-safe, and every use goes through `&mut self` or `&self`
// methods that do not hand out the raw pointers, so moving the kernel to another thread (without
// sharing it) is sound. It is deliberately not `Sync`.
unsafe impl Send for AneKernel {}

impl AneKernel {
    /// Runs the lifecycle up to a built request. On error, everything created so far is undone
    /// by `Drop` (unload if loaded, releases, temp directory).
    pub(crate) fn compile(rt: Arc<Runtime>, spec: &KernelSpec, cfg: &AneConfig) -> Result<Self> {
        let kernel = spec.name.clone();
        spec.validate().map_err(|reason| Error::InvalidSpec {
            kernel: kernel.clone(),
            reason,
        })?;
        cfg.counter.check(cfg.compile_budget)?;
        let bytes = |ts: &[TensorSpec]| -> Vec<usize> { ts.iter().map(|t| t.bytes().unwrap_or(0)).collect() };
        let (in_alloc, out_alloc) = cfg
            .surface_policy
            .sizes(&bytes(&spec.inputs), &bytes(&spec.outputs));
        let names = |ts: &[TensorSpec]| {
            binding_order(
                &ts.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
                cfg.binding_order,
            )
        };

        let mut k = AneKernel {
            rt: rt.clone(),
            name: kernel.clone(),
            qos: cfg.qos,
            inputs: spec.inputs.clone(),
            outputs: spec.outputs.clone(),
            in_surfaces: Vec::new(),
            out_surfaces: Vec::new(),
            in_binding: names(&spec.inputs),
            out_binding: names(&spec.outputs),
            model: Id::NIL,
            loaded: false,
            options: Id::NIL,
            wrappers: Vec::new(),
            request: Id::NIL,
            dir: None,
        };
        let pool = rt.pool();
        let model_err = |detail: &str| Error::Model {
            kernel: kernel.clone(),
            detail: detail.into(),
        };

        // docs/ane-runtime.md §2, §4: MIL as NSData (never NSString); weights always a dictionary,
        // empty if none.
        let mil = pool.data(spec.mil_text.as_bytes());
        let weights = weights_dictionary(&pool, &spec.weights);
        let options = pool.dictionary(&[], &[]);
        if mil.is_nil() || weights.is_nil() || options.is_nil() {
            return Err(model_err(
                "Foundation returned nil while building the descriptor arguments",
            ));
        }
        k.options = rt.retain(options);

        let desc_class = rt.class(ClassName::AneInMemoryModelDescriptor);
        let desc_args = [Arg::Id(mil), Arg::Id(weights), Arg::Id(Id::NIL)];
        // SAFETY: verified class method; arguments are live objects of this pool (options nil).
        let desc = unsafe { rt.send_id(desc_class, Selector::ModelWithMilText, &desc_args) };
        if desc.is_nil() {
            return Err(Error::Descriptor { kernel });
        }
        let model_class = rt.class(ClassName::AneInMemoryModel);
        // SAFETY: verified class method; `desc` is live in this pool.
        let model = unsafe {
            rt.send_id(
                model_class,
                Selector::InMemoryModelWithDescriptor,
                &[Arg::Id(desc)],
            )
        };
        if model.is_nil() {
            return Err(model_err("inMemoryModelWithDescriptor: returned nil"));
        }
        k.model = rt.retain(model);

        // docs/ane-runtime.md §5: pre-populate <NSTemporaryDirectory()>/<hexStringIdentifier>/.
        // SAFETY: `model` is a live _ANEInMemoryModel (verified instance method).
        let hex_obj = unsafe { rt.send_id(model, Selector::HexStringIdentifier, &[]) };
        let hex = pool
            .to_string(hex_obj)
            .ok_or_else(|| model_err("hexStringIdentifier returned nil"))?;
        if !valid_identifier(&hex) {
            return Err(model_err(&format!("unusable hexStringIdentifier {hex:?}")));
        }
        // NSTemporaryDirectory() is where the framework itself looks; std's temp_dir() (which
        // reads $TMPDIR, normally the same directory on macOS) is only a fallback for nil.
        let root = pool
            .to_string(rt.backend().temporary_directory())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let dir = ProgramDir::populate(&root, &hex, spec.mil_text.as_bytes(), &spec.weights).map_err(
            |(path, source)| Error::Io {
                kernel: kernel.clone(),
                path,
                source,
            },
        )?;
        k.dir = Some(dir);

        // docs/ane-runtime.md §3 step 5. The budget is taken right before the compiler runs.
        cfg.counter.reserve(cfg.compile_budget)?;
        let qos = Arg::U32(cfg.qos);
        // SAFETY: live model, live options dictionary; the error slot is appended by the helper.
        let (ok, err) =
            unsafe { rt.send_with_error(model, Selector::CompileWithQos, &[qos, Arg::Id(options)]) };
        if !ok {
            let description = pool.error_text(err);
            return Err(Error::Compile { kernel, description });
        }
        // SAFETY: as for compile.
        let load = || unsafe { rt.send_with_error(model, Selector::LoadWithQos, &[qos, Arg::Id(options)]) };
        let (mut ok, mut err) = load();
        if let (false, Some(delay)) = (ok, cfg.load_retry_delay) {
            // maderix/ANE's bridge retries once after 100 ms "for ANE slot reclamation"
            // (docs/ane-runtime.md §7).
            std::thread::sleep(delay);
            (ok, err) = load();
        }
        if !ok {
            let description = pool.error_text(err);
            return Err(Error::Load { kernel, description });
        }
        k.loaded = true;

        // docs/ane-runtime.md §3 step 6: surfaces, wrappers and the request, built once.
        let backend = rt.backend();
        let surface_err = |t: &TensorSpec| {
            let kernel = kernel.clone();
            let name = t.name.clone();
            move |detail| Error::Surface { kernel, name, detail }
        };
        for (t, &b) in spec.inputs.iter().zip(&in_alloc) {
            k.in_surfaces
                .push(Surface::new(backend.clone(), b).map_err(surface_err(t))?);
        }
        for (t, &b) in spec.outputs.iter().zip(&out_alloc) {
            k.out_surfaces
                .push(Surface::new(backend.clone(), b).map_err(surface_err(t))?);
        }
        let wrap_class = rt.class(ClassName::AneIoSurfaceObject);
        let mut bound = [Vec::new(), Vec::new()];
        for (side, (order, surfaces, specs)) in [
            (&k.in_binding, &k.in_surfaces, &spec.inputs),
            (&k.out_binding, &k.out_surfaces, &spec.outputs),
        ]
        .into_iter()
        .enumerate()
        {
            for &i in order {
                let arg = [Arg::Ptr(surfaces[i].raw().0.cast_const())];
                // SAFETY: verified class method; the surface is live (owned by `k`) and the
                // wrapper retains what it needs.
                let w = unsafe { rt.send_id(wrap_class, Selector::ObjectWithIoSurface, &arg) };
                if w.is_nil() {
                    return Err(surface_err(&specs[i])("objectWithIOSurface: returned nil".into()));
                }
                k.wrappers.push(rt.retain(w));
                bound[side].push(w);
            }
        }
        let [in_objs, out_objs] = bound;
        let request = build_request(&pool, &in_objs, &out_objs);
        if request.is_nil() {
            return Err(Error::Request {
                kernel,
                detail: "requestWithInputs:inputIndices:outputs:outputIndices:weightsBuffer:perfStats:procedureIndex: returned nil".into(),
            });
        }
        k.request = rt.retain(request);
        drop(pool);
        Ok(k)
    }

    /// Evaluates the program once on the current input surfaces. A NO from the framework is an
    /// [`Error::Evaluate`] (the outputs are then stale).
    pub fn run(&mut self) -> Result<()> {
        let pool = self.rt.pool();
        let args = [Arg::U32(self.qos), Arg::Id(self.options), Arg::Id(self.request)];
        // SAFETY: model, options and request are live retained objects; the error slot is
        // appended by the helper.
        let (ok, err) = unsafe {
            self.rt
                .send_with_error(self.model, Selector::EvaluateWithQos, &args)
        };
        if ok {
            return Ok(());
        }
        Err(Error::Evaluate {
            kernel: self.name.clone(),
            description: pool.error_text(err),
        })
    }

    /// Unloads now and reports a failure, instead of ignoring it in `Drop`.
    pub fn close(mut self) -> Result<()> {
        self.unload().map_err(|description| Error::Unload {
            kernel: self.name.clone(),
            description,
        })
    }

    /// The kernel's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Inputs in spec order.
    pub fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    /// Outputs in spec order.
    pub fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    /// The program's temp directory (`<NSTemporaryDirectory()>/<hexStringIdentifier>`).
    pub fn program_dir(&self) -> Option<&std::path::Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// Input names in the order the request binds them.
    pub fn input_binding(&self) -> Vec<&str> {
        self.in_binding
            .iter()
            .map(|&i| self.inputs[i].name.as_str())
            .collect()
    }

    /// Output names in the order the request binds them.
    pub fn output_binding(&self) -> Vec<&str> {
        self.out_binding
            .iter()
            .map(|&i| self.outputs[i].name.as_str())
            .collect()
    }

    /// Writes an input from f32 values (converted to fp16, round-to-nearest, for fp16 inputs).
    pub fn write_input_f32<'a>(&mut self, input: impl Into<IoRef<'a>>, data: &[f32]) -> Result<()> {
        self.with_input(input.into(), data.len(), |d, bytes| encode_f32(d, data, bytes))
    }

    /// Writes an input from fp16 values.
    pub fn write_input_f16<'a>(&mut self, input: impl Into<IoRef<'a>>, data: &[f16]) -> Result<()> {
        self.with_input(input.into(), data.len(), |d, bytes| encode_f16(d, data, bytes))
    }

    /// Writes an input's raw bytes (exactly the tensor's byte size, in its dtype).
    pub fn write_input_bytes<'a>(&mut self, input: impl Into<IoRef<'a>>, data: &[u8]) -> Result<()> {
        let i = self.find(true, input.into())?;
        let expected = self.inputs[i].bytes().unwrap_or(0);
        if data.len() != expected {
            return Err(self.size_error_at(true, i, expected, data.len()));
        }
        self.with_input_mut(i, |bytes| bytes.copy_from_slice(data))
    }

    /// Gives `f` the input's bytes (the tensor's size, not the padded allocation) under a write
    /// lock, for packing in place without an intermediate buffer.
    pub fn with_input_mut<'a, R>(
        &mut self,
        input: impl Into<IoRef<'a>>,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R> {
        let i = self.find(true, input.into())?;
        let n = self.inputs[i].bytes().unwrap_or(0);
        let mut guard = lock(&self.name, &self.inputs[i], &mut self.in_surfaces[i], LOCK_WRITE)?;
        Ok(f(&mut guard.bytes()[..n]))
    }

    /// Reads an output as f32 values.
    pub fn read_output_f32<'a>(&mut self, output: impl Into<IoRef<'a>>, out: &mut [f32]) -> Result<()> {
        let n = out.len();
        self.with_output(output.into(), n, |d, bytes| decode_f32(d, bytes, out))
    }

    /// Reads an output as fp16 values.
    pub fn read_output_f16<'a>(&mut self, output: impl Into<IoRef<'a>>, out: &mut [f16]) -> Result<()> {
        let n = out.len();
        self.with_output(output.into(), n, |d, bytes| decode_f16(d, bytes, out))
    }

    /// Reads an output's raw bytes (exactly the tensor's byte size).
    pub fn read_output_bytes<'a>(&mut self, output: impl Into<IoRef<'a>>, out: &mut [u8]) -> Result<()> {
        let o = self.find(false, output.into())?;
        let expected = self.outputs[o].bytes().unwrap_or(0);
        if out.len() != expected {
            return Err(self.size_error_at(false, o, expected, out.len()));
        }
        self.with_output(
            IoRef::Index(o),
            self.outputs[o].elements().unwrap_or(0),
            |_, bytes| {
                out.copy_from_slice(&bytes[..expected]);
            },
        )
    }

    fn with_input(&mut self, r: IoRef<'_>, len: usize, f: impl FnOnce(IoDType, &mut [u8])) -> Result<()> {
        let i = self.find(true, r)?;
        let t = &self.inputs[i];
        let expected = t.elements().unwrap_or(0);
        if len != expected {
            return Err(self.size_error_at(true, i, expected, len));
        }
        let mut guard = lock(&self.name, t, &mut self.in_surfaces[i], LOCK_WRITE)?;
        f(t.dtype, guard.bytes());
        Ok(())
    }

    fn with_output(&mut self, r: IoRef<'_>, len: usize, f: impl FnOnce(IoDType, &mut [u8])) -> Result<()> {
        let o = self.find(false, r)?;
        let t = &self.outputs[o];
        let expected = t.elements().unwrap_or(0);
        if len != expected {
            return Err(self.size_error_at(false, o, expected, len));
        }
        let mut guard = lock(&self.name, t, &mut self.out_surfaces[o], LOCK_READ_ONLY)?;
        f(t.dtype, guard.bytes());
        Ok(())
    }

    fn find(&self, input: bool, r: IoRef<'_>) -> Result<usize> {
        let list = if input { &self.inputs } else { &self.outputs };
        let found = match r {
            IoRef::Index(i) => (i < list.len()).then_some(i),
            IoRef::Name(n) => list.iter().position(|t| t.name == n),
        };
        found.ok_or_else(|| Error::UnknownTensor {
            kernel: self.name.clone(),
            direction: if input { "input" } else { "output" },
            name: r.to_string(),
        })
    }

    fn size_error_at(&self, input: bool, i: usize, expected: usize, got: usize) -> Error {
        let list = if input { &self.inputs } else { &self.outputs };
        Error::BufferSize {
            kernel: self.name.clone(),
            name: list[i].name.clone(),
            expected,
            got,
        }
    }

    /// `unloadWithQoS:error:` if loaded; returns the NSError text on NO.
    fn unload(&mut self) -> Result<(), String> {
        if !self.loaded {
            return Ok(());
        }
        self.loaded = false;
        let pool = self.rt.pool();
        // SAFETY: the model is live (retained) and loaded.
        let (ok, err) = unsafe {
            self.rt
                .send_with_error(self.model, Selector::UnloadWithQos, &[Arg::U32(self.qos)])
        };
        if ok { Ok(()) } else { Err(pool.error_text(err)) }
    }
}

impl std::fmt::Debug for AneKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AneKernel")
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .field("input_binding", &self.input_binding())
            .field("output_binding", &self.output_binding())
            .field("loaded", &self.loaded)
            .field("program_dir", &self.program_dir())
            .finish()
    }
}

impl Drop for AneKernel {
    fn drop(&mut self) {
        if let Err(e) = self.unload() {
            use std::io::Write;
            // Never panics (unlike eprintln!): a failed unload only leaks until process exit.
            let _ = writeln!(
                std::io::stderr(),
                "malus-ane: kernel `{}`: unload failed: {e}",
                self.name
            );
        }
        let rt = self.rt.clone();
        for obj in [self.request].into_iter().chain(self.wrappers.drain(..)) {
            rt.release(obj);
        }
        rt.release(self.options);
        rt.release(self.model);
        self.request = Id::NIL;
        self.options = Id::NIL;
        self.model = Id::NIL;
        // Fields drop next: surfaces (CFRelease), then the temp directory.
    }
}

/// Locks a kernel's surface, mapping failure to [`Error::Surface`].
fn lock<'s>(kernel: &str, t: &TensorSpec, s: &'s mut Surface, options: u32) -> Result<SurfaceGuard<'s>> {
    s.lock(options).map_err(|detail| Error::Surface {
        kernel: kernel.into(),
        name: t.name.clone(),
        detail,
    })
}

/// `{key: {"offset": @0, "data": NSData}}` for every weight file (docs/ane-runtime.md §4); an
/// empty dictionary, never nil, when there are none. Nil if Foundation fails.
fn weights_dictionary(pool: &Pool<'_>, weights: &[(String, Vec<u8>)]) -> Id {
    let mut keys = Vec::with_capacity(weights.len());
    let mut values = Vec::with_capacity(weights.len());
    for (key, bytes) in weights {
        let inner = pool.dictionary(
            &[pool.string("offset"), pool.string("data")],
            &[pool.number(0), pool.data(bytes)],
        );
        keys.push(pool.string(key));
        values.push(inner);
    }
    pool.dictionary(&keys, &values)
}

/// The `_ANERequest`: surfaces in binding order, indices 0..n-1, weightsBuffer nil, perfStats
/// nil, procedureIndex `@0` (an NSNumber, not an integer).
fn build_request(pool: &Pool<'_>, inputs: &[Id], outputs: &[Id]) -> Id {
    let indices = |n: usize| {
        let nums: Vec<Id> = (0..n).map(|i| pool.number(i as i32)).collect();
        pool.array(&nums)
    };
    let args = [
        Arg::Id(pool.array(inputs)),
        Arg::Id(indices(inputs.len())),
        Arg::Id(pool.array(outputs)),
        Arg::Id(indices(outputs.len())),
        Arg::Id(Id::NIL),
        Arg::Id(Id::NIL),
        Arg::Id(pool.number(0)),
    ];
    if args
        .iter()
        .enumerate()
        .any(|(i, a)| i != 4 && i != 5 && *a == Arg::Id(Id::NIL))
    {
        return Id::NIL;
    }
    let rt = pool.rt();
    // SAFETY: verified class method; every object argument is live in this pool (two nils are
    // the documented weightsBuffer/perfStats values).
    unsafe {
        rt.send_id(
            rt.class(ClassName::AneRequest),
            Selector::RequestWithInputs,
            &args,
        )
    }
}
