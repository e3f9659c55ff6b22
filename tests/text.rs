//! The language model's data path: the byte tokenizer and TRL-style packing into blocks.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::text::{decode, encode_line, pack, Token, BLOCK, BOS, EOS, PAD, VOCAB};
use lora_lab::LabError;

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
    assert_eq!(decode(&[]), "");
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
    let mut out = vec![0u16; 3 * 8];
    b.fill(&[3, 0, 3], &mut out).unwrap();
    assert_eq!(&out[..8], b.block(3));
    assert_eq!(&out[8..16], b.block(0));
    assert_eq!(&out[16..], b.block(3));
    // An index past the end: an error naming it, nothing written.
    let mut out = vec![7u16; 2 * 8];
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
