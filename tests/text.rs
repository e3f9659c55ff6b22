//! The language model's data path: the byte tokenizer.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::text::{decode, encode_line, Token, BOS, EOS, PAD, VOCAB};

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
