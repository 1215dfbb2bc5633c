//! Chat templates: a model's `chat_template` (from a Hugging Face tokenizer_config.json or
//! chat_template.jinja, or a file given on the command line) rendered with its bos/eos tokens,
//! and a conversation cut into the pieces that are and are not assistant text (for
//! `--mask-prompt`).

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow, bail, ensure};
use minijinja::Environment;
use minijinja::value::{Serde, Value};
use serde_json::{Map, Value as Json};

use super::input;
use super::jinja;

/// What malus reads from a tokenizer_config.json.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TokenizerConfig {
    pub chat_template: Option<String>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
}

impl TokenizerConfig {
    /// Reads a tokenizer_config.json (or any JSON object with those keys).
    pub fn load(path: &Path) -> Result<TokenizerConfig> {
        let text = input::read_text(path, "tokenizer config")?;
        let p = path.display();
        let json: Json =
            serde_json::from_str(&text).with_context(|| format!("tokenizer config {p} is not JSON"))?;
        let Json::Object(obj) = json else {
            bail!("tokenizer config {p} is not a JSON object");
        };
        let token = |key: &str| -> Result<Option<String>> {
            match obj.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(Json::Object(o)) => match o.get("content") {
                    Some(Json::String(s)) => Ok(Some(s.clone())),
                    _ => bail!("tokenizer config {p}: `{key}` has no string `content`"),
                },
                Some(_) => bail!("tokenizer config {p}: `{key}` is neither a string nor {{\"content\": …}}"),
            }
        };
        let chat_template = match obj.get("chat_template") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s.clone()),
            // A list of named templates: the one named "default".
            Some(Json::Array(list)) => {
                let named = |t: &Json| t.get("name").and_then(Json::as_str) == Some("default");
                match list.iter().find(|t| named(t)).and_then(|t| t.get("template")) {
                    Some(Json::String(s)) => Some(s.clone()),
                    _ => bail!(
                        "tokenizer config {p}: `chat_template` is a list without a \"default\" template"
                    ),
                }
            }
            Some(_) => bail!("tokenizer config {p}: `chat_template` is neither a string nor a list"),
        };
        Ok(TokenizerConfig {
            chat_template,
            bos_token: token("bos_token")?,
            eos_token: token("eos_token")?,
        })
    }

    /// The configuration beside a tokenizer: for a model directory its tokenizer_config.json
    /// (when present), with the template of its chat_template.jinja (when present) preferred,
    /// as transformers does; nothing for a lone tokenizer.json.
    pub fn for_tokenizer(tokenizer: &Path) -> Result<TokenizerConfig> {
        if !tokenizer.is_dir() {
            return Ok(TokenizerConfig::default());
        }
        let file = tokenizer.join("tokenizer_config.json");
        let mut cfg = match file.is_file() {
            true => TokenizerConfig::load(&file)?,
            false => TokenizerConfig::default(),
        };
        let jinja = tokenizer.join("chat_template.jinja");
        if jinja.is_file() {
            cfg.chat_template = Some(input::read_text(&jinja, "chat template")?.into_owned());
        }
        Ok(cfg)
    }
}

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    /// Of the source and the special tokens: what token caches of rendered data are keyed on.
    pub fingerprint: String,
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles `source`; `strftime_now` in it reads the clock once, now.
    pub fn new(source: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<ChatTemplate> {
        let mut env = jinja::environment(SystemTime::now());
        env.add_template_owned(NAME, jinja::rewrite_generation_tags(source))
            .map_err(|e| anyhow!("the chat template does not compile: {e}"))?;
        let keyed = format!("{source}\0{bos_token:?}\0{eos_token:?}");
        Ok(ChatTemplate {
            fingerprint: super::tokenizer::fingerprint(keyed.as_bytes()),
            env,
            bos_token,
            eos_token,
        })
    }

    /// The template for a tokenizer (a tokenizer.json or a model directory, see
    /// [`TokenizerConfig::for_tokenizer`]), or the one in `file` instead when given (a
    /// template, or a .json file with a `chat_template` key); bos/eos come from the model
    /// directory either way. `None` when there is no template.
    pub fn load(tokenizer: &Path, file: Option<&Path>) -> Result<Option<ChatTemplate>> {
        let cfg = TokenizerConfig::for_tokenizer(tokenizer)?;
        let (source, what) = match file {
            Some(f) if f.extension().is_some_and(|e| e == "json") => {
                let Some(t) = TokenizerConfig::load(f)?.chat_template else {
                    bail!("{} has no `chat_template`", f.display());
                };
                (t, f.display().to_string())
            }
            Some(f) => (
                input::read_text(f, "chat template")?.into_owned(),
                f.display().to_string(),
            ),
            None => match cfg.chat_template {
                Some(t) => (t, tokenizer.display().to_string()),
                None => return Ok(None),
            },
        };
        let t = ChatTemplate::new(&source, cfg.bos_token, cfg.eos_token)
            .with_context(|| format!("chat template of {what}"))?;
        Ok(Some(t))
    }

    /// Renders `messages` (objects with at least `role` and `content`; other keys are passed
    /// through), ending with the assistant's header when `add_generation_prompt`.
    pub fn render(&self, messages: &[Json], add_generation_prompt: bool) -> Result<String> {
        let mut ctx = Map::new();
        ctx.insert("messages".into(), Json::Array(messages.to_vec()));
        ctx.insert("add_generation_prompt".into(), Json::Bool(add_generation_prompt));
        for (k, v) in [("bos_token", &self.bos_token), ("eos_token", &self.eos_token)] {
            if let Some(v) = v {
                ctx.insert(k.into(), Json::String(v.clone()));
            }
        }
        let t = self.env.get_template(NAME).expect("added in new");
        t.render(Value::from(Serde(&ctx)))
            .map_err(|e| anyhow!("the chat template failed: {e}"))
    }

    /// The rendered conversation cut into pieces, each marked `true` when it is assistant text:
    /// for each assistant message, the rendering up to it with the generation prompt ends the
    /// piece before, and the rendering including it ends its own piece (so the assistant's
    /// text and the template's end-of-turn marker count). The pieces concatenate to the whole
    /// rendering. Needs a template whose renderings only append, turn by turn.
    pub fn pieces(&self, messages: &[Json]) -> Result<Vec<(String, bool)>> {
        // The whole first: a template's own errors (raise_exception) say what is wrong with
        // the conversation, where a prefix might fail for another reason.
        let whole = self.render(messages, false)?;
        let mut pieces = Vec::new();
        let mut done = String::new();
        for (i, m) in messages.iter().enumerate() {
            if m.get("role").and_then(Json::as_str) != Some("assistant") {
                continue;
            }
            let head = self.render(&messages[..i], true)?;
            let turn = self.render(&messages[..=i], false)?;
            let Some(before) = head.strip_prefix(done.as_str()) else {
                return Err(not_incremental(&format!(
                    "the rendering up to message {} does not start with the rendering up to the \
                     assistant turn before it",
                    i + 1
                )));
            };
            let Some(own) = turn.strip_prefix(head.as_str()) else {
                return Err(not_incremental(&format!(
                    "message {} (assistant) does not follow its generation prompt",
                    i + 1
                )));
            };
            pieces.push((before.to_string(), false));
            pieces.push((own.to_string(), true));
            done = turn;
        }
        let Some(rest) = whole.strip_prefix(done.as_str()) else {
            return Err(not_incremental(
                "the whole rendering does not start with the rendering up to the last assistant \
                 turn",
            ));
        };
        pieces.push((rest.to_string(), false));
        pieces.retain(|(p, _)| !p.is_empty());
        ensure!(
            pieces.iter().map(|(p, _)| p.len()).sum::<usize>() == whole.len(),
            "internal: pieces do not add up to the rendering"
        );
        Ok(pieces)
    }
}

fn not_incremental(what: &str) -> anyhow::Error {
    anyhow!(
        "the chat template does not render this conversation turn by turn: {what} (--mask-prompt \
         needs a template whose turns only append; see docs/data.md)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}\
                          {% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn pieces_of_a_conversation() {
        let t = ChatTemplate::new(CHATML, None, None).unwrap();
        let msgs = [
            json!({"role": "user", "content": "Hi"}),
            json!({"role": "assistant", "content": "Hello."}),
            json!({"role": "user", "content": "Bye"}),
        ];
        let p = t.pieces(&msgs).unwrap();
        let s = |x: &str, b| (x.to_string(), b);
        assert_eq!(
            p,
            vec![
                s("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", false),
                s("Hello.<|im_end|>\n", true),
                s("<|im_start|>user\nBye<|im_end|>\n", false),
            ]
        );
        // A template that drops earlier turns cannot be cut.
        let t = ChatTemplate::new("{{ messages[-1].content }}", None, None).unwrap();
        let e = t.pieces(&msgs[..2]).unwrap_err().to_string();
        assert!(e.contains("turn by turn"), "{e}");
        assert!(ChatTemplate::new("{% if %}", None, None).is_err());
    }

    #[test]
    fn tokenizer_configs() {
        let d = std::env::temp_dir().join(format!("malus-chat-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let f = d.join("tokenizer_config.json");
        let cfg = json!({
            "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
        });
        std::fs::write(&f, cfg.to_string()).unwrap();
        let c = TokenizerConfig::load(&f).unwrap();
        assert_eq!(
            c,
            TokenizerConfig {
                chat_template: Some("D".into()),
                bos_token: Some("<s>".into()),
                eos_token: Some("</s>".into())
            }
        );
        assert_eq!(TokenizerConfig::for_tokenizer(&d).unwrap(), c);
        std::fs::write(d.join("chat_template.jinja"), "J").unwrap();
        assert_eq!(
            TokenizerConfig::for_tokenizer(&d)
                .unwrap()
                .chat_template
                .as_deref(),
            Some("J")
        );
        assert_eq!(
            TokenizerConfig::for_tokenizer(&f).unwrap(),
            TokenizerConfig::default()
        );
        std::fs::write(&f, r#"{"eos_token": 3}"#).unwrap();
        let e = TokenizerConfig::load(&f).unwrap_err().to_string();
        assert!(
            e.contains("eos_token") && e.contains("tokenizer_config.json"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
