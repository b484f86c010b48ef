//! A tiny deterministic generator for the randomised tests (`recon_fuzz`,
//! `recon_fuzz_features`, `kill_fuzz`), and their seeds: one per case, derived from its
//! name, printed, and overridden by an environment variable to explore or reproduce.

/// splitmix64.
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// True with probability `pct` percent.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// One of `xs`.
    pub fn pick<T: Clone>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize].clone()
    }
}

/// A case's default seed: its name folded into `salt` (each module has its own).
pub fn name_seed(salt: u64, name: &str) -> u64 {
    name.bytes()
        .fold(salt, |h, b| h.wrapping_mul(0x100_0000_01B3) ^ u64::from(b))
}

/// The seed of a case: `default`, unless the environment variable `var` holds one.
/// Printed with how to reproduce the case (`what` names it).
pub fn seed(var: &str, default: u64, what: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    eprintln!("{what}: seed {seed} (reproduce with {var}={seed})");
    seed
}
