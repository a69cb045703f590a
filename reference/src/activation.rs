//! ELU, ReLU and sigmoid, element-wise on tensors of any shape.

/// x: [any] -> y: [same]; alpha * (exp(x) - 1) for x <= 0.
pub fn elu_forward(x: &[f64], alpha: f64) -> Vec<f64> {
    x.iter()
        .map(|&v| if v > 0.0 { v } else { alpha * v.exp_m1() })
        .collect()
}

/// x (the forward input), dy: [any] -> dx: [same]
pub fn elu_backward(x: &[f64], dy: &[f64], alpha: f64) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > 0.0 { g } else { g * alpha * v.exp() })
        .collect()
}

/// x: [any] -> y: [same]
pub fn relu_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| v.max(0.0)).collect()
}

/// x (the forward input), dy: [any] -> dx: [same]; the gradient at 0 is 0, as PyTorch.
pub fn relu_backward(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| if v > 0.0 { g } else { 0.0 })
        .collect()
}

/// x: [any] -> y: [same]
pub fn sigmoid_forward(x: &[f64]) -> Vec<f64> {
    x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
}

/// y (the forward output), dy: [any] -> dx: [same]
pub fn sigmoid_backward(y: &[f64], dy: &[f64]) -> Vec<f64> {
    y.iter().zip(dy).map(|(&s, &g)| g * s * (1.0 - s)).collect()
}
