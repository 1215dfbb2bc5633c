//! MIL types: element dtypes, dimensions, and the type grammar (tensors, scalars, tuples, dicts, lists).
//!
//! A scalar is represented as a rank-0 tensor: `int32` and `tensor<int32, []>` are the same type and
//! differ only in spelling (see [`crate::Spelling`]).

use std::fmt;

/// Element type of a tensor or scalar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Fp16,
    Fp32,
    Fp64,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Bool,
    String,
}

impl DType {
    /// Every dtype, in declaration order (used by tests and property generators).
    pub const ALL: [DType; 13] = [
        DType::Fp16,
        DType::Fp32,
        DType::Fp64,
        DType::Int8,
        DType::Uint8,
        DType::Int16,
        DType::Uint16,
        DType::Int32,
        DType::Uint32,
        DType::Int64,
        DType::Uint64,
        DType::Bool,
        DType::String,
    ];

    /// The MIL spelling (`fp16`, `int32`, …).
    pub fn name(self) -> &'static str {
        match self {
            DType::Fp16 => "fp16",
            DType::Fp32 => "fp32",
            DType::Fp64 => "fp64",
            DType::Int8 => "int8",
            DType::Uint8 => "uint8",
            DType::Int16 => "int16",
            DType::Uint16 => "uint16",
            DType::Int32 => "int32",
            DType::Uint32 => "uint32",
            DType::Int64 => "int64",
            DType::Uint64 => "uint64",
            DType::Bool => "bool",
            DType::String => "string",
        }
    }

    /// Parses a MIL dtype name.
    pub fn from_name(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::Fp16 | DType::Fp32 | DType::Fp64)
    }

    pub fn is_int(self) -> bool {
        matches!(
            self,
            DType::Int8
                | DType::Uint8
                | DType::Int16
                | DType::Uint16
                | DType::Int32
                | DType::Uint32
                | DType::Int64
                | DType::Uint64
        )
    }

    /// Size of one element in bytes (0 for strings, which have no fixed size).
    pub fn size_bytes(self) -> usize {
        match self {
            DType::Bool | DType::Int8 | DType::Uint8 => 1,
            DType::Fp16 | DType::Int16 | DType::Uint16 => 2,
            DType::Fp32 | DType::Int32 | DType::Uint32 => 4,
            DType::Fp64 | DType::Int64 | DType::Uint64 => 8,
            DType::String => 0,
        }
    }

    /// Inclusive integer range of an integer dtype, used to check literals.
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DType::Int8 => (i8::MIN as i128, i8::MAX as i128),
            DType::Uint8 => (0, u8::MAX as i128),
            DType::Int16 => (i16::MIN as i128, i16::MAX as i128),
            DType::Uint16 => (0, u16::MAX as i128),
            DType::Int32 => (i32::MIN as i128, i32::MAX as i128),
            DType::Uint32 => (0, u32::MAX as i128),
            DType::Int64 => (i64::MIN as i128, i64::MAX as i128),
            DType::Uint64 => (0, u64::MAX as i128),
            _ => return None,
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor dimension: a known extent or `?` (unknown; parsed and printed, never executed).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Known(usize),
    Unknown,
}

impl Dim {
    pub fn known(self) -> Option<usize> {
        match self {
            Dim::Known(n) => Some(n),
            Dim::Unknown => None,
        }
    }

    /// Two dims are compatible when equal or when either is unknown.
    pub fn compatible(self, other: Dim) -> bool {
        match (self, other) {
            (Dim::Known(a), Dim::Known(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A shape: a list of dims (empty for scalars).
pub type Shape = Vec<Dim>;

/// Builds a fully known shape from extents.
pub fn shape(dims: &[usize]) -> Shape {
    dims.iter().map(|&d| Dim::Known(d)).collect()
}

/// A MIL type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Type {
    /// A tensor; rank 0 is a scalar.
    Tensor { dtype: DType, shape: Shape },
    /// `tuple<T1, T2, …>`
    Tuple(Vec<Type>),
    /// `dict<K, V>`
    Dict(Box<Type>, Box<Type>),
    /// `list<T, N>` where N may be `?`.
    List(Box<Type>, Dim),
}

impl Type {
    /// A tensor type with known extents.
    pub fn tensor(dtype: DType, dims: &[usize]) -> Type {
        Type::Tensor {
            dtype,
            shape: shape(dims),
        }
    }

    /// A scalar (rank-0 tensor).
    pub fn scalar(dtype: DType) -> Type {
        Type::Tensor {
            dtype,
            shape: Vec::new(),
        }
    }

    pub fn dtype(&self) -> Option<DType> {
        match self {
            Type::Tensor { dtype, .. } => Some(*dtype),
            _ => None,
        }
    }

    pub fn shape(&self) -> Option<&[Dim]> {
        match self {
            Type::Tensor { shape, .. } => Some(shape),
            _ => None,
        }
    }

    pub fn rank(&self) -> Option<usize> {
        self.shape().map(|s| s.len())
    }

    /// Extents when every dim is known.
    pub fn known_shape(&self) -> Option<Vec<usize>> {
        self.shape()?.iter().map(|d| d.known()).collect()
    }

    /// Number of elements when every dim is known (`None` also when the count overflows `usize`).
    pub fn num_elements(&self) -> Option<usize> {
        self.known_shape()?
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
    }

    pub fn is_scalar(&self) -> bool {
        self.rank() == Some(0)
    }

    /// Equal up to unknown dims (`?` matches any extent).
    pub fn compatible(&self, other: &Type) -> bool {
        match (self, other) {
            (Type::Tensor { dtype: d1, shape: s1 }, Type::Tensor { dtype: d2, shape: s2 }) => {
                d1 == d2 && s1.len() == s2.len() && s1.iter().zip(s2).all(|(a, b)| a.compatible(*b))
            }
            (Type::Tuple(a), Type::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.compatible(y))
            }
            (Type::Dict(k1, v1), Type::Dict(k2, v2)) => k1.compatible(k2) && v1.compatible(v2),
            (Type::List(e1, n1), Type::List(e2, n2)) => e1.compatible(e2) && n1.compatible(*n2),
            _ => false,
        }
    }
}
