//! Typed reads of a GGUF file's metadata. Integers are accepted at any width when the value fits (a
//! `u64` 30 is a fine `u32`), floats from f32 or an f64 that is exactly an f32; every refusal names
//! the file, the key, what it holds and what was expected.

use super::{Gguf, GgufArray, GgufValue};
use crate::{LabError, Result};

impl Gguf {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key`, or an error saying it is missing.
    pub fn require(&self, key: &str) -> Result<&GgufValue> {
        self.get(key).ok_or_else(|| LabError::file(&self.file, format!("metadata key \"{key}\" is missing")))
    }

    /// `None` when `key` is absent, else `get(self, key)`:
    /// `gguf.optional("tokenizer.ggml.add_bos_token", Gguf::get_bool)?`.
    pub fn optional<'a, T>(&'a self, key: &str, get: impl FnOnce(&'a Self, &str) -> Result<T>) -> Result<Option<T>> {
        if self.has(key) {
            get(self, key).map(Some)
        } else {
            Ok(None)
        }
    }

    fn wrong(&self, key: &str, value: &GgufValue, expected: &str) -> LabError {
        LabError::file(&self.file, format!("metadata key \"{key}\" is {}; expected {expected}", value.describe()))
    }

    fn integer<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<T> {
        let v = self.require(key)?;
        v.as_integer().and_then(|x| T::try_from(x).ok()).ok_or_else(|| self.wrong(key, v, expected))
    }

    /// An integer of any width that fits in a u32.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        self.integer(key, "an integer from 0 to 4294967295 (u32)")
    }

    /// An integer of any width that fits in a u64.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        self.integer(key, "a non-negative integer (u64)")
    }

    /// An integer of any width that fits in an i32.
    pub fn get_i32(&self, key: &str) -> Result<i32> {
        self.integer(key, "an integer that fits in an i32")
    }

    /// An integer of any width that fits in an i64.
    pub fn get_i64(&self, key: &str) -> Result<i64> {
        self.integer(key, "an integer that fits in an i64")
    }

    /// An f32, or an f64 holding exactly an f32 value.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        match *v {
            GgufValue::F32(x) => Ok(x),
            GgufValue::F64(x) if (x as f32) as f64 == x => Ok(x as f32),
            _ => Err(self.wrong(key, v, "an f32")),
        }
    }

    /// An f32 or an f64, as f64.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        match *v {
            GgufValue::F32(x) => Ok(x.into()),
            GgufValue::F64(x) => Ok(x),
            _ => Err(self.wrong(key, v, "a float")),
        }
    }

    /// A bool.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            GgufValue::Bool(b) => Ok(*b),
            v => Err(self.wrong(key, v, "a bool")),
        }
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            GgufValue::String(s) => Ok(s),
            v => Err(self.wrong(key, v, "a string")),
        }
    }

    /// An array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&GgufArray> {
        match self.require(key)? {
            GgufValue::Array(a) => Ok(a),
            v => Err(self.wrong(key, v, "an array")),
        }
    }

    /// An array of strings (an empty array of any type counts as one).
    pub fn get_array_str(&self, key: &str) -> Result<&[String]> {
        match self.require(key)? {
            GgufValue::Array(GgufArray::String(s)) => Ok(s),
            GgufValue::Array(a) if a.is_empty() => Ok(&[]),
            v => Err(self.wrong(key, v, "an array of strings")),
        }
    }

    /// An array of integers of any width, each fitting in an i32.
    pub fn get_array_i32(&self, key: &str) -> Result<Vec<i32>> {
        self.integer_array(key, "an array of integers that fit in an i32")
    }

    /// An array of integers of any width, each fitting in a u32.
    pub fn get_array_u32(&self, key: &str) -> Result<Vec<u32>> {
        self.integer_array(key, "an array of integers from 0 to 4294967295 (u32)")
    }

    /// An array of f32 (or of f64 that are exactly f32 values).
    pub fn get_array_f32(&self, key: &str) -> Result<Vec<f32>> {
        let v = self.require(key)?;
        let bad = || self.wrong(key, v, "an array of f32");
        match v {
            GgufValue::Array(GgufArray::F32(x)) => Ok(x.clone()),
            GgufValue::Array(GgufArray::F64(x)) => {
                x.iter().map(|&f| if (f as f32) as f64 == f { Ok(f as f32) } else { Err(bad()) }).collect()
            }
            GgufValue::Array(a) if a.is_empty() => Ok(vec![]),
            _ => Err(bad()),
        }
    }

    fn integer_array<T: TryFrom<i128>>(&self, key: &str, expected: &str) -> Result<Vec<T>> {
        let v = self.require(key)?;
        let GgufValue::Array(a) = v else { return Err(self.wrong(key, v, expected)) };
        let items: Vec<i128> = match a {
            GgufArray::U8(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::I8(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::U16(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::I16(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::U32(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::I32(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::U64(x) => x.iter().map(|&i| i.into()).collect(),
            GgufArray::I64(x) => x.iter().map(|&i| i.into()).collect(),
            _ if a.is_empty() => vec![],
            _ => return Err(self.wrong(key, v, expected)),
        };
        items
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                T::try_from(x).map_err(|_| {
                    LabError::file(
                        &self.file,
                        format!("metadata key \"{key}\": element {i} is {x}; expected {expected}"),
                    )
                })
            })
            .collect()
    }
}
