//! The one source of randomness: a u64 seed, split into independent ChaCha8 streams by purpose, so
//! init, shuffling and dropout never disturb each other and the same seed gives the same run.

use rand_chacha::rand_core::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a random stream is used for; each gets its own ChaCha stream of the same seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    BaseInit = 1,
    BaseShuffle = 2,
    AdapterInit = 3,
    AdapterShuffle = 4,
    Dropout = 5,
    Replay = 6,
    LmInit = 7,
    Sample = 8,
    Demo = 9,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng(ChaCha8Rng);

impl Rng {
    pub fn new(seed: u64, stream: Stream) -> Self {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        r.set_stream(stream as u64);
        Self(r)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A copy of this stream `n` draws (`next_u32` calls) further on, as if they had been made: draws can
    /// be split among threads and still come out as one stream.
    pub fn ahead(&self, n: usize) -> Self {
        let mut r = self.clone();
        r.skip(n);
        r
    }

    /// Moves past the next `n` draws.
    pub fn skip(&mut self, n: usize) {
        let pos = self.0.get_word_pos();
        self.0.set_word_pos(pos + n as u128);
    }

    /// Uniform in [0, 1), 24 random bits.
    pub fn uniform(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// `uniform() >= p` decided on a draw's integer bits: it holds exactly where `next_u32() >> 8` is at
    /// least this (`uniform()` is that value · 2⁻²⁴, exactly), for p in [0, 1].
    pub fn uniform_at_least(p: f32) -> u32 {
        (p * (1u32 << 24) as f32).ceil() as u32
    }

    /// Uniform in [lo, hi).
    pub fn uniform_in(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u32() >> 8) as f64 + 1.0) / (1u64 << 24) as f64; // (0, 1]
        let u2 = (self.next_u32() >> 8) as f64 / (1u64 << 24) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Uniform integer in [0, n), without modulo bias (Lemire's method). `n` must be > 0.
    pub fn below(&mut self, n: u32) -> u32 {
        assert!(n > 0, "Rng::below(0)");
        loop {
            let m = self.next_u32() as u64 * n as u64;
            let low = m as u32;
            if low >= n || low >= n.wrapping_neg() % n {
                return (m >> 32) as u32;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u32 + 1) as usize;
            v.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_repeats_and_streams_differ() {
        let a: Vec<u32> = (0..8)
            .map({
                let mut r = Rng::new(13, Stream::BaseInit);
                move |_| r.next_u32()
            })
            .collect();
        let b: Vec<u32> = (0..8)
            .map({
                let mut r = Rng::new(13, Stream::BaseInit);
                move |_| r.next_u32()
            })
            .collect();
        let c: Vec<u32> = (0..8)
            .map({
                let mut r = Rng::new(13, Stream::BaseShuffle);
                move |_| r.next_u32()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_stream_ahead_gives_the_draws_that_follow() {
        let mut r = Rng::new(3, Stream::Dropout);
        r.next_u32();
        for n in [0, 1, 15, 16, 63, 64, 65, 1000] {
            let mut ahead = r.ahead(n);
            let mut walked = r.clone();
            for _ in 0..n {
                walked.next_u32();
            }
            assert_eq!(
                (0..70).map(|_| ahead.next_u32()).collect::<Vec<_>>(),
                (0..70).map(|_| walked.next_u32()).collect::<Vec<_>>(),
                "{n} ahead"
            );
        }
    }

    #[test]
    fn distributions_have_the_right_moments() {
        let mut r = Rng::new(1, Stream::BaseInit);
        let n = 200_000;
        let u: Vec<f32> = (0..n).map(|_| r.uniform()).collect();
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = u.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.005, "uniform mean {mean}");
        let g: Vec<f64> = (0..n).map(|_| r.normal() as f64).collect();
        let gm = g.iter().sum::<f64>() / n as f64;
        let gv = g.iter().map(|x| (x - gm) * (x - gm)).sum::<f64>() / n as f64;
        assert!(gm.abs() < 0.01 && (gv - 1.0).abs() < 0.02, "normal mean {gm} var {gv}");
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[r.below(7) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "below(7) counts {counts:?}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<u32> = (0..1000).collect();
        Rng::new(5, Stream::BaseShuffle).shuffle(&mut v);
        assert_ne!(v, (0..1000).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..1000).collect::<Vec<_>>());
    }
}
