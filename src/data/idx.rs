//! The IDX format (big-endian magic `00 00 08 nd`, `nd` u32 dimensions, then the bytes), checked
//! strictly: a file that is wrong in any way is rejected with the reason, never half-used.

use std::borrow::Cow;

use super::SIDE;
use crate::{LabError, Result};

/// Magic of an image file: unsigned bytes (0x08), three dimensions (count, rows, cols).
pub const IMAGE_MAGIC: u32 = 0x0000_0803;
/// Magic of a label file: unsigned bytes (0x08), one dimension (count).
pub const LABEL_MAGIC: u32 = 0x0000_0801;

/// Images as stored: `count` images of `rows × cols` pixels, row-major, `count*rows*cols` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Images {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    pub pixels: Vec<u8>,
}

/// Parses an IDX image file; `file` names it in every error. Only 28×28 images are accepted,
/// since the model's input layer is fixed at 784.
///
/// Given the file as a `Vec` (what the page hands over), the pixels stay in that allocation, moved
/// down over the header: 47 MB of training images are never held twice.
pub fn parse_images<'a>(bytes: impl Into<Cow<'a, [u8]>>, file: &str) -> Result<Images> {
    let bytes = bytes.into();
    let (dims, header) = {
        let (dims, data) = parse(&bytes, file, IMAGE_MAGIC, "pixel data")?;
        (dims, bytes.len() - data.len())
    };
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    if rows != SIDE || cols != SIDE {
        return Err(LabError::file(file, format!("images are {rows}×{cols}, expected {SIDE}×{SIDE}")));
    }
    let mut pixels = bytes.into_owned();
    pixels.drain(..header);
    pixels.truncate(count * rows * cols);
    Ok(Images { count, rows, cols, pixels })
}

/// Parses an IDX label file; every label must be a digit 0–9.
pub fn parse_labels(bytes: &[u8], file: &str) -> Result<Vec<u8>> {
    let (_, data) = parse(bytes, file, LABEL_MAGIC, "label data")?;
    if let Some(i) = data.iter().position(|&l| l > 9) {
        return Err(LabError::file(file, format!("label {} at index {i} is not a digit 0–9", data[i])));
    }
    Ok(data.to_vec())
}

/// What a magic number means, for messages.
fn kind(magic: u32) -> &'static str {
    match magic {
        IMAGE_MAGIC => "an image file",
        LABEL_MAGIC => "a label file",
        _ => "an IDX file",
    }
}

/// Checks the header against `want` and the length against the dimensions; returns
/// the dimensions and the data bytes after the header.
fn parse<'a>(bytes: &'a [u8], file: &str, want: u32, what: &str) -> Result<(Vec<usize>, &'a [u8])> {
    let bad = |reason: String| LabError::file(file, reason);
    let ndims = (want & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(bad(format!("file is {} bytes, shorter than its {header}-byte header", bytes.len())));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if magic != want {
        let expected = format!("expected {} ({want:#010x})", kind(want));
        let reason = if magic == IMAGE_MAGIC || magic == LABEL_MAGIC {
            format!("this is {} (magic {magic:#010x}), {expected}", kind(magic))
        } else if bytes[0] != 0 || bytes[1] != 0 {
            format!("not an IDX file (magic {magic:#010x}), {expected}")
        } else if bytes[2] != 0x08 {
            format!("element type {:#04x} is not unsigned bytes (0x08) (magic {magic:#010x}), {expected}", bytes[2])
        } else {
            format!("{} dimensions (magic {magic:#010x}), {expected} with {ndims}", bytes[3])
        };
        return Err(bad(reason));
    }
    if bytes.len() < header {
        return Err(bad(format!("file is {} bytes, shorter than its {header}-byte header", bytes.len())));
    }
    let dims: Vec<usize> =
        bytes[4..header].chunks_exact(4).map(|d| u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize).collect();
    let shown = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("×");
    if dims.contains(&0) {
        return Err(bad(format!("zero dimension in header ({shown})")));
    }
    // Checked: a corrupt header can promise more bytes than a usize holds (easily on wasm32).
    let size = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("header dimensions {shown} overflow: no file can hold that many bytes")))?;
    let body = &bytes[header..];
    if body.len() < size {
        return Err(bad(format!("truncated: {} bytes of {what}, header promises {size} ({shown})", body.len())));
    }
    if body.len() > size {
        return Err(bad(format!("{} trailing bytes after the data ({shown})", body.len() - size)));
    }
    Ok((dims, body))
}
