//! One error type for the crate: every bad input becomes a message a person can act on.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum LabError {
    /// A file (IDX, safetensors, adapter_config.json) that cannot be used as it is.
    #[error("{file}: {reason}")]
    BadFile { file: String, reason: String },
    /// A setting outside its allowed range, rejected before any work starts.
    #[error("invalid {name}: {reason}")]
    BadSetting { name: String, reason: String },
    /// Something asked of the lab that its current state cannot do (no model yet, unknown adapter...).
    #[error("{0}")]
    State(String),
    /// Training produced a non-finite loss; the last good weights were kept.
    #[error("training stopped: {0}")]
    Diverged(String),
}

impl LabError {
    pub fn file(file: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadFile { file: file.into(), reason: reason.into() }
    }
    pub fn setting(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::BadSetting { name: name.into(), reason: reason.into() }
    }
    pub fn state(msg: impl Into<String>) -> Self {
        Self::State(msg.into())
    }
}

pub type Result<T> = std::result::Result<T, LabError>;
