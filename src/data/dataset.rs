//! A set of labelled MNIST images, kept as the file's bytes (one `u8` per pixel).

use super::{Images, PIXELS, SIDE};
use crate::{LabError, Result};

/// `len()` images of 784 pixels with their labels; sample indices are `u32` throughout the lab.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `len × 784` pixels, row-major, as read.
    images: Vec<u8>,
    labels: Vec<u8>,
}

impl Dataset {
    /// Pairs images with labels; `name` (e.g. "training set") names the pair in errors.
    /// The checks repeat the parser's, since `Images` can also be built by hand.
    pub fn new(images: Images, labels: Vec<u8>, name: &str) -> Result<Self> {
        let bad = |reason: String| LabError::file(name, reason);
        if images.count != labels.len() {
            return Err(bad(format!(
                "{} images but {} labels: the image and label files do not belong together",
                images.count,
                labels.len()
            )));
        }
        if images.rows != SIDE || images.cols != SIDE {
            return Err(bad(format!("images are {}×{}, expected {SIDE}×{SIDE}", images.rows, images.cols)));
        }
        if Some(images.pixels.len()) != images.count.checked_mul(PIXELS) {
            return Err(bad(format!("{} pixel bytes for {} images of {PIXELS}", images.pixels.len(), images.count)));
        }
        if u32::try_from(images.count).is_err() {
            return Err(bad(format!("{} samples: more than u32 indices can address", images.count)));
        }
        if let Some(i) = labels.iter().position(|&l| l > 9) {
            return Err(bad(format!("label {} at index {i} is not a digit 0–9", labels[i])));
        }
        Ok(Self { images: images.pixels, labels })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The 784 pixels of sample `i`. Panics if `i >= len()` (a programmer error: indices come
    /// from this dataset).
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * PIXELS..(i + 1) * PIXELS]
    }

    /// The label (0–9) of sample `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u8 {
        self.labels[i]
    }

    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Indices, in file order, of the samples whose label is one of `digits`: how a task
    /// ("learn 0–4", "adapt to 7") becomes a list of samples.
    pub fn indices_of(&self, digits: &[u8]) -> Vec<u32> {
        let mut wanted = [false; 10];
        for &d in digits.iter().filter(|&&d| d <= 9) {
            wanted[d as usize] = true;
        }
        (0..self.labels.len() as u32).filter(|&i| wanted[self.labels[i as usize] as usize]).collect()
    }

    /// How many samples carry each digit.
    pub fn label_counts(&self) -> [usize; 10] {
        let mut counts = [0; 10];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }
}
