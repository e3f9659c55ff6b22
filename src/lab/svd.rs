//! Panel 1: the low-rank approximation of a matrix a person edits, and the singular values of the
//! base model's layers (panel 3's view of how much rank a layer holds).

use ndarray::{Array2, ArrayView2};
use serde::Serialize;

use super::Lab;
use crate::error::{LabError, Result};
use crate::nn::{LAYER_NAMES, LAYER_SHAPES};
use crate::svd;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SvdResult {
    #[serde(rename = "S")]
    pub s: Vec<f32>,
    #[serde(rename = "A")]
    pub a: Vec<Vec<f32>>,
    #[serde(rename = "B")]
    pub b: Vec<Vec<f32>>,
    pub approx: Vec<Vec<f32>>,
    pub error: f32,
    pub tail_error: f32,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerSvd {
    #[serde(rename = "S")]
    pub s: Vec<f32>,
    pub error: f32,
    pub shape: [usize; 2],
}

/// A row-major `shape` matrix as the page's array of rows.
fn rows_of(values: &[f32], shape: (usize, usize)) -> Vec<Vec<f32>> {
    let m = ArrayView2::from_shape(shape, values).expect("the SVD returns matrices of the shapes it was asked for");
    m.outer_iter().map(|row| row.to_vec()).collect()
}

impl Lab {
    /// Low-rank approximation of a matrix given as rows (the page's first panel).
    pub fn svd(rows: &[Vec<f64>], rank: usize) -> Result<SvdResult> {
        let m = rows.len();
        let n = rows.first().map_or(0, Vec::len);
        if m == 0 || n == 0 || m > 64 || n > 64 {
            return Err(LabError::setting("matrix", format!("{m}×{n}: use 1 to 64 rows and columns")));
        }
        if rows.iter().any(|r| r.len() != n) {
            return Err(LabError::setting("matrix", "every row must have the same number of values"));
        }
        let w = Array2::from_shape_fn((m, n), |(i, j)| rows[i][j] as f32);
        let lr = svd::low_rank(w.as_slice().expect("a new array is row-major"), m, n, rank)?;
        Ok(SvdResult {
            tail_error: svd::tail_error(&lr.singular_values, rank),
            a: rows_of(&lr.a, (m, rank)),
            b: rows_of(&lr.b, (rank, n)),
            approx: rows_of(&lr.approx, (m, n)),
            s: lr.singular_values,
            error: lr.error,
        })
    }

    /// Singular values of one of the base model's layers, and the error of keeping `rank` of them.
    pub fn layer_svd(&self, layer: &str, rank: usize) -> Result<LayerSvd> {
        let i = super::mlp::layer_index(layer)?;
        let (fan_in, fan_out) = LAYER_SHAPES[i];
        let s = svd::singular_values(&self.require_base()?.layers[i].dense_weight(), fan_out, fan_in)?;
        if rank == 0 || rank > s.len() {
            return Err(LabError::setting("rank", format!("{rank} is outside 1..={} for {}", s.len(), LAYER_NAMES[i])));
        }
        Ok(LayerSvd { error: svd::tail_error(&s, rank), s, shape: [fan_out, fan_in] })
    }
}
