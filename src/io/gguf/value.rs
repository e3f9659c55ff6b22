//! GGUF's metadata values: the 13 value types (`enum gguf_type`) and typed arrays of them, arrays of
//! arrays included.

use std::fmt;

/// A metadata value's type, by GGUF's ids (`GGUF_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgufType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl GgufType {
    /// The type with GGUF id `id`, if there is one.
    pub fn from_id(id: u32) -> Option<Self> {
        use GgufType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// GGUF's id.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// "u32", "string", … for messages.
    pub fn name(self) -> &'static str {
        use GgufType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes per value for the fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use GgufType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The fewest bytes a value of this type takes in a file (a string: its 8-byte length; an array:
    /// its element type and count).
    pub fn min_size(self) -> usize {
        match self {
            GgufType::String => 8,
            GgufType::Array => 12,
            fixed => fixed.fixed_size().unwrap_or(1),
        }
    }
}

impl fmt::Display for GgufType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value. Floats compare as floats (a NaN is unequal to itself): compare written files
/// to compare values bit for bit.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// An array: one element type, any count (the type is kept when the array is empty). Arrays of arrays
/// hold arrays of any element types.
#[derive(Clone, Debug, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    Array(Vec<GgufArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

impl GgufValue {
    /// The value's type.
    pub fn ty(&self) -> GgufType {
        use GgufValue as V;
        match self {
            V::U8(_) => GgufType::U8,
            V::I8(_) => GgufType::I8,
            V::U16(_) => GgufType::U16,
            V::I16(_) => GgufType::I16,
            V::U32(_) => GgufType::U32,
            V::I32(_) => GgufType::I32,
            V::F32(_) => GgufType::F32,
            V::Bool(_) => GgufType::Bool,
            V::String(_) => GgufType::String,
            V::Array(_) => GgufType::Array,
            V::U64(_) => GgufType::U64,
            V::I64(_) => GgufType::I64,
            V::F64(_) => GgufType::F64,
        }
    }

    /// What the value is, for messages: "a u32 (30)", "a string", "an array of 49152 strings".
    pub fn describe(&self) -> String {
        use GgufValue as V;
        match self {
            V::U8(x) => format!("a u8 ({x})"),
            V::I8(x) => format!("an i8 ({x})"),
            V::U16(x) => format!("a u16 ({x})"),
            V::I16(x) => format!("an i16 ({x})"),
            V::U32(x) => format!("a u32 ({x})"),
            V::I32(x) => format!("an i32 ({x})"),
            V::F32(x) => format!("an f32 ({x})"),
            V::Bool(x) => format!("a bool ({x})"),
            V::String(_) => "a string".to_string(),
            V::Array(a) => a.describe(),
            V::U64(x) => format!("a u64 ({x})"),
            V::I64(x) => format!("an i64 ({x})"),
            V::F64(x) => format!("an f64 ({x})"),
        }
    }

    /// The value as an integer, if it is one (of any width).
    pub fn as_integer(&self) -> Option<i128> {
        use GgufValue as V;
        Some(match *self {
            V::U8(x) => x.into(),
            V::I8(x) => x.into(),
            V::U16(x) => x.into(),
            V::I16(x) => x.into(),
            V::U32(x) => x.into(),
            V::I32(x) => x.into(),
            V::U64(x) => x.into(),
            V::I64(x) => x.into(),
            _ => return None,
        })
    }
}

impl GgufArray {
    /// The element type.
    pub fn elem_type(&self) -> GgufType {
        use GgufArray as A;
        match self {
            A::U8(_) => GgufType::U8,
            A::I8(_) => GgufType::I8,
            A::U16(_) => GgufType::U16,
            A::I16(_) => GgufType::I16,
            A::U32(_) => GgufType::U32,
            A::I32(_) => GgufType::I32,
            A::F32(_) => GgufType::F32,
            A::Bool(_) => GgufType::Bool,
            A::String(_) => GgufType::String,
            A::Array(_) => GgufType::Array,
            A::U64(_) => GgufType::U64,
            A::I64(_) => GgufType::I64,
            A::F64(_) => GgufType::F64,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        use GgufArray as A;
        match self {
            A::U8(v) => v.len(),
            A::I8(v) => v.len(),
            A::U16(v) => v.len(),
            A::I16(v) => v.len(),
            A::U32(v) => v.len(),
            A::I32(v) => v.len(),
            A::F32(v) => v.len(),
            A::Bool(v) => v.len(),
            A::String(v) => v.len(),
            A::Array(v) => v.len(),
            A::U64(v) => v.len(),
            A::I64(v) => v.len(),
            A::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty array of `elem` elements.
    pub fn empty(elem: GgufType) -> Self {
        use GgufArray as A;
        match elem {
            GgufType::U8 => A::U8(vec![]),
            GgufType::I8 => A::I8(vec![]),
            GgufType::U16 => A::U16(vec![]),
            GgufType::I16 => A::I16(vec![]),
            GgufType::U32 => A::U32(vec![]),
            GgufType::I32 => A::I32(vec![]),
            GgufType::F32 => A::F32(vec![]),
            GgufType::Bool => A::Bool(vec![]),
            GgufType::String => A::String(vec![]),
            GgufType::Array => A::Array(vec![]),
            GgufType::U64 => A::U64(vec![]),
            GgufType::I64 => A::I64(vec![]),
            GgufType::F64 => A::F64(vec![]),
        }
    }

    /// "an array of 3 u32", "an array of 49152 strings".
    pub fn describe(&self) -> String {
        let n = self.len();
        let elem = match self.elem_type() {
            GgufType::String => "string".to_string(),
            GgufType::Array => "array".to_string(),
            t => t.name().to_string(),
        };
        let plural = if n != 1 && matches!(self.elem_type(), GgufType::String | GgufType::Array) { "s" } else { "" };
        format!("an array of {n} {elem}{plural}")
    }

    /// How deeply arrays nest in this one: 1 for an array of scalars or strings.
    pub fn depth(&self) -> usize {
        match self {
            GgufArray::Array(items) => 1 + items.iter().map(GgufArray::depth).max().unwrap_or(0),
            _ => 1,
        }
    }
}
