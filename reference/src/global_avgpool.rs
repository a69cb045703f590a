//! Global average pool over H x W, `[n, c, h, w] -> [n, c]`.

/// The sizes of one pool.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
}

/// x: [n, c, h, w] -> y: [n, c]
pub fn forward(x: &[f64], s: &Shape) -> Vec<f64> {
    let plane = s.h * s.w;
    (0..s.n * s.c)
        .map(|i| x[i * plane..(i + 1) * plane].iter().sum::<f64>() / plane as f64)
        .collect()
}

/// dy: [n, c] -> dx: [n, c, h, w]; every position of a plane gets an equal share.
pub fn backward(dy: &[f64], s: &Shape) -> Vec<f64> {
    let plane = s.h * s.w;
    let mut dx = vec![0.0; s.n * s.c * plane];
    for (i, &g) in dy.iter().enumerate() {
        for d in &mut dx[i * plane..(i + 1) * plane] {
            *d = g / plane as f64;
        }
    }
    dx
}
