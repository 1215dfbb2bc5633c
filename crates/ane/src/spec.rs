//! What a caller hands the runtime: MIL text, weight files and the I/O signature. The crate does
//! not depend on `malus-mil`; callers convert their programs to these plain types.

use std::path::{Component, Path, PathBuf};

/// Prefix of every weight path in MIL `BLOBFILE(path = ...)` and in the weights dictionary.
pub const MODEL_PATH_PREFIX: &str = "@model_path/";

/// Element type of a function input or output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IoDType {
    /// IEEE half; what training kernels use (no cast op, ~37% faster I/O per maderix).
    Fp16,
    /// IEEE single; the program casts to fp16 inside.
    Fp32,
}

impl IoDType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            IoDType::Fp16 => 2,
            IoDType::Fp32 => 4,
        }
    }
}

/// One function input or output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The MIL variable name (decides the binding order, see [`crate::BindingOrder`]).
    pub name: String,
    /// Element type.
    pub dtype: IoDType,
    /// Shape, e.g. `[1, C, 1, S]`.
    pub shape: Vec<usize>,
}

impl TensorSpec {
    /// A tensor spec.
    pub fn new(name: impl Into<String>, dtype: IoDType, shape: impl Into<Vec<usize>>) -> Self {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.into(),
        }
    }

    /// Product of the shape (`None` on overflow).
    pub fn elements(&self) -> Option<usize> {
        self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Tensor size in bytes (`None` on overflow).
    pub fn bytes(&self) -> Option<usize> {
        self.elements()?.checked_mul(self.dtype.size())
    }
}

/// A program to compile: MIL text, its weight files, and its I/O signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelSpec {
    /// Used in every error and log line about this kernel.
    pub name: String,
    /// The complete MIL program text (`program(1.3) ...`).
    pub mil_text: String,
    /// Weight files: (`"@model_path/weights/x.bin"`, file bytes), keys exactly as in `BLOBFILE`.
    pub weights: Vec<(String, Vec<u8>)>,
    /// Function parameters.
    pub inputs: Vec<TensorSpec>,
    /// Returned values.
    pub outputs: Vec<TensorSpec>,
}

/// Refers to an input or output by its position in the spec or by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoRef<'a> {
    /// Position in [`KernelSpec::inputs`] / [`KernelSpec::outputs`] (declaration order, not
    /// binding order).
    Index(usize),
    /// The MIL name.
    Name(&'a str),
}

impl From<usize> for IoRef<'_> {
    fn from(i: usize) -> Self {
        IoRef::Index(i)
    }
}

impl<'a> From<&'a str> for IoRef<'a> {
    fn from(s: &'a str) -> Self {
        IoRef::Name(s)
    }
}

impl<'a> From<&'a String> for IoRef<'a> {
    fn from(s: &'a String) -> Self {
        IoRef::Name(s)
    }
}

impl std::fmt::Display for IoRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoRef::Index(i) => write!(f, "#{i}"),
            IoRef::Name(n) => f.write_str(n),
        }
    }
}

/// The file a weights-dictionary key maps to, relative to the program's temp directory:
/// the key minus `@model_path/`. Rejects anything that could leave that directory.
pub fn weight_relative_path(key: &str) -> Result<PathBuf, String> {
    let rel = key
        .strip_prefix(MODEL_PATH_PREFIX)
        .ok_or_else(|| format!("weight key `{key}` does not start with `{MODEL_PATH_PREFIX}`"))?;
    let path = Path::new(rel);
    let normal = path.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.is_empty() || !normal || rel.contains('\0') || rel.ends_with('/') {
        return Err(format!("weight key `{key}` is not a plain relative file path"));
    }
    if path == Path::new("model.mil") {
        return Err(format!("weight key `{key}` would overwrite model.mil"));
    }
    Ok(path.to_path_buf())
}

impl KernelSpec {
    /// Checks what can be checked without the framework; the error is the reason.
    pub fn validate(&self) -> Result<(), String> {
        if self.mil_text.is_empty() {
            return Err("empty MIL text".into());
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err("a kernel needs at least one input and one output".into());
        }
        for (dir, list) in [("input", &self.inputs), ("output", &self.outputs)] {
            for (i, t) in list.iter().enumerate() {
                if t.name.is_empty() || t.name.contains('\0') {
                    return Err(format!("{dir} #{i} has an empty or invalid name"));
                }
                if list[..i].iter().any(|u| u.name == t.name) {
                    return Err(format!("{dir} `{}` declared twice", t.name));
                }
                match t.bytes() {
                    Some(0) => return Err(format!("{dir} `{}` has no elements", t.name)),
                    None => return Err(format!("{dir} `{}` size overflows", t.name)),
                    Some(b) if b > i64::MAX as usize => {
                        return Err(format!("{dir} `{}` is too large", t.name));
                    }
                    Some(_) => {}
                }
            }
        }
        for (i, (key, _)) in self.weights.iter().enumerate() {
            weight_relative_path(key)?;
            if self.weights[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("weight `{key}` given twice"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> KernelSpec {
        KernelSpec {
            name: "k".into(),
            mil_text: "program(1.3)".into(),
            weights: vec![("@model_path/weights/w.bin".into(), vec![1, 2, 3])],
            inputs: vec![TensorSpec::new("x", IoDType::Fp16, [1, 4, 1, 8])],
            outputs: vec![TensorSpec::new("y", IoDType::Fp32, [1, 2, 1, 8])],
        }
    }

    #[test]
    fn sizes_follow_dtype() {
        let s = spec();
        assert_eq!(s.inputs[0].elements(), Some(32));
        assert_eq!(s.inputs[0].bytes(), Some(64));
        assert_eq!(s.outputs[0].bytes(), Some(64));
        assert_eq!(TensorSpec::new("o", IoDType::Fp16, [usize::MAX, 2]).bytes(), None);
    }

    #[test]
    fn weight_paths_strip_prefix_and_refuse_escapes() {
        assert_eq!(
            weight_relative_path("@model_path/weights/wq.bin").unwrap(),
            PathBuf::from("weights/wq.bin")
        );
        for bad in [
            "weights/w.bin",
            "@model_path/",
            "@model_path/../x.bin",
            "@model_path//etc/passwd",
            "@model_path/weights/../../x",
            "@model_path/model.mil",
            "@model_path/weights/",
        ] {
            assert!(weight_relative_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn validate_catches_bad_specs() {
        assert!(spec().validate().is_ok());
        let mut s = spec();
        s.inputs.push(s.inputs[0].clone());
        assert!(s.validate().unwrap_err().contains("twice"));
        let mut s = spec();
        s.outputs.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.inputs[0].shape = vec![1, 0];
        assert!(s.validate().unwrap_err().contains("no elements"));
        let mut s = spec();
        s.weights.push(s.weights[0].clone());
        assert!(s.validate().unwrap_err().contains("twice"));
        let mut s = spec();
        s.mil_text.clear();
        assert!(s.validate().is_err());
        let mut s = spec();
        s.weights[0].0 = "w.bin".into();
        assert!(s.validate().is_err());
    }

    #[test]
    fn ioref_conversions() {
        assert_eq!(IoRef::from(2), IoRef::Index(2));
        assert_eq!(IoRef::from("x"), IoRef::Name("x"));
        assert_eq!(IoRef::from(3).to_string(), "#3");
    }
}
