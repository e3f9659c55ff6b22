//! MNIST from bytes to batches: `idx` parses and validates the files, `dataset` holds the samples
//! as bytes, `batch` turns them into normalised f32 rows, `order` decides which rows and when.
//!
//! Pixels stay `u8` until a batch needs them: 60,000 images are 47 MB as bytes and would be
//! 188 MB as f32, too much to keep twice in a browser tab.

mod batch;
mod dataset;
mod idx;
mod order;

pub use batch::{fill_batch, normalise, normalise_pixels};
pub use dataset::Dataset;
pub use idx::{parse_images, parse_labels, Images, IMAGE_MAGIC, LABEL_MAGIC};
pub use order::{mix_replay, EpochOrder};

/// Image height and width: the model's input layer is built for exactly this size.
pub const SIDE: usize = 28;
/// Pixels per image (28×28), the model's input width.
pub const PIXELS: usize = SIDE * SIDE;
