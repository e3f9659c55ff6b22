//! The 4-lane f32 vector the micro-kernels are written in.
//!
//! On wasm32 with `simd128` it is a `v128`; elsewhere it is a plain `[f32; 4]`, so native tests run the
//! very same blocking and packing code. `mul_add` is `a * b + c`: fused (`f32x4.relaxed_madd`) when the
//! build enables `relaxed-simd`, otherwise a separately rounded multiply and add — the portable lane
//! rounds the same way as the non-relaxed wasm build. On x86-64 it is SSE2's `__m128` (same rounding as
//! the portable lane), so native tests and profiles run vector code too.

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub struct F32x4(v128);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self(f32x4_splat(x))
        }
        /// # Safety
        /// `p` must be valid for reading 4 floats (no alignment needed).
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> Self {
            Self(unsafe { v128_load(p as *const v128) })
        }
        /// # Safety
        /// `p` must be valid for reading one float.
        #[inline(always)]
        pub unsafe fn load_splat(p: *const f32) -> Self {
            Self(unsafe { v128_load32_splat(p as *const u32) })
        }
        /// # Safety
        /// `p` must be valid for writing 4 floats (no alignment needed).
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            unsafe { v128_store(p as *mut v128, self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self(f32x4_add(self.0, o.0))
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self(f32x4_sub(self.0, o.0))
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self(f32x4_mul(self.0, o.0))
        }
        #[inline(always)]
        pub fn div(self, o: Self) -> Self {
            Self(f32x4_div(self.0, o.0))
        }
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            Self(f32x4_sqrt(self.0))
        }
        /// `self < o ? o : self` (wasm's pmax): a NaN in `self` is kept, one in `o` is not.
        #[inline(always)]
        pub fn max(self, o: Self) -> Self {
            Self(f32x4_pmax(self.0, o.0))
        }
        /// `o < self ? o : self` (wasm's pmin): a NaN in `self` is kept, one in `o` is not.
        #[inline(always)]
        pub fn min(self, o: Self) -> Self {
            Self(f32x4_pmin(self.0, o.0))
        }
        /// `2^n` for lanes holding integers in [-126, 127] (the exponent field built directly).
        #[inline(always)]
        pub fn pow2i(self) -> Self {
            let n = i32x4_trunc_sat_f32x4(self.0);
            Self(i32x4_shl(i32x4_add(n, i32x4_splat(127)), 23))
        }
        /// `max(self, 0)`, with NaN passing through so a diverging run is detected.
        #[inline(always)]
        pub fn relu(self) -> Self {
            // pmax(a, b) = if a < b { b } else { a }: NaN and -0.0 in `self` are kept.
            Self(f32x4_pmax(self.0, f32x4_splat(0.0)))
        }
        /// Lanes where `mask > 0` keep `self`, others become 0 (ReLU backward).
        #[inline(always)]
        pub fn where_positive(self, mask: Self) -> Self {
            let m = f32x4_gt(mask.0, f32x4_splat(0.0));
            Self(v128_and(self.0, m))
        }
        /// Lanes with `|self| < tiny` become 0 (WebAssembly has no flush-to-zero mode).
        #[inline(always)]
        pub fn flush_below(self, tiny: Self) -> Self {
            let m = f32x4_ge(f32x4_abs(self.0), tiny.0);
            // NaN compares false and would be flushed: keep it by OR-ing the NaN mask.
            let nan = f32x4_ne(self.0, self.0);
            Self(v128_and(self.0, v128_or(m, nan)))
        }
        #[inline(always)]
        pub fn mul_add(a: Self, b: Self, c: Self) -> Self {
            #[cfg(target_feature = "relaxed-simd")]
            {
                Self(f32x4_relaxed_madd(a.0, b.0, c.0))
            }
            #[cfg(not(target_feature = "relaxed-simd"))]
            {
                Self(f32x4_add(f32x4_mul(a.0, b.0), c.0))
            }
        }
        /// Each lane splatted: `[splat(lane 0), …, splat(lane 3)]` (one load and four shuffles in
        /// place of four splat loads, each of which costs V8 an address computation).
        #[inline(always)]
        pub fn splat_lanes(self) -> [Self; 4] {
            [
                Self(i32x4_shuffle::<0, 0, 0, 0>(self.0, self.0)),
                Self(i32x4_shuffle::<1, 1, 1, 1>(self.0, self.0)),
                Self(i32x4_shuffle::<2, 2, 2, 2>(self.0, self.0)),
                Self(i32x4_shuffle::<3, 3, 3, 3>(self.0, self.0)),
            ]
        }
        /// Whether any lane differs from `o`'s (a NaN lane counts as different).
        #[inline(always)]
        pub fn any_ne(self, o: Self) -> bool {
            v128_any_true(f32x4_ne(self.0, o.0))
        }
        /// The 4×4 transpose of four rows: lane j of row i becomes lane i of row j.
        #[inline(always)]
        pub fn transpose([r0, r1, r2, r3]: [Self; 4]) -> [Self; 4] {
            let t0 = i32x4_shuffle::<0, 4, 1, 5>(r0.0, r1.0);
            let t1 = i32x4_shuffle::<2, 6, 3, 7>(r0.0, r1.0);
            let t2 = i32x4_shuffle::<0, 4, 1, 5>(r2.0, r3.0);
            let t3 = i32x4_shuffle::<2, 6, 3, 7>(r2.0, r3.0);
            [
                Self(i32x4_shuffle::<0, 1, 4, 5>(t0, t2)),
                Self(i32x4_shuffle::<2, 3, 6, 7>(t0, t2)),
                Self(i32x4_shuffle::<0, 1, 4, 5>(t1, t3)),
                Self(i32x4_shuffle::<2, 3, 6, 7>(t1, t3)),
            ]
        }
        #[inline(always)]
        pub fn to_array(self) -> [f32; 4] {
            [
                f32x4_extract_lane::<0>(self.0),
                f32x4_extract_lane::<1>(self.0),
                f32x4_extract_lane::<2>(self.0),
                f32x4_extract_lane::<3>(self.0),
            ]
        }
        /// The low nibbles of 16 bytes as 16 floats (4 lanes each), then the high nibbles.
        #[inline(always)]
        pub fn from_nibbles(q: &[u8; 16]) -> ([Self; 4], [Self; 4]) {
            // SAFETY: q holds 16 bytes.
            let v = unsafe { v128_load(q.as_ptr() as *const v128) };
            let widen = |b: v128| {
                let (lo, hi) = (u16x8_extend_low_u8x16(b), u16x8_extend_high_u8x16(b));
                [
                    u32x4_extend_low_u16x8(lo),
                    u32x4_extend_high_u16x8(lo),
                    u32x4_extend_low_u16x8(hi),
                    u32x4_extend_high_u16x8(hi),
                ]
                .map(|w| Self(f32x4_convert_i32x4(w)))
            };
            (widen(v128_and(v, u8x16_splat(15))), widen(u8x16_shr(v, 4)))
        }
        /// 16 signed bytes as 16 floats.
        #[inline(always)]
        pub fn from_i8(q: &[u8; 16]) -> [Self; 4] {
            // SAFETY: q holds 16 bytes.
            let v = unsafe { v128_load(q.as_ptr() as *const v128) };
            let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
            [i32x4_extend_low_i16x8(lo), i32x4_extend_high_i16x8(lo), i32x4_extend_low_i16x8(hi), i32x4_extend_high_i16x8(hi)]
                .map(|w| Self(f32x4_convert_i32x4(w)))
        }
    }

    pub const FUSED: bool = cfg!(target_feature = "relaxed-simd");
}

#[cfg(all(target_arch = "x86_64", not(all(target_arch = "wasm32", target_feature = "simd128"))))]
mod imp {
    //! SSE2 (every x86-64 has it): the same 4-lane operations as simd128, rounded the same way as the
    //! portable lanes (no fused multiply-add), so native tests and profiles run vector code.
    use core::arch::x86_64::*;

    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub struct F32x4(__m128);

    impl F32x4 {
        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self(unsafe { _mm_set1_ps(x) })
        }
        /// # Safety
        /// `p` must be valid for reading 4 floats (no alignment needed).
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> Self {
            Self(unsafe { _mm_loadu_ps(p) })
        }
        /// # Safety
        /// `p` must be valid for reading one float.
        #[inline(always)]
        pub unsafe fn load_splat(p: *const f32) -> Self {
            Self(unsafe { _mm_set1_ps(*p) })
        }
        /// # Safety
        /// `p` must be valid for writing 4 floats (no alignment needed).
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            unsafe { _mm_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self(unsafe { _mm_add_ps(self.0, o.0) })
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self(unsafe { _mm_sub_ps(self.0, o.0) })
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self(unsafe { _mm_mul_ps(self.0, o.0) })
        }
        #[inline(always)]
        pub fn div(self, o: Self) -> Self {
            Self(unsafe { _mm_div_ps(self.0, o.0) })
        }
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            Self(unsafe { _mm_sqrt_ps(self.0) })
        }
        /// `self < o ? o : self` (wasm's pmax): a NaN in `self` is kept, one in `o` is not.
        #[inline(always)]
        pub fn max(self, o: Self) -> Self {
            Self(unsafe { _mm_max_ps(o.0, self.0) })
        }
        /// `o < self ? o : self` (wasm's pmin): a NaN in `self` is kept, one in `o` is not.
        #[inline(always)]
        pub fn min(self, o: Self) -> Self {
            Self(unsafe { _mm_min_ps(o.0, self.0) })
        }
        /// `2^n` for lanes holding integers in [-126, 127] (the exponent field built directly).
        #[inline(always)]
        pub fn pow2i(self) -> Self {
            unsafe {
                let n = _mm_cvttps_epi32(self.0);
                Self(_mm_castsi128_ps(_mm_slli_epi32::<23>(_mm_add_epi32(n, _mm_set1_epi32(127)))))
            }
        }
        /// `max(self, 0)` as simd128's pmax: NaN and -0.0 pass through (maxps returns its second
        /// operand unless the first is greater).
        #[inline(always)]
        pub fn relu(self) -> Self {
            Self(unsafe { _mm_max_ps(_mm_setzero_ps(), self.0) })
        }
        #[inline(always)]
        pub fn where_positive(self, mask: Self) -> Self {
            Self(unsafe { _mm_and_ps(self.0, _mm_cmpgt_ps(mask.0, _mm_setzero_ps())) })
        }
        #[inline(always)]
        pub fn flush_below(self, tiny: Self) -> Self {
            unsafe {
                let abs = _mm_and_ps(self.0, _mm_castsi128_ps(_mm_set1_epi32(0x7fff_ffff)));
                let keep = _mm_or_ps(_mm_cmpge_ps(abs, tiny.0), _mm_cmpunord_ps(self.0, self.0));
                Self(_mm_and_ps(self.0, keep))
            }
        }
        #[inline(always)]
        pub fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Self(unsafe { _mm_add_ps(_mm_mul_ps(a.0, b.0), c.0) })
        }
        #[inline(always)]
        pub fn splat_lanes(self) -> [Self; 4] {
            let x = self.0;
            unsafe {
                [
                    Self(_mm_shuffle_ps::<0x00>(x, x)),
                    Self(_mm_shuffle_ps::<0x55>(x, x)),
                    Self(_mm_shuffle_ps::<0xaa>(x, x)),
                    Self(_mm_shuffle_ps::<0xff>(x, x)),
                ]
            }
        }
        #[inline(always)]
        pub fn any_ne(self, o: Self) -> bool {
            unsafe { _mm_movemask_ps(_mm_cmpneq_ps(self.0, o.0)) != 0 }
        }
        #[inline(always)]
        pub fn transpose([r0, r1, r2, r3]: [Self; 4]) -> [Self; 4] {
            unsafe {
                let t0 = _mm_unpacklo_ps(r0.0, r1.0);
                let t1 = _mm_unpackhi_ps(r0.0, r1.0);
                let t2 = _mm_unpacklo_ps(r2.0, r3.0);
                let t3 = _mm_unpackhi_ps(r2.0, r3.0);
                [
                    Self(_mm_movelh_ps(t0, t2)),
                    Self(_mm_movehl_ps(t2, t0)),
                    Self(_mm_movelh_ps(t1, t3)),
                    Self(_mm_movehl_ps(t3, t1)),
                ]
            }
        }
        #[inline(always)]
        pub fn to_array(self) -> [f32; 4] {
            let mut a = [0.0f32; 4];
            unsafe { _mm_storeu_ps(a.as_mut_ptr(), self.0) };
            a
        }
        /// The low nibbles of 16 bytes as 16 floats (4 lanes each), then the high nibbles.
        #[inline(always)]
        pub fn from_nibbles(q: &[u8; 16]) -> ([Self; 4], [Self; 4]) {
            // SAFETY: SSE2 is baseline on x86-64; q holds 16 bytes.
            unsafe {
                let v = _mm_loadu_si128(q.as_ptr() as *const __m128i);
                let mask = _mm_set1_epi8(15);
                let z = _mm_setzero_si128();
                let widen = |b: __m128i| {
                    let (lo, hi) = (_mm_unpacklo_epi8(b, z), _mm_unpackhi_epi8(b, z));
                    [_mm_unpacklo_epi16(lo, z), _mm_unpackhi_epi16(lo, z), _mm_unpacklo_epi16(hi, z), _mm_unpackhi_epi16(hi, z)]
                        .map(|w| Self(_mm_cvtepi32_ps(w)))
                };
                (widen(_mm_and_si128(v, mask)), widen(_mm_and_si128(_mm_srli_epi16(v, 4), mask)))
            }
        }
        /// 16 signed bytes as 16 floats.
        #[inline(always)]
        pub fn from_i8(q: &[u8; 16]) -> [Self; 4] {
            // SAFETY: SSE2 is baseline on x86-64; q holds 16 bytes.
            unsafe {
                let v = _mm_loadu_si128(q.as_ptr() as *const __m128i);
                // Each byte into the high byte of a 16-bit lane, then arithmetic shifts sign-extend.
                let (lo, hi) = (_mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8), _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8));
                [
                    _mm_srai_epi32(_mm_unpacklo_epi16(lo, lo), 16),
                    _mm_srai_epi32(_mm_unpackhi_epi16(lo, lo), 16),
                    _mm_srai_epi32(_mm_unpacklo_epi16(hi, hi), 16),
                    _mm_srai_epi32(_mm_unpackhi_epi16(hi, hi), 16),
                ]
                .map(|w| Self(_mm_cvtepi32_ps(w)))
            }
        }
    }

    pub const FUSED: bool = false;
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "wasm32", target_feature = "simd128"))))]
mod imp {
    #[derive(Clone, Copy)]
    #[repr(transparent)]
    pub struct F32x4([f32; 4]);

    #[inline(always)]
    fn map(a: [f32; 4], f: impl Fn(f32) -> f32) -> [f32; 4] {
        [f(a[0]), f(a[1]), f(a[2]), f(a[3])]
    }
    #[inline(always)]
    fn zip(a: [f32; 4], b: [f32; 4], f: impl Fn(f32, f32) -> f32) -> [f32; 4] {
        [f(a[0], b[0]), f(a[1], b[1]), f(a[2], b[2]), f(a[3], b[3])]
    }

    impl F32x4 {
        #[inline(always)]
        pub fn splat(x: f32) -> Self {
            Self([x; 4])
        }
        /// # Safety
        /// `p` must be valid for reading 4 floats.
        #[inline(always)]
        pub unsafe fn load(p: *const f32) -> Self {
            Self(unsafe { core::ptr::read_unaligned(p as *const [f32; 4]) })
        }
        /// # Safety
        /// `p` must be valid for reading one float.
        #[inline(always)]
        pub unsafe fn load_splat(p: *const f32) -> Self {
            Self([unsafe { *p }; 4])
        }
        /// # Safety
        /// `p` must be valid for writing 4 floats.
        #[inline(always)]
        pub unsafe fn store(self, p: *mut f32) {
            unsafe { core::ptr::write_unaligned(p as *mut [f32; 4], self.0) }
        }
        #[inline(always)]
        pub fn add(self, o: Self) -> Self {
            Self(zip(self.0, o.0, |a, b| a + b))
        }
        #[inline(always)]
        pub fn sub(self, o: Self) -> Self {
            Self(zip(self.0, o.0, |a, b| a - b))
        }
        #[inline(always)]
        pub fn mul(self, o: Self) -> Self {
            Self(zip(self.0, o.0, |a, b| a * b))
        }
        #[inline(always)]
        pub fn div(self, o: Self) -> Self {
            Self(zip(self.0, o.0, |a, b| a / b))
        }
        #[inline(always)]
        pub fn sqrt(self) -> Self {
            Self(map(self.0, f32::sqrt))
        }
        #[inline(always)]
        pub fn max(self, o: Self) -> Self {
            Self(zip(self.0, o.0, |a, b| if a < b { b } else { a }))
        }
        #[inline(always)]
        pub fn min(self, o: Self) -> Self {
            Self(zip(self.0, o.0, |a, b| if b < a { b } else { a }))
        }
        #[inline(always)]
        pub fn pow2i(self) -> Self {
            Self(map(self.0, |n| f32::from_bits(((n as i32).wrapping_add(127) as u32) << 23)))
        }
        #[inline(always)]
        pub fn relu(self) -> Self {
            Self(map(self.0, |x| if x < 0.0 { 0.0 } else { x }))
        }
        #[inline(always)]
        pub fn where_positive(self, mask: Self) -> Self {
            Self(zip(self.0, mask.0, |x, m| if m > 0.0 { x } else { 0.0 }))
        }
        #[inline(always)]
        pub fn flush_below(self, tiny: Self) -> Self {
            Self(zip(self.0, tiny.0, |x, t| if x.is_nan() || x.abs() >= t { x } else { 0.0 }))
        }
        #[inline(always)]
        pub fn mul_add(a: Self, b: Self, c: Self) -> Self {
            Self([
                a.0[0] * b.0[0] + c.0[0],
                a.0[1] * b.0[1] + c.0[1],
                a.0[2] * b.0[2] + c.0[2],
                a.0[3] * b.0[3] + c.0[3],
            ])
        }
        #[inline(always)]
        pub fn splat_lanes(self) -> [Self; 4] {
            self.0.map(|x| Self([x; 4]))
        }
        #[inline(always)]
        pub fn any_ne(self, o: Self) -> bool {
            self.0.iter().zip(o.0).any(|(&a, b)| a != b)
        }
        #[inline(always)]
        pub fn transpose(rows: [Self; 4]) -> [Self; 4] {
            core::array::from_fn(|j| Self(core::array::from_fn(|i| rows[i].0[j])))
        }
        #[inline(always)]
        pub fn to_array(self) -> [f32; 4] {
            self.0
        }
        /// The low nibbles of 16 bytes as 16 floats (4 lanes each), then the high nibbles.
        #[inline(always)]
        pub fn from_nibbles(q: &[u8; 16]) -> ([Self; 4], [Self; 4]) {
            let lanes = |f: fn(u8) -> u8| core::array::from_fn(|i| Self(core::array::from_fn(|j| f(q[4 * i + j]) as f32)));
            (lanes(|b| b & 15), lanes(|b| b >> 4))
        }
        /// 16 signed bytes as 16 floats.
        #[inline(always)]
        pub fn from_i8(q: &[u8; 16]) -> [Self; 4] {
            core::array::from_fn(|i| Self(core::array::from_fn(|j| q[4 * i + j] as i8 as f32)))
        }
    }

    pub const FUSED: bool = false;
}

pub use imp::F32x4;
/// Whether `F32x4::mul_add` is fused (one rounding) in this build.
pub const FUSED_MUL_ADD: bool = imp::FUSED;
