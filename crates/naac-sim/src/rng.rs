//! The simulator's one source of randomness: xoshiro256** (Blackman and Vigna), seeded
//! through SplitMix64, with the few distributions the models draw from. Nothing else in a
//! run is random, so a seed fixes the whole trace.

/// A seeded generator.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        Rng {
            s: [
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
                splitmix(&mut x),
            ],
        }
    }

    /// An independent stream derived from this one and `label` (so adding draws to one
    /// model does not shift another's).
    pub fn fork(&self, label: u64) -> Rng {
        Rng::new(self.s[0] ^ self.s[3].rotate_left(17) ^ label.wrapping_mul(0x9e37_79b9))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (`n > 0`), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        let n = n.max(1);
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            if low >= n || low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// A standard normal draw (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.f64().max(f64::MIN_POSITIVE);
        let u2 = self.f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with median `median` and log-space deviation `sigma`.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Weibull with shape `k` and median `median` (scale = median / ln2^(1/k)).
    pub fn weibull_median(&mut self, k: f64, median: f64) -> f64 {
        let scale = median / std::f64::consts::LN_2.powf(1.0 / k);
        let u = self.f64();
        scale * (-(1.0 - u).ln()).powf(1.0 / k)
    }

    /// Exponential with mean `mean`.
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.f64()).ln()
    }

    /// Log-uniform in `[lo, hi]`.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let (lo, hi) = (lo.max(f64::MIN_POSITIVE), hi.max(lo));
        (lo.ln() + self.f64() * (hi.ln() - lo.ln())).exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_fixes_the_stream_and_forks_are_independent() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::new(8);
        assert_ne!(xs[0], c.next_u64());
        let (mut f, mut g) = (a.fork(1), a.fork(2));
        assert_ne!(f.next_u64(), g.next_u64());
    }

    #[test]
    fn distributions_have_their_medians_and_ranges() {
        let mut r = Rng::new(1);
        let n = 20_000;
        let mut w: Vec<f64> = (0..n).map(|_| r.weibull_median(0.5, 60.0)).collect();
        w.sort_by(f64::total_cmp);
        let med = w[n / 2];
        assert!((50.0..70.0).contains(&med), "weibull median {med}");
        let mut l: Vec<f64> = (0..n).map(|_| r.lognormal(1.0, 0.5)).collect();
        l.sort_by(f64::total_cmp);
        assert!(
            (0.9..1.1).contains(&l[n / 2]),
            "lognormal median {}",
            l[n / 2]
        );
        for _ in 0..n {
            let b = r.below(7);
            assert!(b < 7);
            let u = r.log_uniform(10.0, 1000.0);
            assert!((10.0..=1000.0).contains(&u));
        }
        let mean: f64 = (0..n).map(|_| r.exp(5.0)).sum::<f64>() / n as f64;
        assert!((4.7..5.3).contains(&mean), "exp mean {mean}");
    }
}
