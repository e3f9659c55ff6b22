//! [`GgmlWeight`]: one Linear's frozen weight (out × in, row-major) held in the ggml blocks a GGUF file
//! stored it in — no f32 copy, and for a file loaded whole no copy at all ([`Blocks::Shared`]) — and its views: the kernels' ([`GgmlWeight::kernel_view`], the GEMM's B
//! operand), the reference dequantisation, and whole rows reordered (llama.cpp's q/k permutation
//! undone at load: a row is a whole number of blocks, so moving rows is lossless).

use std::ops::Range;
use std::sync::Arc;

use super::ggml::{self, GgmlType};
use crate::kernels::{Int8Weight, QFormat, QWeight};

/// Where a weight's blocks are: its own bytes, or a range of a file kept whole in memory (a GGUF as
/// loaded: every Linear points into the one buffer, so loading copies nothing).
#[derive(Clone, Debug)]
pub enum Blocks {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>, Range<usize>),
}

impl Blocks {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Self::Owned(v) => v,
            Self::Shared(buf, r) => &buf[r.clone()],
        }
    }
}

impl PartialEq for Blocks {
    fn eq(&self, o: &Self) -> bool {
        self.bytes() == o.bytes()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct GgmlWeight {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    data: Blocks,
    /// Whether the kernels with 8-bit activations read it (`kernels::Int8Weight::check`, once).
    int8: bool,
}

impl GgmlWeight {
    /// A weight from its blocks, checked: each row is a whole number of blocks, and `data` holds
    /// exactly `rows` of them. The reason names what does not fit.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> std::result::Result<Self, String> {
        Self::from_blocks(ty, rows, cols, Blocks::Owned(data))
    }

    /// [`GgmlWeight::new`] over any [`Blocks`] (a range of a file kept in memory: a range past its end
    /// is refused too).
    pub fn from_blocks(ty: GgmlType, rows: usize, cols: usize, data: Blocks) -> std::result::Result<Self, String> {
        let row_bytes = ty
            .bytes_for(cols)
            .ok_or_else(|| format!("{cols} columns are not a whole number of {ty} blocks of {}", ty.block_size()))?;
        let len = match &data {
            Blocks::Owned(v) => v.len(),
            Blocks::Shared(buf, r) if r.start <= r.end && r.end <= buf.len() => r.len(),
            Blocks::Shared(buf, r) => return Err(format!("bytes {}..{} lie past the {} given", r.start, r.end, buf.len())),
        };
        if rows == 0 || cols == 0 || rows.checked_mul(row_bytes) != Some(len) {
            return Err(format!("{len} bytes do not hold a {rows} × {cols} {ty} weight"));
        }
        let mut w = Self { ty, rows, cols, data, int8: false };
        w.int8 = Int8Weight::check(w.kernel_view()).is_some();
        Ok(w)
    }

    pub fn ty(&self) -> GgmlType {
        self.ty
    }
    /// out_features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// in_features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Where the blocks are.
    pub fn blocks(&self) -> &Blocks {
        &self.data
    }
    /// The blocks as stored.
    pub fn data(&self) -> &[u8] {
        self.data.bytes()
    }
    fn row_bytes(&self) -> usize {
        self.data().len() / self.rows
    }

    /// The weight as the kernels read it: Q4_0, Q4_1 and Q8_0 through the kernels' own decoders,
    /// the other types a block at a time through `ggml::dequantize_run`.
    pub fn kernel_view(&self) -> QWeight<'_> {
        let format = match self.ty {
            GgmlType::Q4_0 => QFormat::Q4_0,
            GgmlType::Q4_1 => QFormat::Q4_1,
            GgmlType::Q8_0 => QFormat::Q8_0,
            ty => QFormat::Blocks { block: ty.block_size(), block_bytes: ty.block_bytes(), decode: decoder(ty) },
        };
        QWeight { format, data: self.data(), rows: self.rows, cols: self.cols }
    }

    /// The weight as the kernels with 8-bit activations read it, if they do (Q4_0, Q4_1 and Q8_0 with
    /// finite scales).
    pub fn int8_view(&self) -> Option<Int8Weight<'_>> {
        self.int8.then(|| Int8Weight::scanned(self.kernel_view()))
    }

    /// All values in f32, by the reference dequantisation.
    pub fn dequantize(&self) -> Vec<f32> {
        ggml::dequantize(self.ty, self.data(), self.rows * self.cols)
    }

    /// Row `r` of the result is row `from[r]` of this weight (`from` a permutation of the rows).
    pub fn permute_rows(&self, from: &[usize]) -> Self {
        assert_eq!(from.len(), self.rows, "a row permutation names every row");
        let rb = self.row_bytes();
        let bytes = self.data();
        let data = from.iter().flat_map(|&r| &bytes[r * rb..(r + 1) * rb]).copied().collect();
        Self { data: Blocks::Owned(data), ty: self.ty, rows: self.rows, cols: self.cols, int8: self.int8 }
    }
}

/// A whole-block decoder for the kernels (`QFormat::Blocks`), one per type: a plain function, so the
/// kernels need not know ggml's types.
fn decoder(ty: GgmlType) -> fn(&[u8], &mut [f32]) {
    fn run<const T: u8>(src: &[u8], out: &mut [f32]) {
        let ty = match T {
            0 => GgmlType::F32,
            1 => GgmlType::F16,
            2 => GgmlType::BF16,
            3 => GgmlType::Q4_K,
            4 => GgmlType::Q6_K,
            5 => GgmlType::Q4_0,
            6 => GgmlType::Q4_1,
            _ => GgmlType::Q8_0,
        };
        ggml::dequantize_run(ty, src, 0, out)
    }
    match ty {
        GgmlType::F32 => run::<0>,
        GgmlType::F16 => run::<1>,
        GgmlType::BF16 => run::<2>,
        GgmlType::Q4_K => run::<3>,
        GgmlType::Q6_K => run::<4>,
        GgmlType::Q4_0 => run::<5>,
        GgmlType::Q4_1 => run::<6>,
        GgmlType::Q8_0 => run::<7>,
    }
}
