//! Reading settings the page sends: whole numbers from JS numbers, names a person can see and save.

use crate::error::{LabError, Result};

/// A whole number from a JS number: finite, integral and in range, or a clear error.
pub fn whole(name: &str, v: f64, min: u64, max: u64) -> Result<u64> {
    if !v.is_finite() || v.fract() != 0.0 || v < min as f64 || v > max as f64 {
        return Err(LabError::setting(name, format!("{v} is not a whole number from {min} to {max}")));
    }
    Ok(v as u64)
}

/// Adapter names are shown and used as file names: 1–64 visible characters.
pub(crate) fn valid_name(n: &str) -> Result<String> {
    let n = n.trim();
    if n.is_empty() || n.chars().count() > 64 || n.chars().any(|c| c.is_control() || "/\\".contains(c)) {
        return Err(LabError::setting("name", format!("\"{n}\" must be 1–64 characters, without / or \\")));
    }
    Ok(n.to_string())
}

/// FNV-1a of every batch loss's bits, as hex: equal runs have equal hashes (determinism checks).
pub(crate) fn loss_hash(losses: &[f32]) -> String {
    let h = losses
        .iter()
        .flat_map(|l| l.to_bits().to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
    format!("{h:016x}")
}
