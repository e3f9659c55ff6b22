#![cfg(not(target_arch = "wasm32"))]
//! NF4 quantisation (src/quant/) against bitsandbytes: the code table, hand-made blocks whose codes
//! follow from the rules (values on and between midpoints, ±absmax, ties, all-zero and short blocks,
//! odd counts, nibble order), error bounds (per value, and bitsandbytes' own test thresholds), and
//! torch's summation order for the double-quant offset.

use lora_lab::quant::{
    code_at, dequantize_blockwise, dynamic_map, midpoints, pack, quantize_blockwise, torch_mean, torch_sum, unpack,
    Absmax, DoubleQuant, QuantizedWeight, ABSMAX_FLOOR, BLOCK, NESTED_BLOCK, NF4, ZERO_CODE,
};
use lora_lab::rng::{Rng, Stream};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The codes of a weight, one per element.
fn codes(w: &QuantizedWeight) -> Vec<u8> {
    unpack(w.packed(), w.len())
}

fn plain_absmax(w: &QuantizedWeight) -> &[f32] {
    match w.absmax() {
        Absmax::Plain(a) => a,
        Absmax::Double(_) => panic!("expected plain absmax"),
    }
}

fn normal_weights(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed, Stream::BaseInit);
    (0..n).map(|_| rng.normal()).collect()
}

/// Half the larger of the two gaps around `code` in `table`: how far a value coded `code` can be.
fn half_gap(table: &[f32], code: usize) -> f32 {
    let below = if code > 0 { table[code] - table[code - 1] } else { 0.0 };
    let above = if code + 1 < table.len() { table[code + 1] - table[code] } else { 0.0 };
    0.5 * below.max(above)
}

// ---------- the table ----------

#[test]
fn nf4_table_is_bitsandbytes_f32_values() {
    // get_4bit_type("nf4") as torch stores it (f32 bit patterns, printed by torch 2.15).
    let expected: [u32; 16] = [
        0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871, 0x00000000, 0x3da2faff,
        0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000,
    ];
    assert_eq!(bits(&NF4), expected);
    // (code[i] + code[i+1]) / 2 in f32, the bucket bounds.
    let mid: [u32; 15] = [
        0xbf591cd8, 0xbf1c5270, 0xbeeb8480, 0xbeadea76, 0xbe703cec, 0xbe0d38bc, 0xbd3a7871, 0x3d22faff, 0x3df64862,
        0x3e5067e0, 0x3e9582d4, 0x3ec753f9, 0x3f006d04, 0x3f248daf, 0x3f5c89da,
    ];
    assert_eq!(bits(&midpoints()), mid);
    assert_eq!(NF4[ZERO_CODE as usize], 0.0);
    assert!(NF4.windows(2).all(|w| w[0] < w[1]), "NF4 is sorted, so bucketize needs no reordering");
}

// ---------- hand-made blocks ----------

/// A block with absmax exactly 1, so that each value is its own scaled value: the codes follow from
/// the midpoints alone.
#[test]
fn codes_at_between_and_around_midpoints() {
    let mid = midpoints();
    let up: Vec<f32> =
        mid.iter().map(|m| f32::from_bits(m.to_bits().wrapping_add(if *m > 0.0 { 1 } else { u32::MAX }))).collect();
    let down: Vec<f32> =
        mid.iter().map(|m| f32::from_bits(m.to_bits().wrapping_add(if *m > 0.0 { u32::MAX } else { 1 }))).collect();
    for ((u, d), m) in up.iter().zip(&down).zip(&mid) {
        assert!(d < m && m < u, "{d} < {m} < {u}");
    }
    let mut block = vec![1.0f32, -1.0];
    block.extend(&mid);
    block.extend(&up);
    block.extend(&down);
    block.extend(&NF4);
    block.push(-0.0);
    assert_eq!(block.len(), BLOCK);
    let w = QuantizedWeight::quantize(&block, 1, BLOCK, false).unwrap();
    assert_eq!(plain_absmax(&w), &[1.0]);
    let mut expected = vec![15u8, 0];
    expected.extend(0..15u8); // exactly on midpoint i: the lower code, i
    expected.extend(1..16u8); // just above: i + 1
    expected.extend(0..15u8); // just below: i
    expected.extend(0..16u8); // each code value is its own code
    expected.push(ZERO_CODE); // -0.0
    assert_eq!(codes(&w), expected);
    // Dequantised, every code value comes back exactly.
    let back = w.dequantize();
    assert_eq!(bits(&back[47..63]), bits(&NF4));
}

#[test]
fn plus_and_minus_absmax_and_ties() {
    // Two values share the absmax with opposite signs; 1/3 is not exact in f32, so x·(1/absmax) for
    // x = ±3 is not exactly ±1 before the clamp, yet the codes are 15 and 0.
    let mut block: Vec<f32> = (0..BLOCK).map(|i| (i as f32 - 32.0) / 16.0).collect();
    block[5] = 3.0;
    block[9] = -3.0;
    block[20] = 3.0;
    let w = QuantizedWeight::quantize(&block, 2, 32, false).unwrap();
    assert_eq!(plain_absmax(&w), &[3.0]);
    let c = codes(&w);
    assert_eq!((c[5], c[9], c[20]), (15, 0, 15));
    assert_eq!(c[32], ZERO_CODE, "0.0 is code 7");
    let back = w.dequantize();
    assert_eq!((back[5], back[9]), (3.0, -3.0));
}

#[test]
fn all_zero_blocks() {
    // A full all-zero block stores absmax 0 (the 1e-38 floor only guards the division) and codes 7; a
    // short all-zero last block stores the floor itself.
    let mut w = vec![0.0f32; BLOCK + 6];
    w[3] = -0.0;
    w[BLOCK + 2] = -0.0;
    let q = QuantizedWeight::quantize(&w, 1, BLOCK + 6, false).unwrap();
    assert_eq!(bits(plain_absmax(&q)), bits(&[0.0, ABSMAX_FLOOR]));
    assert_eq!(ABSMAX_FLOOR.to_bits(), 0x006ce3ee, "torch's clamp(min=1e-38) as f32 (a subnormal)");
    assert!(codes(&q).iter().all(|&c| c == ZERO_CODE));
    assert!(q.dequantize().iter().all(|&v| v == 0.0));
    // A zero block between two others does not disturb them.
    let mut w: Vec<f32> = (0..3 * BLOCK).map(|i| (i as f32).sin()).collect();
    w[BLOCK..2 * BLOCK].iter_mut().for_each(|v| *v = 0.0);
    let q = QuantizedWeight::quantize(&w, 3, BLOCK, false).unwrap();
    assert_eq!(plain_absmax(&q)[1], 0.0);
    assert!(codes(&q)[BLOCK..2 * BLOCK].iter().all(|&c| c == ZERO_CODE));
    assert!(plain_absmax(&q)[0] > 0.9 && plain_absmax(&q)[2] > 0.9);
}

/// Full blocks multiply by the f32 reciprocal of the absmax, the short last block divides: for these
/// two values (found by search) the results straddle midpoint 9. 0.12134664 · (1/0.5962357) lands just
/// above it (code 10), 0.12134664 / 0.5962357 exactly on it (code 9, the lower).
#[test]
fn short_last_block_divides_where_full_blocks_multiply() {
    let absmax = f32::from_bits(1058579175);
    let x = f32::from_bits(1039697046);
    let m9 = midpoints()[9];
    assert_eq!(x / absmax, m9);
    assert!(x * (1.0 / absmax) > m9);
    let mut w = vec![0.0f32; BLOCK + 3];
    for start in [0, BLOCK] {
        w[start] = absmax;
        w[start + 1] = x;
        w[start + 2] = -x;
    }
    let q = QuantizedWeight::quantize(&w, 1, BLOCK + 3, false).unwrap();
    assert_eq!(bits(plain_absmax(&q)), bits(&[absmax, absmax]));
    let c = codes(&q);
    assert_eq!(&c[..3], &[15, 10, 5], "full block: x·(1/absmax)");
    assert_eq!(&c[BLOCK..], &[15, 9, 5], "short block: x/absmax");
}

#[test]
fn short_block_absmax_is_its_own() {
    // 70 values: one full block of large values, then 6 small ones, which get their own absmax.
    let w: Vec<f32> = (0..70).map(|i| if i < BLOCK { 10.0 + i as f32 } else { 0.01 * (i as f32 - 66.0) }).collect();
    let q = QuantizedWeight::quantize(&w, 7, 10, false).unwrap();
    assert_eq!(plain_absmax(&q), &[73.0, w[69]]);
    // ±1/3 and ±2/3 of the short block's absmax, 0 and 1: codes 1, 4, 7, 11, 14, 15 (nearest NF4 values
    // −0.696, −0.284, 0, 0.338, 0.723, 1).
    assert_eq!(&codes(&q)[BLOCK..], &[1, 4, ZERO_CODE, 11, 14, 15]);
    assert_eq!(q.blocks(), 2);
}

#[test]
fn nibble_order_and_odd_counts() {
    assert_eq!(pack(&[1, 2, 3]), vec![0x12, 0x37], "first code high, odd count padded with code 7");
    assert_eq!(pack(&[15, 0]), vec![0xf0]);
    assert_eq!((code_at(&[0xab], 0), code_at(&[0xab], 1)), (0xa, 0xb));
    // A 3 × 5 weight: 15 values, 8 bytes, the last low nibble the padding.
    let w: Vec<f32> = vec![-1.0, 1.0, 0.0, 0.5, -0.5, 0.25, -0.25, 0.75, -0.75, 0.1, -0.1, 0.9, -0.9, 0.3, -0.3];
    let q = QuantizedWeight::quantize(&w, 3, 5, false).unwrap();
    assert_eq!(q.packed().len(), 8);
    assert_eq!(q.packed()[0], 0x0f, "codes 0 (−1) then 15 (1)");
    assert_eq!(q.packed()[7] & 0x0f, ZERO_CODE);
    assert_eq!(q.code(0, 2), ZERO_CODE);
    assert_eq!((q.code(0, 0), q.code(0, 1)), (0, 15));
}

#[test]
fn non_finite_and_empty_weights_are_refused() {
    let mut w = vec![0.5f32; 12];
    w[7] = f32::NAN;
    let msg = QuantizedWeight::quantize(&w, 3, 4, false).unwrap_err().to_string();
    assert_eq!(msg, "cannot quantise a weight holding a non-finite value (NaN) at row 1, column 3");
    w[7] = f32::NEG_INFINITY;
    let msg = QuantizedWeight::quantize(&w, 3, 4, true).unwrap_err().to_string();
    assert!(msg.contains("non-finite value (-inf) at row 1, column 3"), "{msg}");
    let msg = QuantizedWeight::quantize(&w[..11], 3, 4, false).unwrap_err().to_string();
    assert!(msg.contains("11 values do not make a 3 × 4 weight"), "{msg}");
    assert!(QuantizedWeight::quantize(&[], 0, 4, false).is_err());
    // Double quantisation of absmax whose mean overflows f32.
    let huge = vec![f32::MAX; 2 * BLOCK];
    let msg = QuantizedWeight::quantize(&huge, 2, BLOCK, true).unwrap_err().to_string();
    assert!(msg.contains("the mean of the block absmax is inf"), "{msg}");
    assert!(QuantizedWeight::quantize(&huge, 2, BLOCK, false).is_ok());
}

// ---------- dequantisation and its error ----------

#[test]
fn dequantised_values_are_within_half_a_code_gap_times_absmax() {
    for (rows, cols) in [(1, 1), (3, 7), (17, 33), (64, 64), (10, 257)] {
        let w = normal_weights(rows * cols, (rows * 1000 + cols) as u64);
        let q = QuantizedWeight::quantize(&w, rows, cols, false).unwrap();
        let back = q.dequantize();
        let c = codes(&q);
        for (i, (&x, &y)) in w.iter().zip(&back).enumerate() {
            let a = q.scales()[i / BLOCK];
            let bound = half_gap(&NF4, c[i] as usize) * a * (1.0 + 1e-6) + a * 1e-7;
            assert!(
                (x - y).abs() <= bound,
                "{rows}×{cols} [{i}]: {x} → {y} (code {}, absmax {a}, bound {bound})",
                c[i]
            );
            assert_eq!(y, NF4[c[i] as usize] * a);
        }
    }
}

/// bitsandbytes' tests/test_functional.py thresholds on `torch.randn(1024, 1024)`:
/// `test_4bit_quant` (nf4, blocksize 64: mean |err| < 0.072798 + 7·0.000074, mean relative error
/// < 0.203339 + 7·0.000340) and `test_4bit_compressed_stats` (with and without double quantisation:
/// < 0.11 and < 0.28).
#[test]
fn bitsandbytes_error_thresholds_on_randn_1024x1024() {
    let n = 1024;
    let w = normal_weights(n * n, 42);
    for double_quant in [false, true] {
        let q = QuantizedWeight::quantize(&w, n, n, double_quant).unwrap();
        let back = q.dequantize();
        let (mut err, mut rel) = (0.0f64, 0.0f64);
        for (&x, &y) in w.iter().zip(&back) {
            let e = (x - y).abs() as f64;
            err += e;
            rel += e / (x.abs() as f64 + 1e-8);
        }
        let (err, rel) = (err / (n * n) as f64, rel / (n * n) as f64);
        assert!(err < 0.11 && rel < 0.28, "double_quant {double_quant}: err {err}, rel {rel}");
        if !double_quant {
            assert!(err < 0.072798 + 7.0 * 0.000074, "err {err}");
            assert!(rel < 0.203339 + 7.0 * 0.000340, "rel {rel}");
        }
    }
}

// ---------- double quantisation ----------

#[test]
fn dynamic_map_is_create_dynamic_map_signed() {
    let map = dynamic_map();
    assert!(map.windows(2).all(|w| w[0] < w[1]), "sorted, all distinct");
    assert_eq!(map[127], 0.0);
    assert_eq!(map[255], 1.0);
    assert!(map[254] > 0.9929 && map[254] < 0.9930, "the midpoint of linspace(0.1, 1, 65)'s last two");
    assert_eq!(map.iter().filter(|v| **v < 0.0).count(), 127);
    for i in 0..127 {
        assert_eq!(map[i], -map[254 - i], "the signed map is symmetric but for the 1.0");
    }
    // The smallest magnitudes: 1e-6 times the midpoint of linspace(0.1, 1, 2) = 0.55e-6.
    assert_eq!(map[128], 1e-6f64 as f32 * ((0.1f32 + 1.0) / 2.0));
}

#[test]
fn double_quant_round_trip_bounds() {
    let w = normal_weights(300 * 200, 9);
    let plain = QuantizedWeight::quantize(&w, 300, 200, false).unwrap();
    let double = QuantizedWeight::quantize(&w, 300, 200, true).unwrap();
    assert_eq!(plain.packed(), double.packed(), "the 4-bit codes do not depend on how the absmax is stored");
    let Absmax::Double(d) = double.absmax() else { panic!("double") };
    let absmax = plain.scales();
    assert_eq!(absmax.len(), 938);
    assert_eq!((d.codes.len(), d.nested_absmax.len(), d.nested_map.len()), (938, 4, 256));
    assert_eq!(d.offset, torch_mean(absmax));
    let map = dynamic_map();
    // Each dequantised absmax is within half a gap of the dynamic map (times its nested absmax) of the
    // true one, plus the two f32 roundings of code · nested_absmax + offset.
    for (b, (&a, &back)) in absmax.iter().zip(double.scales()).enumerate() {
        let nested = d.nested_absmax[b / NESTED_BLOCK];
        let bound = half_gap(&map, d.codes[b] as usize) * nested * (1.0 + 1e-6) + 2.0 * f32::EPSILON * a.max(d.offset);
        assert!((a - back).abs() <= bound, "block {b}: {a} → {back} (bound {bound})");
        assert_eq!(back, map[d.codes[b] as usize] * nested + d.offset);
    }
    // The nested absmax is the largest |absmax − offset| of its block.
    for (k, chunk) in absmax.chunks(NESTED_BLOCK).enumerate() {
        let m = chunk.iter().map(|a| (a - d.offset).abs()).fold(0.0f32, f32::max);
        assert_eq!(d.nested_absmax[k], m);
    }
    // Dequantised weights differ from the plain ones only by the absmax's error.
    for (i, (x, y)) in plain.dequantize().iter().zip(double.dequantize()).enumerate() {
        let (a, b) = (plain.scales()[i / BLOCK], double.scales()[i / BLOCK]);
        let rounding = 2.0 * f32::EPSILON * x.abs().max(y.abs());
        assert!((x - y).abs() <= (a - b).abs() + rounding, "[{i}] {x} vs {y}");
    }
}

/// bitsandbytes' `test_dynamic_blockwise_quantization` thresholds for the 8-bit blockwise code it
/// uses on the absmax (signed dynamic map, blocksize 256, `torch.randn(1024, 1024)`): mean |err| <
/// 0.011, mean relative error < 0.018; and on `torch.rand`: < 0.0036 and < 0.015.
#[test]
fn bitsandbytes_blockwise_8bit_thresholds() {
    let map = dynamic_map();
    let bounds: Vec<f32> = map.windows(2).map(|c| (c[0] + c[1]) / 2.0).collect();
    let n = 1024 * 1024;
    let mut rng = Rng::new(3, Stream::BaseInit);
    let uniform: Vec<f32> = (0..n).map(|_| rng.uniform()).collect();
    for (x, max_err, max_rel) in [(normal_weights(n, 5), 0.011, 0.018), (uniform, 0.0036, 0.015)] {
        let (codes, absmax) = quantize_blockwise(&x, NESTED_BLOCK, &bounds);
        let back = dequantize_blockwise(&codes, &absmax, &map, NESTED_BLOCK);
        let (mut err, mut rel) = (0.0f64, 0.0f64);
        for (&a, &b) in x.iter().zip(&back) {
            let e = (a - b).abs() as f64;
            err += e;
            rel += e / (a as f64 + 1e-8).abs();
        }
        let (err, rel) = (err / n as f64, rel / n as f64);
        assert!(err < max_err && rel < max_rel, "err {err}, rel {rel}");
    }
}

#[test]
fn double_quant_of_equal_absmax_is_exact() {
    // Every block has absmax 0.5: the offset is 0.5, the centred values are all 0, so the nested absmax
    // is 0 for full nested blocks (here the only one is short, so the floor) and every code the map's 0.
    let w: Vec<f32> = (0..10 * BLOCK).map(|i| if i % BLOCK == 0 { 0.5 } else { 0.1 }).collect();
    let q = QuantizedWeight::quantize(&w, 10, BLOCK, true).unwrap();
    let Absmax::Double(d) = q.absmax() else { panic!() };
    assert_eq!(d.offset, 0.5);
    assert_eq!(bits(&d.nested_absmax), bits(&[ABSMAX_FLOOR]));
    assert!(d.codes.iter().all(|&c| c == 127));
    assert!(q.scales().iter().all(|&s| s == 0.5));
    let again = DoubleQuant::compress(&[0.5; 256]).unwrap();
    assert_eq!(again.nested_absmax, vec![0.0], "a full nested block of zeros stores 0");
}

// ---------- torch's summation order ----------

/// The generator of tests/fixtures/quant/make_fixture.py's torch checks: 24-bit LCG values in [0, 1).
fn lcg_unit(n: usize, seed: u32) -> Vec<f32> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            (state >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
        })
        .collect()
}

#[test]
fn torch_sum_order() {
    // Five values: torch sums x0 + x4 first (4 interleaved accumulators), a running sum would lose the 1s.
    assert_eq!(torch_sum(&[1e8, 1.0, 1.0, 1.0, -1e8]), 3.0);
    // torch 2.15 on CPU, x = lcg_unit(n, seed): (sum, mean) bit patterns. The f64 sums rounded to f32
    // differ from them in the last bit, so the order matters.
    for (n, seed, sum, mean) in [
        (7, 1, 0x40409e88u32, 0x3edc22e5u32),
        (100, 2, 0x4251dfa0, 0x3f0651ae),
        (1000, 3, 0x43f5d016, 0x3efbb65c),
        (6272, 4, 0x4545c825, 0x3f0129e4),
        (32768, 5, 0x46808730, 0x3f008730),
    ] {
        let x = lcg_unit(n, seed);
        assert_eq!(torch_sum(&x).to_bits(), sum, "sum of {n}");
        assert_eq!(torch_mean(&x).to_bits(), mean, "mean of {n}");
    }
}

// ---------- layout helpers ----------

#[test]
fn dequantised_elements_are_code_values_times_block_scales_and_sizes_count_every_tensor() {
    let (rows, cols) = (9, 70);
    let w = normal_weights(rows * cols, 77);
    for double_quant in [false, true] {
        let q = QuantizedWeight::quantize(&w, rows, cols, double_quant).unwrap();
        let all = q.dequantize();
        assert_eq!(all.len(), rows * cols);
        for r in 0..rows {
            for c in 0..cols {
                let i = r * cols + c;
                assert_eq!(all[i], q.quant_map()[q.code(r, c) as usize] * q.scales()[i / 64], "element ({r}, {c})");
            }
        }
        assert_eq!(q.f32_byte_size(), rows * cols * 4);
        let expected = 315 + if double_quant { 10 + 4 + 1024 + 4 } else { 40 } + 64;
        assert_eq!(q.byte_size(), expected, "packed + absmax (+ nested) + quant_map");
    }
}

// ---------- against bitsandbytes' own algorithms (tests/fixtures/quant/make_fixture.py) ----------

mod fixture {
    use super::*;
    use lora_lab::io::{read_nf4_safetensors, read_safetensors, write_nf4_safetensors, Nf4Tensors};
    use lora_lab::lora::Module;

    pub const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant/");

    /// make_fixture.py's `fixture_weights`: a 32-bit LCG, every step exact in f32.
    pub fn weights(rows: usize, cols: usize, seed: u32) -> Vec<f32> {
        let mut state = seed;
        (0..rows * cols)
            .map(|i| {
                state = state.wrapping_mul(1664525).wrapping_add(1013904223);
                let k = (state >> 8) as i32 - (1 << 23);
                k as f32 * (2.0f32).powi(-23) * (2.0f32).powi(-((i / cols) as i32 % 5))
            })
            .collect()
    }

    fn special_layer1(w: &mut [f32]) {
        w[3..64].iter_mut().for_each(|v| *v *= 0.5);
        for start in [0, 64] {
            w[start] = f32::from_bits(1058579175);
            w[start + 1] = f32::from_bits(1039697046);
            w[start + 2] = -f32::from_bits(1039697046) / 2.0;
        }
    }

    fn special_layer3(w: &mut [f32]) {
        let mid = midpoints();
        let next = |m: f32, up: bool| f32::from_bits(if (m > 0.0) == up { m.to_bits() + 1 } else { m.to_bits() - 1 });
        let mut block0 = vec![1.0f32, -1.0];
        block0.extend(mid);
        block0.extend(mid.iter().map(|&m| next(m, true)));
        block0.extend(mid.iter().map(|&m| next(m, false)));
        block0.extend(NF4);
        block0.push(-0.0);
        w[..64].copy_from_slice(&block0);
        w[64..128].iter_mut().for_each(|v| *v = 0.0);
        w[100] = -0.0;
        w[128..192].iter_mut().for_each(|v| *v *= 3.0);
        w[130] = 3.0;
        w[150] = -3.0;
    }

    /// (module, rows, cols, double quantisation, seed), as make_fixture.py's LAYERS.
    pub const LAYERS: [(&str, usize, usize, bool, u32); 3] =
        [("layers.1", 3, 23, false, 11), ("layers.3", 4, 48, false, 33), ("layers.5", 130, 127, true, 55)];

    pub fn modules() -> Vec<Module> {
        LAYERS
            .iter()
            .map(|&(n, rows, cols, _, _)| Module {
                name: n.to_string(),
                in_features: cols,
                out_features: rows,
                has_bias: true,
            })
            .collect()
    }

    /// (key, shape, values) of an F32 tensor.
    pub type Owned = (String, Vec<usize>, Vec<f32>);

    /// The three Linears quantised here, and their biases.
    pub fn quantized() -> (Vec<QuantizedWeight>, Vec<Owned>) {
        let mut out = Vec::new();
        let mut biases = Vec::new();
        for (name, rows, cols, double_quant, seed) in LAYERS {
            let mut w = weights(rows, cols, seed);
            match name {
                "layers.1" => special_layer1(&mut w),
                "layers.3" => special_layer3(&mut w),
                _ => {}
            }
            out.push(QuantizedWeight::quantize(&w, rows, cols, double_quant).unwrap());
            biases.push((format!("{name}.bias"), vec![rows], weights(1, rows, seed + 1)));
        }
        (out, biases)
    }

    pub fn export(weights: &[QuantizedWeight], biases: &[Owned]) -> Vec<u8> {
        let q: Vec<(&str, &QuantizedWeight)> = LAYERS.iter().map(|l| l.0).zip(weights).collect();
        let b: Vec<(String, Vec<usize>, &[f32])> =
            biases.iter().map(|(n, s, d)| (n.clone(), s.clone(), &d[..])).collect();
        write_nf4_safetensors(&q, &b).unwrap()
    }

    pub fn bytes() -> Vec<u8> {
        std::fs::read(format!("{DIR}model_nf4.safetensors")).unwrap()
    }

    pub fn read(bytes: &[u8]) -> lora_lab::Result<Nf4Tensors> {
        read_nf4_safetensors(bytes, "model.safetensors", &modules())
    }

    #[test]
    fn export_is_byte_identical_to_bitsandbytes_state_dict() {
        let (weights, biases) = quantized();
        let ours = export(&weights, &biases);
        let theirs = bytes();
        if ours != theirs {
            // Say which tensor differs before failing.
            let a = lora_lab::io::read_tensors(&ours, "ours").unwrap();
            let b = lora_lab::io::read_tensors(&theirs, "fixture").unwrap();
            assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
            for (k, t) in &a {
                assert_eq!(t, &b[k], "{k} differs from bitsandbytes'");
            }
            panic!("same tensors, different bytes: the header differs");
        }
    }

    #[test]
    fn codes_absmax_and_maps_equal_bitsandbytes() {
        let file = read(&bytes()).unwrap();
        let (weights, _) = quantized();
        for ((name, ..), ours) in LAYERS.iter().zip(&weights) {
            let theirs = &file.quantized[*name];
            assert_eq!(ours.packed(), theirs.packed(), "{name}: codes");
            assert_eq!(bits(ours.scales()), bits(theirs.scales()), "{name}: dequantised absmax");
            assert_eq!(ours, theirs, "{name}: the whole quantised weight");
        }
        let Absmax::Double(d) = file.quantized["layers.5"].absmax() else { panic!("layers.5 is double-quantised") };
        assert_eq!(bits(&d.nested_map), bits(&dynamic_map()), "create_dynamic_map(signed=True)");
        assert_eq!(d.codes.len(), 258);
        assert_eq!(d.nested_absmax.len(), 2);
        // The hand-made blocks, as bitsandbytes coded them.
        let l1 = unpack(file.quantized["layers.1"].packed(), 69);
        assert_eq!((l1[1], l1[65]), (10, 9), "x·(1/absmax) in the full block, x/absmax in the short one");
        let l3 = &file.quantized["layers.3"];
        assert_eq!(plain_absmax(l3), &[1.0, 0.0, 3.0]);
        assert!(unpack(l3.packed(), 192)[64..128].iter().all(|&c| c == ZERO_CODE));
        assert_eq!(file.tensors.len(), 3, "the biases");
    }

    #[test]
    fn dequantisation_equals_bitsandbytes() {
        let expected =
            read_safetensors(&std::fs::read(format!("{DIR}dequantized.safetensors")).unwrap(), "dequantized").unwrap();
        let (weights, _) = quantized();
        assert_eq!(bits(&weights[0].dequantize()), bits(&expected["layers.1.weight"].data));
        assert_eq!(bits(&weights[1].dequantize()), bits(&expected["layers.3.weight"].data));
        let l5 = &weights[2];
        assert_eq!(bits(l5.scales()), bits(&expected["layers.5.absmax"].data), "dequantize_blockwise + offset");
        assert_eq!(bits(&l5.dequantize()[..2 * l5.cols()]), bits(&expected["layers.5.rows"].data));
        let Absmax::Double(d) = l5.absmax() else { panic!() };
        assert_eq!(d.offset.to_bits(), expected["layers.5.offset"].data[0].to_bits(), "torch's f32 mean");
    }
}

// ---------- files: export → import, and every bad file refused ----------

mod files {
    use super::fixture::{self, modules};
    use super::*;
    use lora_lab::io::{
        nf4_keys, parse_quantization_config, quant_state_json, quantization_config, read_tensors, write_tensors,
        AnyTensor, Data, Values,
    };
    use serde_json::{json, Value};
    use std::collections::{BTreeMap, HashMap};

    const FILE: &str = "model.safetensors";

    #[test]
    fn export_import_export_is_byte_for_byte() {
        let (weights, biases) = fixture::quantized();
        let bytes = fixture::export(&weights, &biases);
        let file = fixture::read(&bytes).unwrap();
        for ((name, ..), w) in fixture::LAYERS.iter().zip(&weights) {
            assert_eq!(&file.quantized[*name], w, "{name}");
        }
        for (name, shape, data) in &biases {
            assert_eq!((&file.tensors[name].shape, bits(&file.tensors[name].data)), (shape, bits(data)));
        }
        let again: Vec<QuantizedWeight> = fixture::LAYERS.iter().map(|l| file.quantized[l.0].clone()).collect();
        assert!(fixture::export(&again, &biases) == bytes, "a second export differs");
        // Double-quantised weights of every size up to three nested blocks round-trip too.
        for (rows, cols) in [(1, 1), (1, 65), (5, 129), (64, 257), (3, 64 * 256 + 1)] {
            let w = normal_weights(rows * cols, (rows + cols) as u64);
            for dq in [false, true] {
                let q = QuantizedWeight::quantize(&w, rows, cols, dq).unwrap();
                let bytes = lora_lab::io::write_nf4_safetensors(&[("p", &q)], &[]).unwrap();
                let m = Module { name: "p".into(), in_features: cols, out_features: rows, has_bias: false };
                let back = lora_lab::io::read_nf4_safetensors(&bytes, FILE, &[m]).unwrap();
                assert_eq!(back.quantized["p"], q, "{rows}×{cols} dq {dq}");
                assert!(back.tensors.is_empty());
            }
        }
    }
    use lora_lab::lora::Module;

    #[test]
    fn quant_state_json_is_json_dumps_of_as_dict() {
        let (weights, _) = fixture::quantized();
        assert_eq!(
            quant_state_json(&weights[0]),
            r#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [3, 23]}"#
        );
        assert_eq!(
            quant_state_json(&weights[2]),
            r#"{"quant_type": "nf4", "blocksize": 64, "dtype": "float32", "shape": [130, 127], "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": 0.46367406845092773}"#
        );
        assert_eq!(nf4_keys("m", false).len(), 4);
        assert_eq!(
            nf4_keys("m", true),
            [
                "m.weight",
                "m.weight.absmax",
                "m.weight.quant_map",
                "m.weight.nested_absmax",
                "m.weight.nested_quant_map",
                "m.weight.quant_state.bitsandbytes__nf4"
            ]
        );
    }

    #[test]
    fn python_float_repr() {
        use lora_lab::io::nf4_file::python_float_repr as repr;
        // Python 3's repr of each value.
        for (x, text) in [
            (0.46367406845092773, "0.46367406845092773"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (123.0, "123.0"),
            (1e16, "1e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.5e-07, "1.5e-07"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (0.000123456, "0.000123456"),
            (12345678901234567890.0, "1.2345678901234567e+19"),
            (100.0, "100.0"),
            (0.0, "0.0"),
        ] {
            assert_eq!(repr(x), text);
        }
    }

    // ----- bad files -----

    type Map = BTreeMap<String, AnyTensor>;

    fn good() -> Map {
        read_tensors(&fixture::bytes(), "fixture").unwrap()
    }

    fn write(map: &Map) -> Vec<u8> {
        let tensors: Vec<(String, Vec<usize>, Values)> = map
            .iter()
            .map(|(k, t)| {
                let v = match &t.data {
                    Data::F32(d) => Values::F32(d),
                    Data::U8(d) => Values::U8(d),
                };
                (k.clone(), t.shape.clone(), v)
            })
            .collect();
        write_tensors(&tensors, Some(HashMap::from([("format".to_string(), "pt".to_string())]))).unwrap()
    }

    /// The message for an edited fixture, which must be refused; it names the file.
    fn refused(edit: impl FnOnce(&mut Map)) -> String {
        let mut map = good();
        edit(&mut map);
        let msg = fixture::read(&write(&map)).unwrap_err().to_string();
        assert!(msg.starts_with("model.safetensors: "), "{msg}");
        msg
    }

    fn assert_mentions(msg: &str, parts: &[&str]) {
        for p in parts {
            assert!(msg.contains(p), "expected {p:?} in: {msg}");
        }
    }

    const L1_STATE: &str = "layers.1.weight.quant_state.bitsandbytes__nf4";
    const L5_STATE: &str = "layers.5.weight.quant_state.bitsandbytes__nf4";

    fn json_of(map: &Map, key: &str) -> Value {
        let Data::U8(b) = &map[key].data else { panic!() };
        serde_json::from_slice(b).unwrap()
    }

    fn put(map: &mut Map, key: &str, shape: Vec<usize>, data: Data) {
        map.insert(key.to_string(), AnyTensor { shape, data });
    }

    fn set_bytes(map: &mut Map, key: &str, bytes: Vec<u8>) {
        map.insert(key.to_string(), AnyTensor { shape: vec![bytes.len()], data: Data::U8(bytes) });
    }

    fn edit_json(map: &mut Map, key: &str, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        let mut v = json_of(map, key);
        f(v.as_object_mut().unwrap());
        set_bytes(map, key, v.to_string().into_bytes());
    }

    #[test]
    fn the_fixture_itself_is_accepted() {
        assert!(fixture::read(&write(&good())).is_ok());
    }

    #[test]
    fn wrong_sizes() {
        let msg = refused(|m| {
            let t = m.get_mut("layers.1.weight").unwrap();
            t.shape = vec![34, 1];
            let Data::U8(d) = &mut t.data else { panic!() };
            d.pop();
        });
        assert_mentions(
            &msg,
            &["layers.1.weight has shape [34, 1]; the packed NF4 codes of a 3 × 23 Linear (69 values, two per byte) are [35, 1]"],
        );
        let msg = refused(|m| m.get_mut("layers.1.weight").unwrap().shape = vec![1, 35]);
        assert_mentions(&msg, &["layers.1.weight has shape [1, 35]", "are [35, 1]"]);
        let msg = refused(|m| put(m, "layers.3.weight.absmax", vec![2], Data::F32(vec![1.0, 0.0])));
        assert_mentions(&msg, &["layers.3.weight.absmax has shape [2]; one absmax per block of 64 are [3]"]);
        let msg = refused(|m| put(m, "layers.5.weight.nested_absmax", vec![1], Data::F32(vec![1.0])));
        assert_mentions(&msg, &["layers.5.weight.nested_absmax has shape [1]", "are [2]"]);
        let msg = refused(|m| put(m, "layers.5.weight.nested_quant_map", vec![255], Data::F32(vec![0.0; 255])));
        assert_mentions(
            &msg,
            &["layers.5.weight.nested_quant_map has shape [255]; the 256 values of an 8-bit map are [256]"],
        );
        let msg = refused(|m| put(m, "layers.1.weight.quant_map", vec![4, 4], Data::F32(NF4.to_vec())));
        assert_mentions(&msg, &["layers.1.weight.quant_map has shape [4, 4]; the 16 NF4 values are [16]"]);
        let msg = refused(|m| m.get_mut(L1_STATE).unwrap().shape = vec![4, 19]);
        assert_mentions(&msg, &[L1_STATE, "has shape [4, 19]; the quant state is a 1-D U8 tensor"]);
    }

    #[test]
    fn unknown_or_unsupported_quant_type() {
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.insert("quant_type".into(), json!("int4")))));
        assert_mentions(&msg, &[L1_STATE, "quant_type is \"int4\"; only \"nf4\" is supported"]);
        // An fp4 file names its state bitsandbytes__fp4.
        let msg = refused(|m| {
            let t = m.remove(L1_STATE).unwrap();
            m.insert("layers.1.weight.quant_state.bitsandbytes__fp4".into(), t);
            edit_json(m, "layers.1.weight.quant_state.bitsandbytes__fp4", |o| {
                drop(o.insert("quant_type".into(), json!("fp4")))
            });
        });
        assert_mentions(
            &msg,
            &["layers.1.weight.quant_state.bitsandbytes__fp4: quant type \"fp4\" is not supported; only nf4 is"],
        );
    }

    #[test]
    fn blocksize_other_than_64() {
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.insert("blocksize".into(), json!(128)))));
        assert_mentions(&msg, &[L1_STATE, "blocksize is 128; only 64 (QLoRA's) is supported"]);
        let msg = refused(|m| edit_json(m, L5_STATE, |o| drop(o.insert("nested_blocksize".into(), json!(512)))));
        assert_mentions(&msg, &[L5_STATE, "nested_blocksize is 512; only 256"]);
    }

    #[test]
    fn bad_json() {
        let msg = refused(|m| set_bytes(m, L1_STATE, br#"{"quant_type": "nf4", "blocksize": 6"#.to_vec()));
        assert_mentions(&msg, &[L1_STATE, "not valid JSON"]);
        let msg = refused(|m| set_bytes(m, L1_STATE, vec![0xff, 0xfe, b'{', b'}']));
        assert_mentions(&msg, &[L1_STATE, "not UTF-8 text"]);
        let msg = refused(|m| set_bytes(m, L1_STATE, b"[1, 2]".to_vec()));
        assert_mentions(&msg, &[L1_STATE, "not a JSON object"]);
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.insert("compress".into(), json!(true)))));
        assert_mentions(&msg, &["unknown key \"compress\""]);
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.remove("dtype"))));
        assert_mentions(&msg, &[L1_STATE, "dtype is missing"]);
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.insert("dtype".into(), json!("bfloat16")))));
        assert_mentions(&msg, &["dtype is \"bfloat16\"; only \"float32\" is supported"]);
        let msg = refused(|m| edit_json(m, L5_STATE, |o| drop(o.insert("nested_offset".into(), json!("0.5")))));
        assert_mentions(&msg, &[L5_STATE, "nested_offset is \"0.5\", not a finite number"]);
        let msg = refused(|m| edit_json(m, L5_STATE, |o| drop(o.insert("nested_dtype".into(), json!("float16")))));
        assert_mentions(&msg, &["nested_dtype is \"float16\"; only \"float32\""]);
        let msg = refused(|m| edit_json(m, L5_STATE, |o| drop(o.remove("nested_dtype"))));
        assert_mentions(&msg, &[L5_STATE, "nested_blocksize, nested_offset without nested_dtype"]);
    }

    #[test]
    fn shape_mismatch_against_the_linear() {
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.insert("shape".into(), json!([23, 3])))));
        assert_mentions(&msg, &[L1_STATE, "shape is [23,3], but the Linear is 3 × 23 (out × in): expected [3, 23]"]);
        let msg = refused(|m| edit_json(m, L1_STATE, |o| drop(o.insert("shape".into(), Value::Null))));
        assert_mentions(&msg, &["shape is null, but the Linear is 3 × 23"]);
        // The same file read for a Linear of another size.
        let mut mods = modules();
        mods[0].in_features = 24;
        let msg = lora_lab::io::read_nf4_safetensors(&fixture::bytes(), FILE, &mods).unwrap_err().to_string();
        assert_mentions(&msg, &[L1_STATE, "shape is [3,23], but the Linear is 3 × 24"]);
    }

    #[test]
    fn missing_keys() {
        let msg = refused(|m| drop(m.remove("layers.1.weight.quant_map")));
        assert_eq!(msg, "model.safetensors: missing layers.1.weight.quant_map (the quantised Linear layers.1)");
        let msg = refused(|m| {
            m.remove("layers.3.weight");
            m.remove("layers.3.weight.quant_state.bitsandbytes__nf4");
        });
        assert_mentions(
            &msg,
            &["missing layers.3.weight, layers.3.weight.quant_state.bitsandbytes__nf4 (the quantised Linear layers.3)"],
        );
        // An f32 weight where a quantised one is expected.
        let msg = refused(|m| put(m, "layers.1.weight", vec![3, 23], Data::F32(vec![0.0; 69])));
        assert_mentions(&msg, &["layers.1.weight is F32 [3, 23]: this Linear is not quantised"]);
    }

    #[test]
    fn double_quant_state_must_be_whole() {
        // U8 absmax without the nested tensors.
        let msg = refused(|m| drop(m.remove("layers.5.weight.nested_absmax")));
        assert_mentions(
            &msg,
            &["layers.5.weight.absmax is U8 (double quantisation) but layers.5.weight.nested_absmax is missing"],
        );
        let msg = refused(|m| {
            m.remove("layers.5.weight.nested_absmax");
            m.remove("layers.5.weight.nested_quant_map");
        });
        assert_mentions(&msg, &["but layers.5.weight.nested_absmax and layers.5.weight.nested_quant_map are missing"]);
        // U8 absmax with a quant state that has no nested keys.
        let msg = refused(|m| {
            edit_json(m, L5_STATE, |o| {
                for k in ["nested_blocksize", "nested_dtype", "nested_offset"] {
                    o.remove(k);
                }
            })
        });
        assert_mentions(&msg, &["layers.5.weight.absmax is U8 (double-quantised codes) but", "has no nested_offset"]);
        // F32 absmax under a nested quant state.
        let msg = refused(|m| put(m, "layers.5.weight.absmax", vec![258], Data::F32(vec![0.5; 258])));
        assert_mentions(&msg, &["layers.5.weight.absmax is F32 but", "describes double quantisation"]);
        // Nested tensors beside a plain absmax.
        let msg = refused(|m| put(m, "layers.1.weight.nested_absmax", vec![1], Data::F32(vec![1.0])));
        assert_mentions(&msg, &["layers.1.weight.nested_absmax is there but layers.1.weight.absmax is F32"]);
        // A plain absmax stored as U8.
        let msg = refused(|m| put(m, "layers.1.weight.absmax", vec![2], Data::U8(vec![1, 2])));
        assert_mentions(&msg, &["layers.1.weight.absmax is U8 (double-quantised codes) but"]);
    }

    #[test]
    fn bad_values() {
        let msg = refused(|m| put(m, "layers.1.weight.absmax", vec![2], Data::F32(vec![0.5, f32::NAN])));
        assert_mentions(&msg, &["layers.1.weight.absmax holds a non-finite value (NaN) at index 1"]);
        let msg = refused(|m| put(m, "layers.1.weight.absmax", vec![2], Data::F32(vec![0.5, -1.0])));
        assert_mentions(&msg, &["layers.1.weight: absmax: value 1 is -1, not a finite non-negative number"]);
        let msg = refused(|m| {
            let mut map = NF4.to_vec();
            map[3] = 0.25;
            put(m, "layers.3.weight.quant_map", vec![16], Data::F32(map));
        });
        assert_mentions(
            &msg,
            &["layers.3.weight.quant_map: value 3 is 0.25", "bitsandbytes decodes nf4 codes with its own table"],
        );
        let msg = refused(|m| {
            let mut map = vec![0.0f32; 256];
            map[7] = f32::INFINITY;
            put(m, "layers.5.weight.nested_quant_map", vec![256], Data::F32(map));
        });
        assert_mentions(&msg, &["layers.5.weight.nested_quant_map holds a non-finite value (inf) at index 7"]);
    }

    #[test]
    fn other_tensors() {
        let msg = refused(|m| {
            let t = m["layers.1.weight.quant_state.bitsandbytes__nf4"].clone();
            m.insert("layers.7.weight.quant_state.bitsandbytes__nf4".into(), t);
        });
        assert_mentions(&msg, &["unexpected layers.7.weight.quant_state.bitsandbytes__nf4: layers.7 is not one of the quantised Linears (layers.1, layers.3, layers.5)"]);
        let msg = refused(|m| put(m, "mask", vec![2], Data::U8(vec![1, 0])));
        assert_mentions(&msg, &["tensor mask is U8 [2]: only the quantised Linears' weights and quant states are U8"]);
        // Non-F32/U8 dtypes are refused by the header check, naming the tensor.
        let header = r#"{"x":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend_from_slice(&[0; 4]);
        let msg = fixture::read(&bytes).unwrap_err().to_string();
        assert_mentions(&msg, &["model.safetensors: tensor x has dtype F16; a 4-bit (NF4) file holds only F32 and U8"]);
        // Extra F32 tensors are returned for the caller to check.
        let mut map = good();
        map.insert("layers.1.weight.extra".into(), AnyTensor { shape: vec![1], data: Data::F32(vec![1.0]) });
        let file = fixture::read(&write(&map)).unwrap();
        assert!(file.tensors.contains_key("layers.1.weight.extra"));
    }

    // ----- quantization_config -----

    #[test]
    fn quantization_config_as_transformers_writes_it() {
        // transformers 5.24.0: BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
        // bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=torch.float32).to_dict(), sorted.
        let expected = r#"{
  "_load_in_4bit": true,
  "_load_in_8bit": false,
  "bnb_4bit_compute_dtype": "float32",
  "bnb_4bit_quant_storage": "uint8",
  "bnb_4bit_quant_type": "nf4",
  "bnb_4bit_use_double_quant": true,
  "llm_int8_enable_fp32_cpu_offload": false,
  "llm_int8_has_fp16_weight": false,
  "llm_int8_skip_modules": null,
  "llm_int8_threshold": 6.0,
  "load_in_4bit": true,
  "load_in_8bit": false,
  "quant_method": "bitsandbytes"
}"#;
        assert_eq!(serde_json::to_string_pretty(&quantization_config(true)).unwrap(), expected);
        for dq in [false, true] {
            assert_eq!(parse_quantization_config(&quantization_config(dq)).unwrap(), dq);
        }
        // QLORA.md's seven keys alone.
        let short = json!({"quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": false,
            "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": false, "bnb_4bit_compute_dtype": "float32",
            "bnb_4bit_quant_storage": "uint8"});
        assert!(!parse_quantization_config(&short).unwrap());
    }

    #[test]
    fn quantization_config_refusals() {
        let refuse = |edit: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut v = quantization_config(true);
            edit(v.as_object_mut().unwrap());
            let msg = parse_quantization_config(&v).unwrap_err().to_string();
            assert!(msg.starts_with("config.json: quantization_config."), "{msg}");
            msg
        };
        let set = |k: &'static str, v: Value| {
            move |o: &mut serde_json::Map<String, Value>| drop(o.insert(k.into(), v.clone()))
        };
        assert_mentions(
            &refuse(&set("quant_method", json!("gptq"))),
            &["quant_method is \"gptq\"; only \"bitsandbytes\""],
        );
        assert_mentions(
            &refuse(&set("bnb_4bit_quant_type", json!("fp4"))),
            &["bnb_4bit_quant_type is \"fp4\"; only \"nf4\""],
        );
        assert_mentions(&refuse(&set("load_in_8bit", json!(true))), &["load_in_8bit is true: 8-bit (LLM.int8)"]);
        assert_mentions(&refuse(&set("load_in_4bit", json!(false))), &["load_in_4bit is false"]);
        assert_mentions(&refuse(&set("_load_in_4bit", json!(false))), &["_load_in_4bit is false"]);
        assert_mentions(
            &refuse(&set("bnb_4bit_compute_dtype", json!("bfloat16"))),
            &["bnb_4bit_compute_dtype is \"bfloat16\"; only \"float32\""],
        );
        assert_mentions(
            &refuse(&set("bnb_4bit_quant_storage", json!("int8"))),
            &["bnb_4bit_quant_storage is \"int8\""],
        );
        assert_mentions(
            &refuse(&set("bnb_4bit_use_double_quant", json!("yes"))),
            &["bnb_4bit_use_double_quant is \"yes\", not true or false"],
        );
        assert_mentions(
            &refuse(&|o| drop(o.remove("bnb_4bit_use_double_quant"))),
            &["bnb_4bit_use_double_quant is missing"],
        );
        assert_mentions(&refuse(&|o| drop(o.remove("quant_method"))), &["quant_method is missing"]);
        assert_mentions(&refuse(&set("llm_int8_skip_modules", json!(3))), &["llm_int8_skip_modules is 3"]);
        let msg = parse_quantization_config(&json!([1])).unwrap_err().to_string();
        assert_eq!(msg, "config.json: quantization_config is [1], not an object");
    }
}
