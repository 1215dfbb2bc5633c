//! NumPy `.npy` files (version 1.0/2.0, little-endian, C order): read as f32, write f32. Used by
//! `malus mil run` for inputs and outputs.

use std::path::Path;

use anyhow::{Context, Result, bail, ensure};

/// A dense f32 array.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Serialises an array as `.npy` bytes (`<f4`, C order).
pub fn to_bytes(a: &Array) -> Vec<u8> {
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &a.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

pub fn write(path: &Path, a: &Array) -> Result<()> {
    malus::fsutil::write_atomic(path, &to_bytes(a))
}

fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'"))? + key.len() + 2;
    let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
    Some(rest)
}

/// Parses `.npy` bytes of dtype f2, f4, f8, i4, i8 or u1/i1 into f32; `name` is used in errors.
pub fn from_bytes(b: &[u8], name: &str) -> Result<Array> {
    ensure!(
        b.len() >= 10 && &b[..6] == b"\x93NUMPY",
        "{name}: not a .npy file"
    );
    let (hlen, hstart) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 => {
            ensure!(b.len() >= 12, "{name}: truncated header");
            (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
        }
        v => bail!("{name}: unsupported .npy version {v}"),
    };
    let header = b
        .get(hstart..hstart + hlen)
        .map(String::from_utf8_lossy)
        .with_context(|| format!("{name}: truncated header"))?;
    let descr = field(&header, "descr")
        .and_then(|r| r.split('\'').nth(1))
        .with_context(|| format!("{name}: no descr"))?;
    ensure!(
        field(&header, "fortran_order").is_some_and(|r| r.starts_with("False")),
        "{name}: Fortran-order arrays are not supported"
    );
    let shape_txt = field(&header, "shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .with_context(|| format!("{name}: no shape"))?;
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .with_context(|| format!("{name}: bad shape ({shape_txt})"))
        })
        .collect::<Result<_>>()?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .with_context(|| format!("{name}: shape too large"))?;
    let body = &b[hstart + hlen..];
    let (size, conv): (usize, fn(&[u8]) -> f32) = match descr {
        "<f4" => (4, |c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        "<f8" => (8, |c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32),
        "<f2" => (2, |c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()),
        "<i4" => (4, |c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        "<i8" => (8, |c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f32),
        "|u1" => (1, |c| c[0] as f32),
        "|i1" => (1, |c| c[0] as i8 as f32),
        d => bail!("{name}: dtype {d} is not supported (f2, f4, f8, i1, u1, i4, i8, little-endian)"),
    };
    ensure!(
        body.len() == n.saturating_mul(size),
        "{name}: {} data bytes for shape {shape:?} of {descr}",
        body.len()
    );
    Ok(Array {
        shape,
        data: body.chunks_exact(size).map(conv).collect(),
    })
}

pub fn read(path: &Path) -> Result<Array> {
    let b = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    from_bytes(&b, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_alignment() {
        let a = Array {
            shape: vec![2, 3],
            data: vec![1.0, -2.5, 3.0, 0.0, 1e-3, 7.0],
        };
        let b = to_bytes(&a);
        // The header (magic + length + dict) is padded to a multiple of 64 bytes.
        assert_eq!((10 + u16::from_le_bytes([b[8], b[9]]) as usize) % 64, 0);
        assert!(
            String::from_utf8_lossy(&b[10..])
                .starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }")
        );
        assert_eq!(from_bytes(&b, "x").unwrap(), a);
        let v = Array {
            shape: vec![4],
            data: vec![1.0; 4],
        };
        assert!(String::from_utf8_lossy(&to_bytes(&v)).contains("(4,)"));
    }

    #[test]
    fn bad_files_are_errors() {
        assert!(from_bytes(b"hello", "h").is_err());
        let mut b = to_bytes(&Array {
            shape: vec![3],
            data: vec![1.0; 3],
        });
        b.pop();
        assert!(
            from_bytes(&b, "t")
                .unwrap_err()
                .to_string()
                .contains("data bytes")
        );
        let f = to_bytes(&Array {
            shape: vec![1],
            data: vec![1.0],
        });
        let s = String::from_utf8_lossy(&f).replace("False", "True ");
        assert!(from_bytes(s.as_bytes(), "f").is_err());
    }
}
