//! The engine's one random number generator, SplitMix64, and the logarithm its normal draws
//! use. Initialisation, shuffling, splits, augmentation and the synthetic faces all draw from it,
//! so a seed gives the same bits on every platform and with every version of every dependency.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever, unlike a library's
/// "standard" generator.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Standard normal, by Marsaglia's polar method (one of each accepted pair is used). Only
    /// +, -, *, / and sqrt, which IEEE 754 rounds the same everywhere, and [`ln`]: the same
    /// seed gives the same bits on every platform, the browser's included.
    pub fn next_normal(&mut self) -> f64 {
        loop {
            let u = 2.0 * self.next_unit() - 1.0;
            let v = 2.0 * self.next_unit() - 1.0;
            let s = u * u + v * v;
            if s > 0.0 && s < 1.0 {
                return u * (-2.0 * ln(s) / s).sqrt();
            }
        }
    }
}

/// The natural logarithm of a positive normal f64 from the exponent bits, +, -, * and /:
/// `x = m 2^e` with `m` in [sqrt(1/2), sqrt(2)), `ln m = 2 atanh(t)`, `t = (m - 1) / (m + 1)`,
/// `|t| < 0.172`, summed to t^41 (the next term is below 1e-32). libm's `ln` may round the last
/// bit differently between platforms; this may not.
pub fn ln(x: f64) -> f64 {
    let bits = x.to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m /= 2.0;
        e += 1;
    }
    let t = (m - 1.0) / (m + 1.0);
    let t2 = t * t;
    let (mut term, mut sum) = (t, 0.0);
    for k in 0..21 {
        sum += term / (2 * k + 1) as f64;
        term *= t2;
    }
    2.0 * sum + e as f64 * std::f64::consts::LN_2
}
