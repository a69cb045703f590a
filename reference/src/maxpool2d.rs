//! Max pool 2x2, stride 2, floor for odd sizes; the gradient goes to the first maximum of each
//! window in row-major order (PyTorch's choice).

/// Flat index into x of the first maximum of window (oy, ox) of plane `plane` of an h x w input.
fn argmax(x: &[f64], plane: usize, h: usize, w: usize, oy: usize, ox: usize) -> usize {
    let mut best = plane * h * w + 2 * oy * w + 2 * ox;
    for (dy, dx) in [(0, 1), (1, 0), (1, 1)] {
        let j = plane * h * w + (2 * oy + dy) * w + 2 * ox + dx;
        if x[j] > x[best] {
            best = j;
        }
    }
    best
}

/// x: [n, c, h, w] -> y: [n, c, h/2, w/2]
pub fn forward(x: &[f64], n: usize, c: usize, h: usize, w: usize) -> Vec<f64> {
    let (ho, wo) = (h / 2, w / 2);
    let mut y = Vec::with_capacity(n * c * ho * wo);
    for plane in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                y.push(x[argmax(x, plane, h, w, oy, ox)]);
            }
        }
    }
    y
}

/// x: [n, c, h, w] (forward input), dy: [n, c, h/2, w/2] -> dx: [n, c, h, w]
pub fn backward(x: &[f64], dy: &[f64], n: usize, c: usize, h: usize, w: usize) -> Vec<f64> {
    let (ho, wo) = (h / 2, w / 2);
    let mut dx = vec![0.0; x.len()];
    for plane in 0..n * c {
        for oy in 0..ho {
            for ox in 0..wo {
                dx[argmax(x, plane, h, w, oy, ox)] += dy[(plane * ho + oy) * wo + ox];
            }
        }
    }
    dx
}
