//! Instruction data as JSONL, one record a line, all lines of a file one kind:
//! `{"text": …}`, `{"prompt": …, "completion": …}` or `{"messages": [{"role": …, "content": …},
//! …]}` (other keys are ignored; message keys other than role and content are passed to the
//! chat template). Records become tokens and a loss mask (docs/data.md), packed into one token
//! file.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Map, Value as Json, json};

use super::chat::ChatTemplate;
use super::shards::{self, Format};
use super::{Tok, input};

/// The roles a message may have.
pub const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// One JSONL record.
#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    /// Plain text: every token counts.
    Text(String),
    /// A prompt and its completion: with `--mask-prompt`, only the completion counts.
    Completion { prompt: String, completion: String },
    /// A conversation (objects with string `role` and `content`): with `--mask-prompt`, only
    /// the assistant turns count.
    Chat(Vec<Json>),
}

impl Record {
    /// The kind, as errors name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Text(_) => "text",
            Record::Completion { .. } => "prompt/completion",
            Record::Chat(_) => "messages",
        }
    }
}

/// Whether a path names a JSONL file (by its extension, `.jsonl`).
pub fn is_jsonl(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn string<'a>(obj: &'a Map<String, Json>, key: &str, at: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        None => Err(format!("{at}missing key `{key}`")),
        Some(Json::String(s)) => Ok(s),
        Some(v) => Err(format!(
            "{at}wrong type: `{key}` is {}, not a string",
            type_name(v)
        )),
    }
}

/// Parses one line; the error says what is wrong (without the file and line).
pub fn parse_record(line: &str) -> Result<Record, String> {
    let v: Json = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Json::Object(obj) = v else {
        return Err(format!("not a JSON object but {}", type_name(&v)));
    };
    let has = |k: &str| obj.contains_key(k);
    let kinds = [has("text"), has("prompt") || has("completion"), has("messages")];
    match kinds.iter().filter(|&&k| k).count() {
        0 => {
            return Err(
                "missing key: a record needs `text`, `prompt` and `completion`, or `messages`".into(),
            );
        }
        1 => {}
        _ => return Err(
            "ambiguous: a record has keys of more than one kind (`text`, `prompt`/`completion`, `messages`)"
                .into(),
        ),
    }
    if kinds[0] {
        let text = string(&obj, "text", "")?;
        if text.is_empty() {
            return Err("empty `text`".into());
        }
        return Ok(Record::Text(text.into()));
    }
    if kinds[1] {
        let prompt = string(&obj, "prompt", "")?.to_string();
        let completion = string(&obj, "completion", "")?.to_string();
        if completion.is_empty() {
            return Err("empty `completion`".into());
        }
        return Ok(Record::Completion { prompt, completion });
    }
    let list = match &obj["messages"] {
        Json::Array(list) => list,
        v => return Err(format!("wrong type: `messages` is {}, not a list", type_name(v))),
    };
    if list.is_empty() {
        return Err("empty `messages`".into());
    }
    for (i, m) in list.iter().enumerate() {
        let at = format!("message {}: ", i + 1);
        let Json::Object(m) = m else {
            return Err(format!("{at}wrong type: {}, not an object", type_name(m)));
        };
        let role = string(m, "role", &at)?;
        if !ROLES.contains(&role) {
            return Err(format!(
                "{at}unknown role `{role}` (roles are {})",
                ROLES.join(", ")
            ));
        }
        string(m, "content", &at)?;
    }
    Ok(Record::Chat(list.clone()))
}

/// The records of a JSONL file with their line numbers (1-based; blank lines are skipped).
/// Errors name the file and the line.
pub fn read_records(path: &Path) -> Result<Vec<(usize, Record)>> {
    let text = input::read_text(path, "instruction data")?;
    let p = path.display();
    let mut records: Vec<(usize, Record)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let r = parse_record(line).map_err(|e| anyhow!("{p}:{}: {e}", i + 1))?;
        if let Some((n, first)) = records.first() {
            ensure!(
                first.kind() == r.kind(),
                "{p}:{}: a {} record in a file of {} records (line {n})",
                i + 1,
                r.kind(),
                first.kind()
            );
        }
        records.push((i + 1, r));
    }
    ensure!(!records.is_empty(), "instruction data {p} has no records");
    Ok(records)
}

/// A record's tokens and, per token, whether it counts in the loss. With `mask_prompt` off
/// every token counts. A completion without a chat template is prompt + completion + the
/// end-of-text token (which counts, so the model learns to stop).
pub fn encode_record(
    record: &Record,
    tok: &Tok,
    template: Option<&ChatTemplate>,
    mask_prompt: bool,
) -> Result<(Vec<u32>, Vec<bool>)> {
    let chat = |msgs: &[Json]| -> Result<Vec<(String, bool)>> {
        let Some(t) = template else {
            bail!(
                "{} records need a chat template (a --tokenizer model directory whose \
                 tokenizer_config.json has one, or --chat-template FILE)",
                record.kind()
            );
        };
        if mask_prompt {
            t.pieces(msgs)
        } else {
            Ok(vec![(t.render(msgs, false)?, true)])
        }
    };
    let pieces = match record {
        Record::Text(t) => vec![(t.clone(), true)],
        Record::Completion { prompt, completion } => match template {
            Some(_) => chat(&[
                json!({"role": "user", "content": prompt}),
                json!({"role": "assistant", "content": completion}),
            ])?,
            None => vec![(prompt.clone(), false), (completion.clone(), true)],
        },
        Record::Chat(msgs) => chat(msgs)?,
    };
    let (mut ids, mut mask) = (Vec::new(), Vec::new());
    for (text, counts) in pieces {
        let t = tok.encode(&text)?;
        mask.resize(mask.len() + t.len(), counts || !mask_prompt);
        ids.extend(t);
    }
    if let (Record::Completion { .. }, None, Some(eot)) = (record, template, tok.eot()) {
        ids.push(eot);
        mask.push(true);
    }
    Ok((ids, mask))
}

/// What [`prepare`] wrote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub records: usize,
    pub tokens: usize,
    /// Tokens that count in the loss (all of them without `mask_prompt`).
    pub counted: usize,
    /// Whether the file has a mask (`mask_prompt`).
    pub masked: bool,
    pub format: Format,
}

impl Stats {
    /// The fraction of tokens that count in the loss.
    pub fn counted_fraction(&self) -> f64 {
        self.counted as f64 / self.tokens.max(1) as f64
    }
}

/// Tokenizes JSONL files into one packed token file at `out`: records in order, separated by
/// the end-of-text token (a separator never counts with `mask_prompt`), with a mask when
/// `mask_prompt`. `template` renders chat records (and prompt/completion records when given).
pub fn prepare(
    inputs: &[&Path],
    tok: &Tok,
    template: Option<&ChatTemplate>,
    mask_prompt: bool,
    out: &Path,
) -> Result<Stats> {
    let (mut ids, mut mask) = (Vec::<u32>::new(), Vec::<bool>::new());
    let mut records = 0;
    let eot = tok.eot();
    for path in inputs {
        for (line, r) in read_records(path)? {
            let (i, m) = encode_record(&r, tok, template, mask_prompt)
                .with_context(|| format!("{}:{line}", path.display()))?;
            if let Some(e) = eot
                && !ids.is_empty()
                && ids.last() != Some(&e)
            {
                ids.push(e);
                mask.push(!mask_prompt);
            }
            ids.extend(i);
            mask.extend(m);
            records += 1;
        }
    }
    let format = shards::write_token_file(out, &ids, mask_prompt.then_some(&mask[..]), tok.vocab_size())?;
    Ok(Stats {
        records,
        tokens: ids.len(),
        counted: mask.iter().filter(|&&b| b).count(),
        masked: mask_prompt,
        format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_parses() {
        assert_eq!(
            parse_record(r#"{"text": "a b", "id": 3}"#),
            Ok(Record::Text("a b".into()))
        );
        assert_eq!(
            parse_record(r#"{"prompt": "", "completion": "yes"}"#),
            Ok(Record::Completion {
                prompt: "".into(),
                completion: "yes".into()
            })
        );
        let r = parse_record(r#"{"messages": [{"role": "user", "content": "q", "name": "x"}]}"#).unwrap();
        assert_eq!(
            r,
            Record::Chat(vec![json!({"role": "user", "content": "q", "name": "x"})])
        );
    }

    #[test]
    fn malformed_records_say_what_is_wrong() {
        for (line, want) in [
            ("{\"text\": ", "not JSON"),
            ("[1, 2]", "not a JSON object but a list"),
            (r#"{"txt": "a"}"#, "missing key: a record needs"),
            (r#"{"prompt": "a"}"#, "missing key `completion`"),
            (r#"{"text": "a", "messages": []}"#, "ambiguous"),
            (r#"{"text": 3}"#, "wrong type: `text` is a number, not a string"),
            (
                r#"{"messages": {}}"#,
                "wrong type: `messages` is an object, not a list",
            ),
            (
                r#"{"messages": ["hi"]}"#,
                "message 1: wrong type: a string, not an object",
            ),
            (
                r#"{"messages": [{"role": "user"}]}"#,
                "message 1: missing key `content`",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}"#,
                "message 2: unknown role `bot`",
            ),
            (
                r#"{"messages": [{"role": "user", "content": null}]}"#,
                "`content` is null",
            ),
            (r#"{"text": ""}"#, "empty `text`"),
            (r#"{"prompt": "a", "completion": ""}"#, "empty `completion`"),
            (r#"{"messages": []}"#, "empty `messages`"),
        ] {
            let e = parse_record(line).unwrap_err();
            assert!(e.starts_with(want) || e.contains(want), "{line}: {e}");
        }
    }

    #[test]
    fn files_name_the_line() {
        let d = std::env::temp_dir().join(format!("malus-instruct-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("a.jsonl");
        std::fs::write(
            &f,
            "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n{\"prompt\": \"p\", \"completion\": \"c\"}\n",
        )
        .unwrap();
        let e = read_records(&f).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:4: a prompt/completion record in a file of text records (line 1)",
                f.display()
            )
        );
        std::fs::write(&f, "{\"text\": \"a\"}\n\n{\"text\": 1}\n").unwrap();
        let e = read_records(&f).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3: wrong type", f.display())), "{e}");
        std::fs::write(&f, "{\"text\": \"a\"}\n\n{\"text\": \"b\"}").unwrap();
        let r = read_records(&f).unwrap();
        assert_eq!(r.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 3]);
        std::fs::write(&f, "\n \n").unwrap();
        assert!(read_records(&f).unwrap_err().to_string().contains("no records"));
        assert!(is_jsonl(&f) && is_jsonl(Path::new("x.JSONL")) && !is_jsonl(Path::new("x.json")));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
