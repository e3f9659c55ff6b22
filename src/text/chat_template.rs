//! A model's chat template (`tokenizer.chat_template`, Jinja) rendered with `minijinja` as
//! transformers' `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)` renders
//! it with Jinja2, so a model with another template works as well as SmolLM2's.
//!
//! What transformers gives a template, it gets here: Jinja2's `trim_blocks` and `lstrip_blocks`,
//! `break`/`continue`, `messages` (role and content), `add_generation_prompt`, `bos_token`,
//! `eos_token`, `tools` and `documents` as none, `raise_exception(message)`, and a `tojson` filter
//! that writes JSON as Python's `json.dumps(ensure_ascii=False)` does (`", "` and `": "`,
//! `indent=`). Python's string and dict methods (`.strip()`, `.startswith()`, `.items()`...) come
//! from `minijinja-contrib`'s `pycompat`. A template error — its own `raise_exception` included —
//! becomes a `LabError` with the template's message. A render is limited to 50 M steps (minijinja's
//! fuel), so a template cannot hang the page.
//!
//! Its price in wasm (the probe of `bpe.rs`'s measurement with this file added, release, opt-level
//! 3, LTO): 1,148,545 bytes (353,285 gzipped), of which `pycompat` is 52,072 (16,098). Building
//! minijinja and minijinja-contrib at opt-level "s" (a per-package profile) takes 281,334 of that
//! off; rendering a conversation is not on any hot path.

use crate::{LabError, Result};
use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{syntax::SyntaxConfig, AutoEscape, Environment, Error, ErrorKind};
use serde::{Deserialize, Serialize};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant`...
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.to_string(), content: content.to_string() }
    }
}

/// Steps one render may take (minijinja's fuel): far more than any real conversation needs.
const FUEL: u64 = 50_000_000;
const NAME: &str = "chat_template";

/// A compiled chat template with the special tokens it is rendered with.
pub struct ChatTemplate {
    env: Environment<'static>,
    file: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("file", &self.file).finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`; `file` names where it came from in errors (a GGUF's
    /// `tokenizer.chat_template`, a `tokenizer_config.json`). Refuses a template that does not parse.
    pub fn new(source: &str, bos_token: &str, eos_token: &str, file: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
        env.set_syntax(syntax.map_err(|e| template_error(file, &e))?);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string()).map_err(|e| template_error(file, &e))?;
        Ok(Self { env, file: file.to_string(), bos_token: bos_token.to_string(), eos_token: eos_token.to_string() })
    }

    /// The same template with another limit on the steps of one render than the 50 M it is compiled
    /// with (which take some 1.6 s natively): the fuzz harness's, whose instrumentation makes each step
    /// about 35 times slower.
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.env.set_fuel(Some(fuel));
        self
    }

    /// The conversation as the template writes it, with the assistant's opening after it when
    /// `add_generation_prompt` is set (and the template supports it).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.env.get_template(NAME).map_err(|e| template_error(&self.file, &e))?;
        let ctx = minijinja::context! {
            messages => Value::from(Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            tools => Value::from(()),
            documents => Value::from(()),
        };
        template.render(ctx).map_err(|e| template_error(&self.file, &e))
    }
}

/// HF's `raise_exception(message)`: the template refuses its input with `message`.
fn raise_exception(message: String) -> std::result::Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// The error a person sees: the template's own message for `raise_exception`, minijinja's
/// description and the line otherwise.
fn template_error(file: &str, e: &Error) -> LabError {
    let reason = match (e.kind(), e.detail()) {
        (ErrorKind::InvalidOperation, Some(detail)) => format!("chat template: {detail}"),
        _ => match e.line() {
            Some(line) => format!("chat template, line {line}: {e}"),
            None => format!("chat template: {e}"),
        },
    };
    LabError::file(file, reason)
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`, as transformers' `tojson`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> std::result::Result<Value, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    // Accepted and not needed: ensure_ascii (False is the default here), sort_keys (maps from
    // the lab are written in a fixed order), separators.
    for ignored in ["ensure_ascii", "sort_keys", "separators"] {
        let _: Option<Value> = kwargs.get(ignored)?;
    }
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(
            usize::try_from(v)
                .map_err(|_| Error::new(ErrorKind::InvalidOperation, "tojson: indent must be a number"))?,
        ),
    };
    let mut out = Vec::new();
    let written = match indent {
        Some(n) => {
            let spaces = vec![b' '; n.min(64)];
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(&spaces),
            );
            value.serialize(&mut ser)
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, PythonFormatter)),
    };
    written.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from(String::from_utf8_lossy(&out).into_owned()))
}

/// `json.dumps`' default separators: `", "` between items, `": "` after keys.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_with_hf_whitespace_and_globals() {
        // Expected output from Jinja2 3.1.6 with trim_blocks and lstrip_blocks.
        let src =
            "{% for m in messages %}\n  {{ m.role }}={{ m.content.strip() }}|\n  {% if m.role == \"user\" %}\n[u]\n  \
                   {% endif %}\n{% endfor %}{{ bos_token }}{{ eos_token }}\n";
        let t = ChatTemplate::new(src, "<s>", "</s>", "t").unwrap();
        let out = t.render(&[Message::new("user", " hi "), Message::new("assistant", "yo")], false).unwrap();
        assert_eq!(out, "  user=hi|\n[u]\n  assistant=yo|\n<s></s>");
    }

    #[test]
    fn raise_exception_and_syntax_errors_are_lab_errors() {
        let t = ChatTemplate::new("{{ raise_exception('Roles must alternate') }}", "", "", "f").unwrap();
        let err = t.render(&[], true).unwrap_err();
        assert_eq!(err.to_string(), "f: chat template: Roles must alternate");
        let err = ChatTemplate::new("{% for %}", "", "", "f").unwrap_err();
        assert!(err.to_string().starts_with("f: chat template"), "{err}");
        let t = ChatTemplate::new(
            "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
            "",
            "",
            "f",
        )
        .unwrap();
        assert!(t.render(&[], false).is_err(), "out of fuel");
        // 10,000 steps and more: within the default fuel, not within 5,000.
        let t = ChatTemplate::new("{% for i in range(10000) %}{% endfor %}", "", "", "f").unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "");
        let err = t.with_fuel(5_000).render(&[], false).unwrap_err();
        assert!(err.to_string().contains("out of fuel"), "{err}");
    }

    #[test]
    fn tojson_as_python() {
        let t =
            ChatTemplate::new("{{ messages | tojson }}|{{ {'a': [1, 'é']} | tojson(indent=2) }}", "", "", "f").unwrap();
        let out = t.render(&[Message::new("user", "<b>\"x\"\n")], false).unwrap();
        assert_eq!(
            out,
            "[{\"role\": \"user\", \"content\": \"<b>\\\"x\\\"\\n\"}]|{\n  \"a\": [\n    1,\n    \"é\"\n  ]\n}"
        );
    }
}
