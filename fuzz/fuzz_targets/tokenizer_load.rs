//! Arbitrary bytes as a `tokenizer.json`, loaded by `Tok::load`: a tokenizer or an error, never a
//! panic. A tokenizer that loads encodes and decodes short texts (and decodes out-of-range ids)
//! without panicking; one of the shape malus trains (byte-level BPE, no normalizer, truncation or
//! padding, every byte in the vocabulary, no id shared) decodes exactly what it encodes.
#![no_main]

#[path = "scratch.rs"]
mod scratch;

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use malus::data::Tok;
use serde_json::Value;

const TEXTS: [&str; 2] = [
    "It is a truth universally acknowledged, that a single man",
    "  Hello,\tworld!\n\n123 4567 x-y_z \"quoted\" (a) [b] {c} ~`@#$%^&*+=|\\/<>?;:' ",
];

/// GPT-2's byte-to-character table (what the ByteLevel pre-tokenizer maps bytes to).
fn byte_chars() -> Vec<char> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).collect();
    printable.extend(0xA1..=0xAC);
    printable.extend(0xAE..=0xFF);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable.contains(&b) {
                char::from_u32(b).unwrap()
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap()
            }
        })
        .collect()
}

fn is(v: &Value, key: &str, want: &str) -> bool {
    v.get(key).and_then(Value::as_str) == Some(want)
}

fn null_or_absent(v: &Value, key: &str) -> bool {
    v.get(key).is_none_or(Value::is_null)
}

/// A byte-level BPE as `malus::data::tokenizer::train` writes it, up to its vocabulary.
fn malus_shaped(v: &Value) -> bool {
    let model = &v["model"];
    let Some(vocab) = model.get("vocab").and_then(Value::as_object) else {
        return false;
    };
    let ids: Vec<u64> = vocab.values().filter_map(Value::as_u64).collect();
    let unique: HashSet<u64> = ids.iter().copied().collect();
    let added = v.get("added_tokens").and_then(Value::as_array);
    let added_ok = added.is_none_or(|a| {
        a.iter().all(|t| {
            let content = t.get("content").and_then(Value::as_str).unwrap_or("");
            let id = t.get("id").and_then(Value::as_u64);
            !content.is_empty()
                && TEXTS.iter().all(|s| !s.contains(content))
                && id.is_some_and(|id| {
                    !unique.contains(&id) || vocab.get(content).and_then(Value::as_u64) == Some(id)
                })
        })
    });
    let byte_level = |p: &Value| is(p, "type", "ByteLevel");
    is(model, "type", "BPE")
        && null_or_absent(model, "dropout")
        && null_or_absent(model, "unk_token")
        && null_or_absent(model, "continuing_subword_prefix")
        && null_or_absent(model, "end_of_word_suffix")
        && model.get("byte_fallback").is_none_or(|b| b == false)
        && null_or_absent(v, "normalizer")
        && null_or_absent(v, "truncation")
        && null_or_absent(v, "padding")
        && byte_level(&v["pre_tokenizer"])
        && v["pre_tokenizer"].get("add_prefix_space") == Some(&Value::Bool(false))
        && byte_level(&v["decoder"])
        && (null_or_absent(v, "post_processor") || byte_level(&v["post_processor"]))
        && ids.len() == vocab.len()
        && unique.len() == ids.len()
        && byte_chars().iter().all(|c| vocab.contains_key(&c.to_string()))
        && added_ok
}

fuzz_target!(|data: &[u8]| {
    let json = serde_json::from_slice::<Value>(data);
    scratch::let_malus_catch_panics();
    let path = scratch::path("tok", ".json");
    std::fs::write(path, data).unwrap();
    let Ok(tok) = Tok::load(path) else {
        return;
    };
    let n = tok.vocab_size();
    let _ = tok.eot();
    let _ = tok.decode(&[0, 1, n as u32, n as u32 + 1, u32::MAX]);
    let round_trips = json.is_ok_and(|v| malus_shaped(&v));
    for text in TEXTS {
        let Ok(ids) = tok.encode(text) else {
            continue;
        };
        let back = tok.decode(&ids);
        if round_trips {
            assert_eq!(back.expect("decoding what was encoded"), text, "ids {ids:?}");
        }
    }
});
