//! Arbitrary bytes as a weight blob file: every read yields a blob or an error, never a panic, and
//! a blob that reads is consistent with its metadata record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use malus_mil::Weights;
use malus_mil::blob::read_blob;
use malus_mil::types::{DType, Type};
use malus_mil::value::Literal;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose the offset to read at; the rest is the file.
    if data.len() < 8 {
        return;
    }
    let offset = u64::from_le_bytes(data[..8].try_into().unwrap());
    let file = &data[8..];
    for off in [offset, 64, offset % (file.len() as u64 + 1)] {
        if let Ok(b) = read_blob(file, off) {
            let at = off as usize;
            let size = u64::from_le_bytes(file[at + 8..at + 16].try_into().unwrap());
            assert_eq!(b.data.len() as u64, size);
            let n = b.to_f32().len();
            assert_eq!(n * b.dtype.dtype().size_bytes(), b.data.len());
        }
    }
    let mut w = Weights::new();
    let key = Weights::key("w.bin");
    w.insert_file(&key, file.to_vec());
    let _ = w.read(&key, offset);
    for dims in [vec![1usize], vec![(offset % 1024) as usize], vec![u32::MAX as usize; 3]] {
        for d in [DType::Fp16, DType::Fp32, DType::Int8, DType::Uint8, DType::Int32] {
            let lit = Literal::blob(Type::tensor(d, &dims), &key, offset);
            let _ = w.resolve(&lit);
        }
    }
    // Appending to a file that came from anywhere must not panic either.
    let at = w.add_f16(&key, &[1.0, -2.0]);
    assert!(w.read(&key, at).is_ok());
});
