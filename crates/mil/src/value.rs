//! Values: literals (inline or in `const` ops), variable references and tuples of values.

use crate::types::{DType, Type};

/// The untyped body of a literal, as written between the parentheses of `TYPE(…)`.
#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    /// `[a, b, …]` — the elements of a tensor (nested for rank > 1) or a list.
    List(Vec<Lit>),
    /// `(a, b, …)` — the elements of a tuple.
    Tuple(Vec<Lit>),
    /// `{{k, v}, …}` — the entries of a dict.
    Dict(Vec<(Lit, Lit)>),
    /// `BLOBFILE(path = string("…"), offset = uint64(N))`: data stored in a weight blob file;
    /// `offset` points at the blob's 64-byte metadata record.
    Blob {
        path: String,
        offset: u64,
    },
}

impl Lit {
    /// All scalar leaves in row-major order (nested lists flattened).
    pub fn leaves(&self) -> Vec<&Lit> {
        let mut out = Vec::new();
        fn walk<'a>(l: &'a Lit, out: &mut Vec<&'a Lit>) {
            match l {
                Lit::List(items) | Lit::Tuple(items) => items.iter().for_each(|i| walk(i, out)),
                _ => out.push(l),
            }
        }
        walk(self, &mut out);
        out
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Lit::Int(i) => Some(*i as f64),
            Lit::Float(f) => Some(*f),
            Lit::Bool(b) => Some(*b as u8 as f64),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Lit::Int(i) => i64::try_from(*i).ok(),
            Lit::Bool(b) => Some(*b as i64),
            Lit::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            _ => None,
        }
    }
}

/// A literal with its declared type, e.g. `tensor<int32, [2]>([1, 2])` or `fp16(0x1p-3)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Literal {
    pub ty: Type,
    pub lit: Lit,
}

impl Literal {
    pub fn new(ty: Type, lit: Lit) -> Literal {
        Literal { ty, lit }
    }

    pub fn scalar_i32(v: i32) -> Literal {
        Literal::new(Type::scalar(DType::Int32), Lit::Int(v as i128))
    }

    pub fn scalar_bool(v: bool) -> Literal {
        Literal::new(Type::scalar(DType::Bool), Lit::Bool(v))
    }

    pub fn scalar_f(dtype: DType, v: f64) -> Literal {
        Literal::new(Type::scalar(dtype), Lit::Float(v))
    }

    pub fn string(s: &str) -> Literal {
        Literal::new(Type::scalar(DType::String), Lit::Str(s.to_string()))
    }

    pub fn ints(dtype: DType, vals: &[i64]) -> Literal {
        Literal::new(
            Type::tensor(dtype, &[vals.len()]),
            Lit::List(vals.iter().map(|&v| Lit::Int(v as i128)).collect()),
        )
    }

    pub fn bools(vals: &[bool]) -> Literal {
        Literal::new(
            Type::tensor(DType::Bool, &[vals.len()]),
            Lit::List(vals.iter().map(|&v| Lit::Bool(v)).collect()),
        )
    }

    /// A tensor of floats with the given shape (values row-major).
    pub fn floats(dtype: DType, dims: &[usize], vals: &[f64]) -> Literal {
        fn nest(dims: &[usize], vals: &[f64]) -> Lit {
            if dims.is_empty() {
                return Lit::Float(vals[0]);
            }
            let inner: usize = dims[1..].iter().product();
            Lit::List(
                (0..dims[0])
                    .map(|i| nest(&dims[1..], &vals[i * inner..(i + 1) * inner]))
                    .collect(),
            )
        }
        assert_eq!(dims.iter().product::<usize>(), vals.len());
        Literal::new(Type::tensor(dtype, dims), nest(dims, vals))
    }

    /// A literal whose data lives in a weight blob file.
    pub fn blob(ty: Type, path: &str, offset: u64) -> Literal {
        Literal::new(
            ty,
            Lit::Blob {
                path: path.to_string(),
                offset,
            },
        )
    }

    /// Scalar leaves as i64, if they are all integers (or a single integer scalar).
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        if matches!(self.lit, Lit::Blob { .. }) {
            return None;
        }
        self.lit.leaves().iter().map(|l| l.as_i64()).collect()
    }

    /// Scalar leaves as f64.
    pub fn to_f64s(&self) -> Option<Vec<f64>> {
        if matches!(self.lit, Lit::Blob { .. }) {
            return None;
        }
        self.lit.leaves().iter().map(|l| l.as_f64()).collect()
    }

    pub fn to_bools(&self) -> Option<Vec<bool>> {
        self.lit
            .leaves()
            .iter()
            .map(|l| match l {
                Lit::Bool(b) => Some(*b),
                Lit::Int(i) => Some(*i != 0),
                _ => None,
            })
            .collect()
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.lit {
            Lit::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_scalar_i64(&self) -> Option<i64> {
        match &self.lit {
            Lit::List(v) if v.len() == 1 => v[0].as_i64(),
            l => l.as_i64(),
        }
    }

    pub fn as_scalar_bool(&self) -> Option<bool> {
        self.to_bools().filter(|v| v.len() == 1).map(|v| v[0])
    }

    pub fn as_scalar_f64(&self) -> Option<f64> {
        self.to_f64s().filter(|v| v.len() == 1).map(|v| v[0])
    }
}

/// An argument value: a literal, a reference to a variable, or a tuple of values (`values = (a, b)`).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Literal(Literal),
    Var(String),
    Tuple(Vec<Value>),
}

impl Value {
    pub fn var(name: &str) -> Value {
        Value::Var(name.to_string())
    }

    pub fn as_literal(&self) -> Option<&Literal> {
        match self {
            Value::Literal(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_var(&self) -> Option<&str> {
        match self {
            Value::Var(v) => Some(v),
            _ => None,
        }
    }
}
