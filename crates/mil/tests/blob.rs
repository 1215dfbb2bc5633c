//! Core ML weight blob files: the exact byte layout (64-byte storage header {count, version 2},
//! 64-byte metadata {0xDEADBEEF, dtype code, u64 size, u64 absolute data offset}, data padded to
//! 64), round trips of every blob dtype, `resolve` against a literal's type, and corrupt files
//! (truncated, bad sentinel, unknown dtype, offsets and sizes out of range) as errors, never panics.

use malus_mil::Weights;
use malus_mil::blob::{BlobDType, read_blob};
use malus_mil::error::BlobError;
use malus_mil::types::{DType, Dim, Type};
use malus_mil::value::{Lit, Literal};
use proptest::prelude::*;

const KEY: &str = "@model_path/weights/weight.bin";

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

/// The file of `two_blobs()`, written out by hand.
fn expected_two_blob_file() -> Vec<u8> {
    let mut f = Vec::new();
    // Storage header: count 2, version 2, 56 zero bytes.
    f.extend(le32(2));
    f.extend(le32(2));
    f.extend([0u8; 56]);
    assert_eq!(f.len(), 64);
    // Metadata of blob 0 at 64: fp16 (1), 6 bytes, data at 128.
    f.extend([0xEF, 0xBE, 0xAD, 0xDE]);
    f.extend(le32(1));
    f.extend(le64(6));
    f.extend(le64(128));
    f.extend([0u8; 40]);
    assert_eq!(f.len(), 128);
    // fp16 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, little-endian; padding to 192.
    f.extend([0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38]);
    f.extend([0u8; 58]);
    assert_eq!(f.len(), 192);
    // Metadata of blob 1 at 192: int8 (4), 5 bytes, data at 256.
    f.extend([0xEF, 0xBE, 0xAD, 0xDE]);
    f.extend(le32(4));
    f.extend(le64(5));
    f.extend(le64(256));
    f.extend([0u8; 40]);
    // int8 1, -1, 127, -128, 0; padding to 320.
    f.extend([0x01, 0xFF, 0x7F, 0x80, 0x00]);
    f.extend([0u8; 59]);
    assert_eq!(f.len(), 320);
    f
}

fn two_blobs() -> (Weights, u64, u64) {
    let mut w = Weights::new();
    let a = w.add_f16(KEY, &[1.0, -2.0, 0.5]);
    let b = w.add_i8(KEY, &[1, -1, 127, -128, 0]);
    (w, a, b)
}

fn file_of(w: &Weights, key: &str) -> Vec<u8> {
    w.files().find(|(k, _)| *k == key).unwrap().1.to_vec()
}

#[test]
fn two_blob_file_is_byte_exact() {
    let (w, a, b) = two_blobs();
    assert_eq!((a, b), (64, 192));
    let files: Vec<(&str, &[u8])> = w.files().collect();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, KEY);
    assert_eq!(files[0].1, expected_two_blob_file().as_slice());
    // And the reader agrees with the hand-written bytes.
    let f = expected_two_blob_file();
    let r0 = read_blob(&f, 64).unwrap();
    assert_eq!(r0.dtype, BlobDType::Fp16);
    assert_eq!(r0.data, &f[128..134]);
    assert_eq!(r0.to_f32(), vec![1.0, -2.0, 0.5]);
    let r1 = read_blob(&f, 192).unwrap();
    assert_eq!(r1.dtype, BlobDType::Int8);
    assert_eq!(r1.to_f32(), vec![1.0, -1.0, 127.0, -128.0, 0.0]);
}

#[test]
fn every_dtype_round_trips() {
    let mut w = Weights::new();
    let f16v = [0.0f32, -0.0, 1.0, 65504.0, -65504.0, 5.960_464_5e-8, 0.333_251_95];
    let f32v = [0.0f32, -1.5, f32::MAX, f32::MIN_POSITIVE, 1e-45, 3.25];
    let i8v: Vec<i8> = (-128..=127).collect();
    let u8v: Vec<u8> = (0..=255).collect();
    let o16 = w.add_f16(KEY, &f16v);
    let o32 = w.add_f32(KEY, &f32v);
    let oi8 = w.add_i8(KEY, &i8v);
    let ou8 = w.add_u8(KEY, &u8v);
    // Every record and every data block starts at a multiple of 64.
    for o in [o16, o32, oi8, ou8] {
        assert_eq!(o % 64, 0);
    }
    assert_eq!(o32, o16 + 64 + 64); // 14 bytes of fp16 pad to 64
    assert_eq!(oi8, o32 + 64 + 64); // 24 bytes
    assert_eq!(ou8, oi8 + 64 + 256); // 256 bytes
    let file = file_of(&w, KEY);
    assert_eq!(file.len() as u64, ou8 + 64 + 256);
    assert_eq!(
        u32::from_le_bytes(file[0..4].try_into().unwrap()),
        4,
        "blob count"
    );
    assert_eq!(u32::from_le_bytes(file[4..8].try_into().unwrap()), 2, "version");

    let r = w.read(KEY, o16).unwrap();
    assert_eq!((r.dtype, r.data.len()), (BlobDType::Fp16, 14));
    assert_eq!(r.to_f32(), f16v.to_vec());
    assert_eq!(r.to_f32()[1].to_bits(), (-0.0f32).to_bits());
    let r = w.read(KEY, o32).unwrap();
    assert_eq!(r.dtype, BlobDType::Fp32);
    assert_eq!(
        r.to_f32().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        f32v.map(f32::to_bits).to_vec()
    );
    let r = w.read(KEY, oi8).unwrap();
    assert_eq!(r.dtype, BlobDType::Int8);
    assert_eq!(r.to_f32(), i8v.iter().map(|&v| v as f32).collect::<Vec<_>>());
    let r = w.read(KEY, ou8).unwrap();
    assert_eq!(r.dtype, BlobDType::Uint8);
    assert_eq!(r.data, u8v.as_slice());
    // fp16 rounds to nearest even.
    let o = w.add_f16(KEY, &[1.0 + 2f32.powi(-11), 1.0 + 3.0 * 2f32.powi(-11), 1e9]);
    assert_eq!(
        w.read(KEY, o).unwrap().to_f32(),
        vec![1.0, 1.0 + 2f32.powi(-9), f32::INFINITY]
    );
}

#[test]
fn several_files_are_independent() {
    let mut w = Weights::new();
    assert!(w.is_empty());
    let ka = Weights::key("a.bin");
    let kb = Weights::key("sub/b.bin");
    assert_eq!(ka, "@model_path/weights/a.bin");
    let a0 = w.add_f32(&ka, &[1.0]);
    let b0 = w.add_f32(&kb, &[2.0, 3.0]);
    let a1 = w.add_u8(&ka, &[9; 65]);
    // Each file has its own header and offsets.
    assert_eq!((a0, b0, a1), (64, 64, 192));
    assert_eq!(w.read(&ka, a0).unwrap().to_f32(), vec![1.0]);
    assert_eq!(w.read(&kb, b0).unwrap().to_f32(), vec![2.0, 3.0]);
    assert_eq!(w.read(&ka, a1).unwrap().data, &[9u8; 65][..]);
    assert_eq!(file_of(&w, &ka).len(), 192 + 64 + 128);
    assert_eq!(u32::from_le_bytes(file_of(&w, &ka)[0..4].try_into().unwrap()), 2);
    assert_eq!(u32::from_le_bytes(file_of(&w, &kb)[0..4].try_into().unwrap()), 1);
    let keys: Vec<&str> = w.files().map(|(k, _)| k).collect();
    assert_eq!(keys, vec![ka.as_str(), kb.as_str()]);
    // Nothing of one file is readable through the other.
    assert!(w.read(&kb, a1).is_err());
    assert!(w.read("@model_path/weights/none.bin", 64).is_err());
}

#[test]
fn save_and_load_a_directory() {
    let (mut w, a, _) = two_blobs();
    w.add_f32(&Weights::key("other.bin"), &[4.0, 5.0]);
    let dir = std::env::temp_dir().join(format!("malus-mil-blob-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    w.save_dir(&dir).unwrap();
    assert_eq!(
        std::fs::read(dir.join("weight.bin")).unwrap(),
        expected_two_blob_file()
    );
    std::fs::write(dir.join("notes.txt"), b"ignored").unwrap();
    let back = Weights::load_dir(&dir).unwrap();
    assert_eq!(back, w);
    assert_eq!(back.read(KEY, a).unwrap().to_f32(), vec![1.0, -2.0, 0.5]);
    std::fs::remove_dir_all(&dir).unwrap();
    match Weights::load_dir(&dir) {
        Err(BlobError::Io { file, .. }) => assert!(file.contains("malus-mil-blob-test")),
        other => panic!("{other:?}"),
    }
}

fn blob_lit(d: DType, dims: &[usize], offset: u64) -> Literal {
    Literal::blob(Type::tensor(d, dims), KEY, offset)
}

#[track_caller]
fn corrupt(r: Result<impl std::fmt::Debug, BlobError>, what: &str) -> String {
    match r {
        Err(e @ BlobError::Corrupt { .. }) => {
            let s = e.to_string();
            assert!(s.contains(what), "{s} does not mention {what:?}");
            s
        }
        other => panic!("expected a corrupt-blob error mentioning {what:?}, got {other:?}"),
    }
}

#[test]
fn resolve_checks_the_literal_type() {
    let (w, a, b) = two_blobs();
    assert_eq!(
        w.resolve(&blob_lit(DType::Fp16, &[3], a)).unwrap().to_f32(),
        vec![1.0, -2.0, 0.5]
    );
    assert_eq!(
        w.resolve(&blob_lit(DType::Fp16, &[1, 3, 1], a))
            .unwrap()
            .data
            .len(),
        6
    );
    assert_eq!(w.resolve(&blob_lit(DType::Int8, &[5], b)).unwrap().data.len(), 5);
    // Dtype mismatch.
    let s = corrupt(w.resolve(&blob_lit(DType::Fp32, &[3], a)), "declares fp32");
    assert!(s.starts_with(KEY) && s.contains("offset 64"), "{s}");
    corrupt(w.resolve(&blob_lit(DType::Uint8, &[5], b)), "uint8");
    corrupt(w.resolve(&blob_lit(DType::Int32, &[1], b)), "int32");
    // Size mismatch: 4 fp16 need 8 bytes, the blob has 6.
    corrupt(w.resolve(&blob_lit(DType::Fp16, &[4], a)), "needs 8");
    corrupt(w.resolve(&blob_lit(DType::Fp16, &[2], a)), "needs 4");
    corrupt(w.resolve(&blob_lit(DType::Int8, &[6], b)), "holds 5 bytes");
    // A shape whose byte count overflows is a mismatch, not a panic.
    let huge = blob_lit(DType::Fp16, &[u32::MAX as usize, u32::MAX as usize, 3], a);
    corrupt(w.resolve(&huge), "more than fit in memory");
    let big = blob_lit(DType::Fp16, &[usize::MAX / 2 + 1], a);
    corrupt(w.resolve(&big), "more than fit in memory");
    // Unknown extents.
    let unknown = Literal::blob(
        Type::Tensor {
            dtype: DType::Fp16,
            shape: vec![Dim::Unknown],
        },
        KEY,
        a,
    );
    corrupt(w.resolve(&unknown), "fully known shape");
    // Pointing at the data instead of the metadata (a common mistake).
    corrupt(w.resolve(&blob_lit(DType::Fp16, &[3], 128)), "sentinel");
    // Not a blob at all, and a blob of a missing file.
    corrupt(
        w.resolve(&Literal::floats(DType::Fp16, &[1], &[1.0])),
        "not a BLOBFILE",
    );
    let other = Literal::blob(Type::tensor(DType::Fp16, &[3]), "@model_path/weights/x.bin", a);
    corrupt(w.resolve(&other), "no such weight file");
    let not_tensor = Literal::new(
        Type::Tuple(vec![]),
        Lit::Blob {
            path: KEY.into(),
            offset: a,
        },
    );
    corrupt(w.resolve(&not_tensor), "not a BLOBFILE");
}

fn patched(f: &[u8], at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut g = f.to_vec();
    g[at..at + bytes.len()].copy_from_slice(bytes);
    g
}

#[track_caller]
fn read_err(f: &[u8], offset: u64, what: &str) {
    match read_blob(f, offset) {
        Err(m) => assert!(m.contains(what), "{m} does not mention {what:?}"),
        Ok(b) => panic!("read {b:?}; expected an error mentioning {what:?}"),
    }
}

#[test]
fn corrupt_files_are_errors() {
    let f = expected_two_blob_file();
    // Truncated: shorter than the header, cut in the metadata, cut in the data.
    read_err(&f[..0], 64, "shorter than the 64-byte storage header");
    read_err(&f[..63], 64, "storage header");
    read_err(&f[..64], 64, "past the end");
    read_err(&f[..127], 64, "past the end");
    read_err(&f[..128], 64, "outside the file");
    read_err(&f[..133], 64, "outside the file");
    assert!(read_blob(&f[..134], 64).is_ok(), "the padding is not needed");
    read_err(&f[..255], 192, "past the end");
    read_err(&f[..260], 192, "outside the file");
    // Wrong sentinel.
    read_err(&patched(&f, 64, &[0xDE, 0xAD, 0xBE, 0xEF]), 64, "0xefbeadde");
    read_err(&patched(&f, 192, &[0, 0, 0, 0]), 192, "sentinel");
    // Unknown dtype codes.
    for code in [0u32, 5, 6, 0xFFFF_FFFF] {
        read_err(
            &patched(&f, 68, &le32(code)),
            64,
            &format!("unknown dtype code {code}"),
        );
    }
    // Offsets: into the header, past the end, not a record, beyond usize.
    read_err(&f, 0, "storage header");
    read_err(&f, 63, "storage header");
    read_err(&f, 320, "past the end");
    read_err(&f, 300, "past the end");
    read_err(&f, u64::MAX, "");
    read_err(&f, 1 << 63, "");
    read_err(&f, 128, "sentinel");
    // Data offset past the end, overlapping its own metadata, or pointing into the header.
    read_err(&patched(&f, 80, &le64(320)), 64, "outside the file");
    read_err(&patched(&f, 80, &le64(96)), 64, "overlaps its metadata");
    read_err(&patched(&f, 80, &le64(64)), 64, "overlaps its metadata");
    read_err(&patched(&f, 80, &le64(0)), 64, "overlaps its metadata");
    // Huge sizes, and sizes whose end overflows.
    read_err(&patched(&f, 72, &le64(u64::MAX)), 64, "outside the file");
    read_err(&patched(&f, 72, &le64(1 << 63)), 64, "outside the file");
    read_err(&patched(&f, 72, &le64(193)), 64, "outside the file");
    read_err(
        &patched(&patched(&f, 72, &le64(2)), 80, &le64(u64::MAX)),
        64,
        "outside the file",
    );
    read_err(
        &patched(&patched(&f, 72, &le64(u64::MAX)), 80, &le64(u64::MAX)),
        64,
        "outside the file",
    );
    // A size that is not a whole number of fp16 elements.
    read_err(&patched(&f, 72, &le64(5)), 64, "whole number");
    // An empty blob is fine.
    let zero = patched(&f, 72, &le64(0));
    let empty = read_blob(&zero, 64).unwrap();
    assert!(empty.data.is_empty() && empty.to_f32().is_empty());
    // Reading through `Weights` names the file and offset.
    let mut w = Weights::new();
    w.insert_file(KEY, patched(&f, 68, &le32(9)));
    let s = corrupt(w.read(KEY, 64), "unknown dtype code 9");
    assert!(s.starts_with(&format!("{KEY}: blob at offset 64:")), "{s}");
}

/// Appending to a file that was inserted as-is (possibly garbage) does not panic, and the new blob
/// reads back.
#[test]
fn appending_to_inserted_files() {
    let mut w = Weights::new();
    for (i, bytes) in [
        vec![],
        vec![1, 2, 3],
        vec![0xFF; 64],
        vec![0xAB; 100],
        expected_two_blob_file(),
    ]
    .into_iter()
    .enumerate()
    {
        let key = Weights::key(&format!("f{i}.bin"));
        w.insert_file(&key, bytes.clone());
        let at = w.add_f32(&key, &[7.0, 8.0]);
        assert_eq!(at % 64, 0);
        assert!(at as usize >= bytes.len().max(64));
        assert_eq!(w.read(&key, at).unwrap().to_f32(), vec![7.0, 8.0]);
        let file = file_of(&w, &key);
        assert_eq!(file.len() % 64, 0);
        // The count went up by one (saturating at u32::MAX for the all-0xFF header).
        let mut head = [0u8; 4];
        for (h, b) in head.iter_mut().zip(&bytes) {
            *h = *b;
        }
        let before = u32::from_le_bytes(head);
        assert_eq!(
            u32::from_le_bytes(file[0..4].try_into().unwrap()),
            before.saturating_add(1)
        );
    }
    // A valid file keeps its old blobs readable.
    let key = Weights::key("f4.bin");
    assert_eq!(w.read(&key, 64).unwrap().to_f32(), vec![1.0, -2.0, 0.5]);
    assert_eq!(w.read(&key, 192).unwrap().data.len(), 5);
}

fn mutation() -> impl Strategy<Value = (usize, u8, u8)> {
    (any::<usize>(), 0u8..4, any::<u8>())
}

fn mutate(f: &[u8], muts: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut g = f.to_vec();
    for &(at, kind, byte) in muts {
        if g.is_empty() {
            break;
        }
        let i = at % g.len();
        match kind {
            0 => g[i] = byte,
            1 => g[i] ^= 1 << (byte % 8),
            2 => g.truncate(i),
            _ => {
                // Write a 64-bit field of extreme value at i.
                let v = [u64::MAX, 1 << 63, 0, 64, 320][byte as usize % 5].to_le_bytes();
                for (k, b) in v.iter().enumerate() {
                    if let Some(x) = g.get_mut(i + k) {
                        *x = *b;
                    }
                }
            }
        }
    }
    g
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random mutations of a valid file: every read is a blob consistent with its record, or an
    /// error; never a panic.
    #[test]
    fn mutated_files_never_panic(
        muts in prop::collection::vec(mutation(), 1..6),
        offset in prop_oneof![Just(64u64), Just(192), any::<u64>(), 0u64..400],
    ) {
        let f = mutate(&expected_two_blob_file(), &muts);
        if let Ok(b) = read_blob(&f, offset) {
            let at = offset as usize;
            let size = u64::from_le_bytes(f[at + 8..at + 16].try_into().unwrap());
            let data_at = u64::from_le_bytes(f[at + 16..at + 24].try_into().unwrap());
            prop_assert_eq!(b.data.len() as u64, size);
            prop_assert!(data_at >= offset + 64);
            prop_assert_eq!(b.data.as_ptr(), f[data_at as usize..].as_ptr());
            prop_assert_eq!(b.to_f32().len() * b.dtype.dtype().size_bytes(), b.data.len());
        }
        let mut w = Weights::new();
        w.insert_file(KEY, f);
        let _ = w.read(KEY, offset);
        for (d, dims) in [(DType::Fp16, vec![3]), (DType::Int8, vec![5]), (DType::Fp32, vec![usize::MAX])] {
            let _ = w.resolve(&blob_lit(d, &dims, offset));
        }
        let at = w.add_u8(KEY, &[1, 2, 3]);
        prop_assert_eq!(w.read(KEY, at).unwrap().data, &[1u8, 2, 3][..]);
    }

    /// Arbitrary bytes and offsets.
    #[test]
    fn arbitrary_bytes_never_panic(f in prop::collection::vec(any::<u8>(), 0..600), offset in any::<u64>()) {
        let _ = read_blob(&f, offset);
        let _ = read_blob(&f, offset % 700);
        let _ = read_blob(&f, 64);
    }

    /// Any sequence of blobs of any dtype round-trips, at 64-aligned offsets.
    #[test]
    fn random_blob_sequences_round_trip(blobs in prop::collection::vec((0u8..4, prop::collection::vec(any::<u8>(), 0..200)), 1..8)) {
        let mut w = Weights::new();
        let mut expect = Vec::new();
        for (kind, bytes) in &blobs {
            let (dtype, data) = match kind {
                0 => (BlobDType::Fp16, bytes[..bytes.len() / 2 * 2].to_vec()),
                1 => (BlobDType::Fp32, bytes[..bytes.len() / 4 * 4].to_vec()),
                2 => (BlobDType::Int8, bytes.clone()),
                _ => (BlobDType::Uint8, bytes.clone()),
            };
            let at = w.add_raw(KEY, dtype, &data);
            prop_assert_eq!(at % 64, 0);
            expect.push((at, dtype, data));
        }
        let file = file_of(&w, KEY);
        prop_assert_eq!(file.len() % 64, 0);
        prop_assert_eq!(u32::from_le_bytes(file[0..4].try_into().unwrap()) as usize, blobs.len());
        for (at, dtype, data) in expect {
            let r = w.read(KEY, at).unwrap();
            prop_assert_eq!(r.dtype, dtype);
            prop_assert_eq!(r.data, data.as_slice());
            let n = data.len() / dtype.dtype().size_bytes();
            prop_assert!(w.resolve(&blob_lit(dtype.dtype(), &[n], at)).is_ok());
        }
    }
}
