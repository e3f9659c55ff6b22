//! Byte-level BPE, the tokenizer of GPT-2 and of SmolLM2 (`tokenizer.ggml.model = gpt2`), from plain
//! data: the tokens by id, the merges by rank, the tokens matched whole, and a pre-tokenizer.
//!
//! Encoding is Hugging Face `tokenizers`' order: the added tokens (special ones such as
//! `<|im_end|>`) are cut out of the text first, leftmost and then longest; the pre-tokenizer cuts the
//! rest into words; each word's UTF-8 bytes become GPT-2's byte-to-unicode characters (one token
//! each), and the pair of neighbours with the lowest merge rank is merged (the leftmost of equals)
//! until no neighbouring pair has a merge. A priority queue of candidate pairs over a linked list of
//! symbols does that in O(n log n) for a word of n bytes, and a cache of up to 10,000 words skips
//! it for words seen before (a JSONL file repeats its keys and common words on every line).
//! Decoding maps each token's characters back to bytes, so `decode(encode(s)) == s` for every
//! string whose bytes all have a token; bytes that are not UTF-8 (a cut multi-byte character) show
//! as U+FFFD. A byte the vocabulary has no token for is dropped (or becomes `unk_token` if the
//! tokenizer.json names one), and its neighbours may merge across the gap, exactly as `tokenizers`
//! does: SmolLM2 lacks 21 — the control characters U+0004, U+0006, U+0013, U+0014, U+0016, U+001D,
//! the lead bytes F1 and F2 of planes 4–11, and the bytes that never occur in UTF-8.
//!
//! Why not Hugging Face's `tokenizers` crate (0.22.2, `default-features = false`,
//! `unstable_wasm`: fancy-regex instead of Oniguruma, which does not build for wasm)? Measured
//! 2026-12-07 on this machine (2 cores, shared) with throwaway cdylibs that load `tokenizer.json`,
//! encode and decode (wasm32, release, opt-level 3, LTO, one codegen unit, no wasm-opt):
//! - wasm: `tokenizers` 2,706,086 bytes (876,844 gzipped); this module 171,321 (70,374); a cdylib
//!   that only parses the JSON with serde_json, which the lab has anyway, 87,858 (41,182). So
//!   `tokenizers` adds 2.6 MB (836 KB on the wire) where this module adds 83 KB (29 KB).
//! - native encode, one thread, 7.86 MB of text line by line (134,908 lines: JSONL rows of the
//!   English words, first names, the repository's sources and docs, the fixture lines): both give
//!   the same 2,453,370 ids on every line; `tokenizers` 0.59–0.70 M tokens/s (`encode` and
//!   `encode_fast` alike), this module 5.9–8.8 M tokens/s (a cold word cache each run). Loading the
//!   file: 96–99 ms and 59–81 ms.
//!
//! The library would cost 30 times the wasm and run 10 times slower for the same ids, so the lab
//! keeps its own.

use super::pretokenize::PreTokenizer;
use crate::{LabError, Result};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Mutex;

/// What a token id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// A byte-level token that merges produce.
    Normal,
    /// Matched whole in the text and shown as its text, but not special (a user-defined token).
    Added,
    /// A special (control) token: matched whole in the text and shown as its text.
    Special,
    /// An id no token has (a gap in a tokenizer.json's ids); it decodes to nothing.
    Absent,
}

/// `byte_ids` of a byte with no token and no unknown token to stand for it.
const NO_TOKEN: u32 = u32::MAX;
/// Words longer than this (in bytes) are not cached.
const CACHE_WORD_MAX: usize = 256;
/// The cache stops growing at this many words, as `tokenizers`' does.
const CACHE_CAPACITY: usize = 10_000;

/// A byte-level BPE tokenizer.
pub struct Bpe {
    /// Each id's token as the vocabulary writes it: byte-level characters (`Ġthe`) for normal
    /// tokens, plain text for added and special ones, empty for absent ids.
    tokens: Vec<String>,
    kinds: Vec<Kind>,
    ids: HashMap<String, u32>,
    /// `(left << 32) | right` → (rank, merged id).
    merges: HashMap<u64, (u32, u32), BuildHasherDefault<PairHasher>>,
    /// The id of each byte's one-character token: [`NO_TOKEN`] for a byte the vocabulary lacks,
    /// or the unknown token's id when there is one.
    byte_ids: [u32; 256],
    /// Which bytes `byte_ids` gives the unknown token, and whether neighbouring unknown bytes fuse
    /// into one (`fuse_unk`).
    byte_unk: [bool; 256],
    fuse_unk: bool,
    /// The byte each byte-level character stands for (indexed by the character, all below 324).
    char_bytes: [Option<u8>; 324],
    /// The tokens matched whole, longest first, and which first bytes can start one.
    added: Vec<(Vec<u8>, u32)>,
    added_first: [bool; 256],
    pre: PreTokenizer,
    /// GPT-2's byte-to-unicode map, for `ignore_merges`.
    byte_chars: [char; 256],
    /// Hugging Face's `ignore_merges`: a word that is a token is that token, whatever the merges say.
    ignore_merges: bool,
    cache: Mutex<WordCache>,
}

/// A word's bytes → its ids.
type WordCache = HashMap<Box<[u8]>, Box<[u32]>>;

impl std::fmt::Debug for Bpe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bpe")
            .field("vocab_size", &self.tokens.len())
            .field("merges", &self.merges.len())
            .field("added", &self.added.len())
            .field("pre", &self.pre)
            .finish_non_exhaustive()
    }
}

/// How a tokenizer.json's BPE model encodes besides its vocabulary and merges.
pub(super) struct Options<'a> {
    pub pre: PreTokenizer,
    /// Hugging Face's `ignore_merges`.
    pub ignore_merges: bool,
    /// The token that stands for a byte the vocabulary lacks, and whether neighbouring ones fuse.
    pub unk_token: Option<&'a str>,
    pub fuse_unk: bool,
}

/// The pieces that the added tokens cut a text into.
enum Piece<'a> {
    Text(&'a str),
    Added(u32),
}

/// GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 bytes for
/// U+0100 onwards in byte order, so every byte is a visible character.
pub fn byte_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in chars.iter_mut().enumerate() {
        let visible = matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF);
        let cp = if visible {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).unwrap_or('\0');
    }
    chars
}

impl Bpe {
    /// Builds a tokenizer. `tokens[id]` is the token with that id (`None` for a gap), `kinds` says
    /// which are matched whole (same length), `merges` are pairs of token strings by rank. Refuses
    /// a merge of tokens that are not in the vocabulary, an empty merge list, and an unknown token
    /// that is not in it.
    pub(super) fn build(
        file: &str,
        tokens: Vec<Option<String>>,
        kinds: Vec<Kind>,
        merges: &[(&str, &str)],
        merges_key: &str,
        options: Options,
    ) -> Result<Self> {
        let Options { pre, ignore_merges, unk_token, fuse_unk } = options;
        let too_many = || LabError::file(file, "more than 2^32 tokens");
        u32::try_from(tokens.len()).map_err(|_| too_many())?;
        u32::try_from(merges.len())
            .map_err(|_| LabError::file(file, format!("{merges_key}: more than 2^32 merges")))?;
        if merges.is_empty() {
            return Err(LabError::file(
                file,
                format!("{merges_key}: no merges; a BPE tokenizer without merges is not supported"),
            ));
        }
        let mut ids = HashMap::with_capacity(tokens.len());
        for (id, token) in tokens.iter().enumerate() {
            if let Some(t) = token {
                ids.entry(t.clone()).or_insert(id as u32);
            }
        }
        let unk = match unk_token {
            None => None,
            Some(t) => Some(
                *ids.get(t)
                    .ok_or_else(|| LabError::file(file, format!("model.unk_token: {t:?} is not in the vocabulary")))?,
            ),
        };
        let chars = byte_chars();
        let (mut byte_ids, mut byte_unk) = ([NO_TOKEN; 256], [false; 256]);
        let mut buf = [0u8; 4];
        for (b, c) in chars.iter().enumerate() {
            match (ids.get(&*c.encode_utf8(&mut buf)), unk) {
                (Some(&id), _) => byte_ids[b] = id,
                (None, Some(u)) => (byte_ids[b], byte_unk[b]) = (u, true),
                (None, None) => {}
            }
        }
        let mut char_bytes = [None; 324];
        for (b, &c) in chars.iter().enumerate() {
            char_bytes[c as usize] = Some(b as u8);
        }
        let mut merge_map =
            HashMap::with_capacity_and_hasher(merges.len(), BuildHasherDefault::<PairHasher>::default());
        let mut joined = String::new();
        for (rank, &(a, b)) in merges.iter().enumerate() {
            let id = |t: &str| {
                ids.get(t).copied().ok_or_else(|| {
                    LabError::file(file, format!("{merges_key}[{rank}] ({a:?} {b:?}): {t:?} is not in the vocabulary"))
                })
            };
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let (left, right, new) = (id(a)?, id(b)?, id(&joined)?);
            // The first of two equal merges keeps its rank (as llama.cpp does).
            merge_map.entry(pair(left, right)).or_insert((rank as u32, new));
        }
        let mut added: Vec<(Vec<u8>, u32)> = Vec::new();
        let mut added_first = [false; 256];
        for (id, (token, kind)) in tokens.iter().zip(&kinds).enumerate() {
            if let (Some(t), Kind::Added | Kind::Special) = (token, kind) {
                if let Some(&first) = t.as_bytes().first() {
                    added.push((t.as_bytes().to_vec(), id as u32));
                    added_first[first as usize] = true;
                }
            }
        }
        added.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let kinds = tokens.iter().zip(kinds).map(|(t, k)| if t.is_some() { k } else { Kind::Absent }).collect();
        let tokens = tokens.into_iter().map(Option::unwrap_or_default).collect();
        Ok(Self {
            tokens,
            kinds,
            ids,
            merges: merge_map,
            byte_ids,
            byte_unk,
            fuse_unk,
            char_bytes,
            added,
            added_first,
            pre,
            byte_chars: chars,
            ignore_merges,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Builds the tokenizer a GGUF describes: its `tokenizer.ggml.tokens`, `tokenizer.ggml.merges`
    /// (`"a b"` by rank), `tokenizer.ggml.token_type` (3 = control and 4 = user-defined are matched
    /// whole; the others are byte-level tokens; may be empty) and `tokenizer.ggml.pre` (`smollm` or
    /// `gpt2`). The caller checks `tokenizer.ggml.model` is `gpt2`. `file` names the GGUF in errors.
    pub fn from_vocab(
        tokens: &[String],
        merges: &[String],
        token_types: &[i32],
        pre: &str,
        file: &str,
    ) -> Result<Self> {
        let pre = PreTokenizer::from_name(pre, file, "tokenizer.ggml.pre")?;
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            return Err(LabError::file(
                file,
                format!(
                    "tokenizer.ggml.token_type has {} entries for {} tokens in tokenizer.ggml.tokens",
                    token_types.len(),
                    tokens.len()
                ),
            ));
        }
        let kinds = (0..tokens.len())
            .map(|i| match token_types.get(i) {
                Some(3) => Kind::Special,
                Some(4) => Kind::Added,
                _ => Kind::Normal,
            })
            .collect();
        let pairs = merges
            .iter()
            .enumerate()
            .map(|(rank, m)| split_merge(m).ok_or_else(|| bad_merge(file, "tokenizer.ggml.merges", rank, m)))
            .collect::<Result<Vec<_>>>()?;
        let options = Options { pre, ignore_merges: false, unk_token: None, fuse_unk: false };
        Self::build(file, tokens.iter().cloned().map(Some).collect(), kinds, &pairs, "tokenizer.ggml.merges", options)
    }

    /// The token ids of `text`, with no BOS or EOS added. Added and special tokens written in the
    /// text (`<|im_end|>`) become their ids, as `tokenizers` does with `add_special_tokens=False`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 1);
        // Another thread encoding at the same moment just goes without the cache.
        let mut cache = self.cache.try_lock().ok();
        self.split_added(text, |piece| match piece {
            Piece::Added(id) => out.push(id),
            Piece::Text(t) => self.pre.split(t, |w| self.encode_word(w, &mut out, cache.as_deref_mut())),
        });
        out
    }

    /// The text of `ids`: byte-level tokens as their bytes, added and special tokens as their text;
    /// ids that are no token are skipped, bytes that are not UTF-8 show as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let i = id as usize;
            match self.kinds.get(i) {
                Some(Kind::Normal) => self.push_token_bytes(&self.tokens[i], &mut bytes),
                Some(Kind::Added | Kind::Special) => bytes.extend_from_slice(self.tokens[i].as_bytes()),
                Some(Kind::Absent) | None => {}
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The token `id` as the vocabulary writes it (`Ġthe`, `<|im_end|>`); `None` for no token.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        match self.kinds.get(id as usize)? {
            Kind::Absent => None,
            _ => Some(&self.tokens[id as usize]),
        }
    }

    /// The id of a token written as the vocabulary writes it.
    pub fn id_of(&self, token: &str) -> Option<u32> {
        self.ids.get(token).copied()
    }

    /// Ids run `0..vocab_size()` (the model's embedding has this many rows at least).
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Whether `id` is a special (control) token, such as `<|im_start|>`.
    pub fn is_special(&self, id: u32) -> bool {
        self.kinds.get(id as usize) == Some(&Kind::Special)
    }

    /// The pre-tokenizer it cuts words with.
    pub fn pre_tokenizer(&self) -> PreTokenizer {
        self.pre
    }

    /// A normal token's bytes: each character through the byte map; a token with a character
    /// outside it is taken as UTF-8 text, as `tokenizers`' ByteLevel decoder does.
    fn push_token_bytes(&self, token: &str, out: &mut Vec<u8>) {
        let start = out.len();
        for c in token.chars() {
            match self.char_bytes.get(c as usize).copied().flatten() {
                Some(b) => out.push(b),
                None => {
                    out.truncate(start);
                    out.extend_from_slice(token.as_bytes());
                    return;
                }
            }
        }
    }

    /// Cuts the added tokens out of `text`, leftmost first and longest at a position.
    fn split_added<'a>(&self, text: &'a str, mut piece: impl FnMut(Piece<'a>)) {
        let bytes = text.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            if self.added_first[bytes[i] as usize] {
                // A token is UTF-8, so a match starts and ends on character boundaries.
                if let Some((len, id)) =
                    self.added.iter().find(|(t, _)| bytes[i..].starts_with(t)).map(|(t, id)| (t.len(), *id))
                {
                    if start < i {
                        piece(Piece::Text(&text[start..i]));
                    }
                    piece(Piece::Added(id));
                    i += len;
                    start = i;
                    continue;
                }
            }
            i += 1;
        }
        if start < bytes.len() {
            piece(Piece::Text(&text[start..]));
        }
    }

    fn encode_word(&self, word: &str, out: &mut Vec<u32>, cache: Option<&mut WordCache>) {
        let bytes = word.as_bytes();
        if let [b] = bytes {
            match self.byte_ids[*b as usize] {
                NO_TOKEN => {}
                id => out.push(id),
            }
            return;
        }
        if self.ignore_merges {
            let text: String = bytes.iter().map(|&b| self.byte_chars[b as usize]).collect();
            if let Some(&id) = self.ids.get(&text) {
                out.push(id);
                return;
            }
        }
        let cacheable = bytes.len() <= CACHE_WORD_MAX;
        if let (true, Some(c)) = (cacheable, &cache) {
            if let Some(ids) = c.get(bytes) {
                out.extend_from_slice(ids);
                return;
            }
        }
        let start = out.len();
        self.merge_word(bytes, out);
        if let (true, Some(c)) = (cacheable, cache) {
            if c.len() < CACHE_CAPACITY {
                c.insert(bytes.into(), out[start..].into());
            }
        }
    }

    /// BPE on one word: its bytes' tokens, merged lowest rank first (leftmost first among equal
    /// ranks), appended to `out`.
    fn merge_word(&self, bytes: &[u8], out: &mut Vec<u32>) {
        const NONE: usize = usize::MAX;
        struct Symbol {
            id: u32,
            prev: usize,
            next: usize,
            gone: bool,
        }
        // The bytes' tokens; a byte without one is left out (its neighbours become neighbours), or
        // is the unknown token, fused with an unknown token just before it if `fuse_unk`.
        let mut ids: Vec<u32> = Vec::with_capacity(bytes.len());
        let mut after_unk = false;
        for &b in bytes {
            let (id, unk) = (self.byte_ids[b as usize], self.byte_unk[b as usize]);
            if id != NO_TOKEN && !(unk && after_unk && self.fuse_unk) {
                ids.push(id);
            }
            after_unk = unk;
        }
        let n = ids.len();
        if n == 0 {
            return;
        }
        let mut symbols: Vec<Symbol> = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| Symbol {
                id,
                prev: if i == 0 { NONE } else { i - 1 },
                next: if i + 1 == n { NONE } else { i + 1 },
                gone: false,
            })
            .collect();
        let mut queue = BinaryHeap::with_capacity(n);
        for i in 1..n {
            if let Some(&(rank, _)) = self.merges.get(&pair(symbols[i - 1].id, symbols[i].id)) {
                queue.push(Reverse((rank, i - 1)));
            }
        }
        while let Some(Reverse((rank, i))) = queue.pop() {
            let j = symbols[i].next;
            if symbols[i].gone || j == NONE {
                continue;
            }
            // Skip a stale entry: the pair at i changed since it was queued.
            let new = match self.merges.get(&pair(symbols[i].id, symbols[j].id)) {
                Some(&(r, new)) if r == rank => new,
                _ => continue,
            };
            let k = symbols[j].next;
            symbols[i].id = new;
            symbols[i].next = k;
            symbols[j].gone = true;
            if k != NONE {
                symbols[k].prev = i;
                if let Some(&(r, _)) = self.merges.get(&pair(new, symbols[k].id)) {
                    queue.push(Reverse((r, i)));
                }
            }
            let p = symbols[i].prev;
            if p != NONE {
                if let Some(&(r, _)) = self.merges.get(&pair(symbols[p].id, new)) {
                    queue.push(Reverse((r, p)));
                }
            }
        }
        // Symbol 0 is never merged away (a merge keeps its left symbol).
        let mut i = 0;
        while i != NONE {
            out.push(symbols[i].id);
            i = symbols[i].next;
        }
    }
}

fn pair(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// A merge written `"a b"`: the two tokens (byte-level tokens never hold a plain space).
pub(super) fn split_merge(merge: &str) -> Option<(&str, &str)> {
    let (a, b) = merge.split_once(' ')?;
    (!a.is_empty() && !b.is_empty() && !b.contains(' ')).then_some((a, b))
}

pub(super) fn bad_merge(file: &str, key: &str, rank: usize, merge: &str) -> LabError {
    LabError::file(file, format!("{key}[{rank}] is {merge:?}, not two tokens separated by one space"))
}

/// The merge table's hash: a pair of ids is already well spread, so SplitMix64's finalizer on the
/// packed pair is enough (SipHash would be most of the time of a merge).
#[derive(Default)]
struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: the 256 byte tokens, then merges `h e`, `l l`, `he ll`, `hell o`, `Ġ w`.
    fn toy() -> Bpe {
        let mut tokens: Vec<String> = byte_chars().iter().map(|c| c.to_string()).collect();
        let merges = ["h e", "l l", "he ll", "hell o", "Ġ w"];
        for m in merges {
            tokens.push(m.replace(' ', ""));
        }
        tokens.push("<|end|>".into());
        let mut types = vec![1; tokens.len()];
        *types.last_mut().unwrap() = 3;
        let merges: Vec<String> = merges.iter().map(|s| s.to_string()).collect();
        Bpe::from_vocab(&tokens, &merges, &types, "gpt2", "toy").unwrap()
    }

    #[test]
    fn merges_by_rank() {
        let t = toy();
        let hello = t.id_of("hello").unwrap();
        let gw = t.id_of("Ġw").unwrap();
        assert_eq!(t.encode("hello"), [hello]);
        assert_eq!(t.encode("hello world<|end|>"), [hello, gw, 111, 114, 108, 100, t.id_of("<|end|>").unwrap()]);
        assert_eq!(t.decode(&t.encode("hello world<|end|>x")), "hello world<|end|>x");
        assert_eq!(t.token_text(hello), Some("hello"));
        assert!(t.is_special(t.id_of("<|end|>").unwrap()));
        assert_eq!(t.decode(&[0xE2, 9999]), "\u{FFFD}", "a cut character, an id past the vocabulary");
    }

    #[test]
    fn a_byte_without_a_token_is_dropped_and_its_neighbours_merge() {
        // As `tokenizers` does: the vocabulary below has no token for byte 0xA9 ("©"), so "hé"
        // (68 C3 A9) is h and Ã, which merge.
        let mut tokens: Vec<String> = byte_chars().iter().filter(|&&c| c != '©').map(|c| c.to_string()).collect();
        tokens.push("hÃ".into());
        let t = Bpe::from_vocab(&tokens, &["h Ã".into()], &[], "gpt2", "toy").unwrap();
        assert_eq!(t.encode("hé"), [t.id_of("hÃ").unwrap()]);
        assert_eq!(t.encode("\u{A9}"), [t.id_of("Â").unwrap()]);
        assert_eq!(t.decode(&t.encode("a\u{A9}b")), "a\u{FFFD}b");
    }

    #[test]
    fn refusals() {
        let tokens: Vec<String> = byte_chars().iter().map(|c| c.to_string()).collect();
        let err = Bpe::from_vocab(&tokens, &["a b".into()], &[], "llama3", "f.gguf").unwrap_err();
        assert!(err.to_string().contains("\"llama3\""), "{err}");
        let err = Bpe::from_vocab(&tokens, &[], &[], "gpt2", "f.gguf").unwrap_err();
        assert!(err.to_string().contains("without merges"), "{err}");
        let err = Bpe::from_vocab(&tokens, &["a b".into()], &[], "gpt2", "f.gguf").unwrap_err();
        assert!(err.to_string().contains("\"ab\" is not in the vocabulary"), "{err}");
        let err = Bpe::from_vocab(&tokens, &["ab".into()], &[], "gpt2", "f.gguf").unwrap_err();
        assert!(err.to_string().contains("tokenizer.ggml.merges[0]"), "{err}");
    }
}
