//! The demo task of panel 7: is a word a woman's first name or an English word? Made from the two
//! corpora the page already ships by the rule of `../shared/peers/smol_demo_data.py`: names that are
//! also English words left out, every entry capitalised so the case gives nothing away, 250 of each
//! drawn, shuffled, the first 400 to train on and the last 100 held out — as TRL's conversational
//! prompt-completion JSONL. Our seeded generator (ChaCha8), not Python's: `tests/fixtures/smol/`
//! keeps the rows it draws for the reference run.

use std::collections::BTreeSet;

use serde_json::json;

use crate::error::Result;
use crate::rng::{Rng, Stream};
use crate::text::{parse_json_strings, parse_lines};

pub const DEMO_PROMPT: &str = "Is \"{}\" a woman's first name or an English word? Answer with one word: name or word.";
pub const DEMO_SEED: u64 = 1311;
const EACH: usize = 250;
const TRAIN: usize = 400;

/// The demo's rows: (train JSONL, held-out JSONL).
pub fn demo_task(words_json: &[u8], names_txt: &[u8]) -> Result<(String, String)> {
    let words = parse_json_strings(words_json, "an-array-of-english-words/index.json")?;
    let names = parse_lines(names_txt, "names.txt")?;
    let alpha = |s: &str| !s.is_empty() && s.chars().all(char::is_alphabetic);
    let wordset: BTreeSet<&str> = words.iter().map(String::as_str).collect();
    let names: Vec<&str> = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| alpha(n) && !wordset.contains(n.to_lowercase().as_str()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let nameset: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    let words: Vec<&str> = words
        .iter()
        .map(String::as_str)
        .filter(|w| alpha(w) && (4..=9).contains(&w.chars().count()) && !nameset.contains(*w))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut rng = Rng::new(DEMO_SEED, Stream::Demo);
    let mut picked: Vec<(String, &str)> =
        sample(&names, &mut rng).into_iter().map(|n| (n.to_string(), "name")).collect();
    picked.extend(sample(&words, &mut rng).into_iter().map(|w| (capitalize(w), "word")));
    rng.shuffle(&mut picked);
    let row = |(t, a): &(String, &str)| {
        json!({
            "prompt": [{"role": "user", "content": DEMO_PROMPT.replace("{}", t)}],
            "completion": [{"role": "assistant", "content": a}],
        })
        .to_string()
    };
    let lines: Vec<String> = picked.iter().map(row).collect();
    Ok((lines[..TRAIN].join("\n") + "\n", lines[TRAIN..].join("\n") + "\n"))
}

/// `EACH` distinct entries of `from`, drawn without replacement.
fn sample<'a>(from: &[&'a str], rng: &mut Rng) -> Vec<&'a str> {
    let mut idx: Vec<usize> = (0..from.len()).collect();
    let k = EACH.min(from.len());
    for i in 0..k {
        let j = i + rng.below((from.len() - i) as u32) as usize;
        idx.swap(i, j);
    }
    idx[..k].iter().map(|&i| from[i]).collect()
}

/// Python's `str.capitalize`: the first character upper-case, the rest lower-case.
fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    c.next().map_or(String::new(), |f| f.to_uppercase().chain(c.flat_map(char::to_lowercase)).collect())
}
