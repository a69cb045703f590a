//! Adam / AdamW with PyTorch semantics (`torch.optim.Adam`, `torch.optim.AdamW`), one step over a
//! flat parameter vector.

/// Hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Decoupled (AdamW) decay: `p -= lr * weight_decay * p` before the Adam update.
    pub weight_decay: f64,
}

impl Default for Config {
    /// The spec's defaults: lr 0.001, betas (0.9, 0.999), eps 1e-8, no decay.
    fn default() -> Config {
        Config {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One step `t` (1-based) in place. params, grads, m, v: [len] each.
pub fn step(params: &mut [f64], grads: &[f64], m: &mut [f64], v: &mut [f64], c: &Config, t: u32) {
    assert!(t >= 1, "Adam steps are 1-based");
    let bc1 = 1.0 - c.beta1.powi(t as i32);
    let bc2 = 1.0 - c.beta2.powi(t as i32);
    for i in 0..params.len() {
        let g = grads[i];
        params[i] -= c.lr * c.weight_decay * params[i];
        m[i] = c.beta1 * m[i] + (1.0 - c.beta1) * g;
        v[i] = c.beta2 * v[i] + (1.0 - c.beta2) * g * g;
        let m_hat = m[i] / bc1;
        let v_hat = v[i] / bc2;
        params[i] -= c.lr * m_hat / (v_hat.sqrt() + c.eps);
    }
}
