//! JSONL instruction data, chat templates and loss masks, end to end: records → tokens + mask
//! → token file → windows.

use std::path::PathBuf;
use std::process::Command;

use malus::data::chat::ChatTemplate;
use malus::data::instruct::{self, Record};
use malus::data::shards::Format;
use malus::data::{Dataset, Tok, TokenFile};
use serde_json::json;

mod common;
use common::model_dir;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("malus-instruct-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("crates/malus/tests/fixtures/chat").join(name)).unwrap()
}

/// The decoded runs of tokens that count.
fn counted(tok: &Tok, ids: &[u32], mask: &[bool]) -> Vec<String> {
    let mut runs: Vec<Vec<u32>> = Vec::new();
    for (i, (&id, &m)) in ids.iter().zip(mask).enumerate() {
        match (m, i > 0 && mask[i - 1]) {
            (true, true) => runs.last_mut().unwrap().push(id),
            (true, false) => runs.push(vec![id]),
            _ => {}
        }
    }
    runs.iter().map(|r| tok.decode(r).unwrap()).collect()
}

#[test]
fn jsonl_kinds_and_malformed_lines() {
    let d = tmp("jsonl");
    let tok = Tok::load(&repo().join("data/tokenizer.json")).unwrap();
    let f = d.join("a.jsonl");
    for (body, want) in [
        (
            "{\"text\": \"one\"}\n{\"text\": \"two\", \"id\": 2}\n",
            Record::Text("two".into()),
        ),
        (
            "{\"prompt\": \"Q\", \"completion\": \"A\"}\n{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n",
            Record::Completion {
                prompt: "2+2=".into(),
                completion: "4".into(),
            },
        ),
        (
            "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}]}\n",
            Record::Chat(vec![json!({"role": "system", "content": "s"})]),
        ),
    ] {
        std::fs::write(&f, body).unwrap();
        let r = instruct::read_records(&f).unwrap();
        assert_eq!((r.len(), r[1].0, &r[1].1), (2, 2, &want));
    }
    let out = d.join("o.bin");
    for (bad, want) in [
        ("{\"text\": \"a\"", "not JSON"),
        ("{\"prompt\": \"a\"}", "missing key `completion`"),
        (
            "{\"text\": [\"a\"]}",
            "wrong type: `text` is a list, not a string",
        ),
        (
            "{\"messages\": [{\"role\": \"narrator\", \"content\": \"a\"}]}",
            "message 1: unknown role `narrator`",
        ),
        ("{\"messages\": []}", "empty `messages`"),
        ("{\"text\": \"\"}", "empty `text`"),
    ] {
        std::fs::write(&f, format!("{{\"text\": \"ok\"}}\n\n{bad}\n")).unwrap();
        let e = format!(
            "{:#}",
            instruct::prepare(&[&f], &tok, None, false, &out).unwrap_err()
        );
        assert!(
            e.starts_with(&format!("{}:3: {want}", f.display())),
            "want {want:?}, got {e}"
        );
    }
    // Chat records without a template.
    std::fs::write(&f, "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n").unwrap();
    let e = format!(
        "{:#}",
        instruct::prepare(&[&f], &tok, None, true, &out).unwrap_err()
    );
    assert!(
        e.contains("a.jsonl:1: messages records need a chat template"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn chatml_renders_a_two_turn_conversation() {
    let t = ChatTemplate::new(&fixture("chatml.jinja"), None, None).unwrap();
    let msgs = [
        json!({"role": "user", "content": "What is 2+2?"}),
        json!({"role": "assistant", "content": "4."}),
        json!({"role": "user", "content": "And 3+3?"}),
        json!({"role": "assistant", "content": "6.", "tool_calls": [{"name": "add", "arguments": {"b": 3, "a": 3}}]}),
    ];
    let want = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n\
                <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
                <|im_start|>assistant\n4.<|im_end|>\n\
                <|im_start|>user\nAnd 3+3?<|im_end|>\n\
                <|im_start|>assistant\n6.\n<tool_call>\n{\"arguments\": {\"a\": 3, \"b\": 3}, \"name\": \"add\"}\n</tool_call><|im_end|>\n";
    assert_eq!(t.render(&msgs, false).unwrap(), want);
    assert_eq!(
        t.render(&msgs[..1], true).unwrap(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn prompt_masks_count_exactly_the_completion() {
    let d = tmp("completion");
    let tok = Tok::load(&repo().join("data/tokenizer.json")).unwrap();
    let r = Record::Completion {
        prompt: "The capital of France is".into(),
        completion: " Paris.".into(),
    };
    let (ids, mask) = instruct::encode_record(&r, &tok, None, true).unwrap();
    let p = tok.encode("The capital of France is").unwrap();
    let c = tok.encode(" Paris.").unwrap();
    assert_eq!(
        ids,
        [&p[..], &c[..], &[0]].concat(),
        "prompt, completion, end of text"
    );
    assert_eq!(mask, [vec![false; p.len()], vec![true; c.len() + 1]].concat());
    // Decoding skips <|endoftext|>: the counted text is the completion.
    assert_eq!(counted(&tok, &ids, &mask), vec![" Paris."]);
    let (ids2, mask2) = instruct::encode_record(&r, &tok, None, false).unwrap();
    assert_eq!((ids2, mask2), (ids, vec![true; mask.len()]));

    // With a chat template: [user: prompt, assistant: completion].
    let m = model_dir(&d, &fixture("chatml.jinja"), "<s>", "<|im_end|>");
    let tok = Tok::load(&m).unwrap();
    let t = ChatTemplate::load(&m, None).unwrap().unwrap();
    let (ids, mask) = instruct::encode_record(&r, &tok, Some(&t), true).unwrap();
    assert_eq!(counted(&tok, &ids, &mask), vec![" Paris.<|im_end|>\n"]);
    let n = mask.iter().filter(|&&b| b).count();
    assert_eq!(ids[ids.len() - n..], tok.encode(" Paris.<|im_end|>\n").unwrap());
    assert!(mask[..ids.len() - n].iter().all(|&b| !b));
    std::fs::remove_dir_all(&d).unwrap();
}

/// A three-turn conversation through each fixture template: what counts is the assistant
/// contents, each with the template's end-of-turn marker.
#[test]
fn conversation_masks_count_the_assistant_turns() {
    let d = tmp("chat");
    let conv = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello. "},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Fine, thanks."},
        {"role": "user", "content": "Bye."},
        {"role": "assistant", "content": "Goodbye!"},
    ]});
    let jsonl = d.join("chat.jsonl");
    std::fs::write(&jsonl, format!("{conv}\n{conv}\n")).unwrap();
    for (file, bos, eos, want) in [
        (
            "chatml.jinja",
            "<s>",
            "<|im_end|>",
            [
                "Hello. <|im_end|>\n",
                "Fine, thanks.<|im_end|>\n",
                "Goodbye!<|im_end|>\n",
            ],
        ),
        (
            "llama3.jinja",
            "<|begin_of_text|>",
            "<|eot_id|>",
            [
                "Hello.<|eot_id|>",
                "Fine, thanks.<|eot_id|>",
                "Goodbye!<|eot_id|>",
            ],
        ),
        (
            "mistral.jinja",
            "<s>",
            "</s>",
            ["Hello. </s>", "Fine, thanks.</s>", "Goodbye!</s>"],
        ),
    ] {
        let m = model_dir(&d, &fixture(file), bos, eos);
        let tok = Tok::load(&m).unwrap();
        let t = ChatTemplate::load(&m, None).unwrap().unwrap();
        let Record::Chat(msgs) = instruct::parse_record(&conv.to_string()).unwrap() else {
            panic!()
        };
        let (ids, mask) = instruct::encode_record(&Record::Chat(msgs.clone()), &tok, Some(&t), true).unwrap();
        assert_eq!(counted(&tok, &ids, &mask), want, "{file}");
        // The pieces are the whole rendering.
        assert_eq!(
            tok.decode(&ids).unwrap(),
            t.render(&msgs, false).unwrap(),
            "{file}"
        );

        // Two records in a file: packed, separated by <|endoftext|> (which does not count).
        let out = d.join("chat.bin");
        let s = instruct::prepare(&[&jsonl], &tok, Some(&t), true, &out).unwrap();
        let per: usize = want.iter().map(|w| tok.encode(w).unwrap().len()).sum();
        assert_eq!(
            (s.records, s.tokens, s.counted, s.masked),
            (2, 2 * ids.len() + 1, 2 * per, true)
        );
        assert_eq!(s.format, Format::Headed { width: 2, mask: true });
        let f = TokenFile::open(&out).unwrap();
        assert_eq!(f.window(ids.len() as u64, 1, tok.vocab_size()).unwrap(), vec![0]);
        assert_eq!(
            f.mask(0, ids.len() + 1).unwrap().unwrap(),
            [&mask[..], &[false]].concat()
        );

        // Without --mask-prompt: no mask, every target counts.
        let s = instruct::prepare(&[&jsonl], &tok, Some(&t), false, &out).unwrap();
        assert_eq!(
            (s.tokens, s.counted, s.masked, s.format),
            (2 * ids.len() + 1, s.tokens, false, Format::Raw)
        );
        let ds = Dataset::new(TokenFile::open(&out).unwrap(), tok.vocab_size(), 16, 0.1).unwrap();
        let w = ds.window(3, 16).unwrap();
        assert_eq!((w.weights.as_ref(), w.loss_weights()), (None, vec![1.0; 16]));
    }
    // The Mistral template refuses a conversation that does not alternate, naming the line.
    let m = model_dir(&d, &fixture("mistral.jinja"), "<s>", "</s>");
    let (tok, t) = (
        Tok::load(&m).unwrap(),
        ChatTemplate::load(&m, None).unwrap().unwrap(),
    );
    std::fs::write(
        &jsonl,
        format!(
            "{conv}\n{}\n",
            json!({"messages": [{"role": "assistant", "content": "x"}]})
        ),
    )
    .unwrap();
    let e = format!(
        "{:#}",
        instruct::prepare(&[&jsonl], &tok, Some(&t), true, &d.join("x.bin")).unwrap_err()
    );
    assert!(
        e.contains("chat.jsonl:2") && e.contains("roles must alternate"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn llama3_template_dates_today() {
    let t = ChatTemplate::new(&fixture("llama3.jinja"), Some("<|begin_of_text|>".into()), None).unwrap();
    let out = t
        .render(&[json!({"role": "user", "content": " hi "})], true)
        .unwrap();
    let (head, rest) = out.split_once("Today Date: ").unwrap();
    assert_eq!(
        head,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
    );
    let (date, rest) = rest.split_once("\n\n").unwrap();
    assert_eq!(date.len(), 11, "{date}"); // "07 Dec 2026"
    assert_eq!(
        rest,
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn data_prepare_command_writes_a_masked_file() {
    let d = tmp("cli");
    let m = model_dir(&d, &fixture("chatml.jinja"), "<s>", "<|im_end|>");
    let f = d.join("pc.jsonl");
    std::fs::write(&f, "{\"prompt\": \"Say yes.\", \"completion\": \"Yes.\"}\n{\"prompt\": \"Say no.\", \"completion\": \"No.\"}\n").unwrap();
    let out = d.join("pc.bin");
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_malus"))
            .args(["data", "prepare", "--tokenizer"])
            .arg(&m)
            .arg("-o")
            .arg(&out)
            .args(extra)
            .arg(&f)
            .output()
            .unwrap()
    };
    let o = run(&["--mask-prompt"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tok = Tok::load(&m).unwrap();
    let t = ChatTemplate::load(&m, None).unwrap().unwrap();
    let r = instruct::read_records(&f).unwrap();
    let (a, ma) = instruct::encode_record(&r[0].1, &tok, Some(&t), true).unwrap();
    let (b, mb) = instruct::encode_record(&r[1].1, &tok, Some(&t), true).unwrap();
    let n = a.len() + b.len() + 1;
    let c = ma.iter().chain(&mb).filter(|&&x| x).count();
    let want = format!(
        "wrote {} (2 records, {n} tokens, {:.1}% of them count in the loss)\n",
        out.display(),
        100.0 * c as f64 / n as f64
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), want);
    assert!(TokenFile::open(&out).unwrap().has_mask());
    // An override template; and flags that only JSONL takes.
    let o = run(&[
        "--chat-template",
        repo()
            .join("crates/malus/tests/fixtures/chat/mistral.jinja")
            .to_str()
            .unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let f = TokenFile::open(&out).unwrap();
    let ids = f.window(0, f.len as usize, tok.vocab_size()).unwrap();
    // bos/eos still come from the model directory; decoding drops the <|endoftext|> between
    // the records.
    assert_eq!(
        tok.decode(&ids).unwrap(),
        "<s>[INST] Say yes. [/INST]Yes.<|im_end|><s>[INST] Say no. [/INST]No.<|im_end|>"
    );
    let txt = d.join("a.txt");
    std::fs::write(&txt, "plain text").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_malus"))
        .args(["data", "prepare", "--mask-prompt", "-o"])
        .arg(&out)
        .arg(&txt)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("for .jsonl inputs"));
    std::fs::remove_dir_all(&d).unwrap();
}
