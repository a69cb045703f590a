//! The whole network of the spec composed from the reference ops, forward and backward, in f64:
//! what the GPU model is held against. Parameters are named as in the spec (PyTorch
//! state_dict style) and stored by name, the batch norms' running statistics beside them
//! (`stages.{i}.bn.running_mean`, `.running_var`), as in a PyTorch state_dict.
//!
//! The recipe options of the spec ("Options beyond the paper's text") are composed from the
//! same pieces: batch norm between each stage's conv and its ELU, and the residual gate as
//! `F' = F + gate(F)`, whose backward is `dF = dF' + gate_backward(dF')` (the gate ops know
//! nothing of the residual form here, unlike the GPU kernels' factor 1 + M).

use std::collections::BTreeMap;

use crate::{
    activation, batchnorm2d, cbam_channel, cbam_spatial, conv2d, dropout, global_avgpool, linear,
    maxpool2d, softmax_xent,
};

/// The shape-fixing part of the model config.
#[derive(Clone, Debug)]
pub struct Config {
    pub image_size: usize,
    pub in_channels: usize,
    pub widths: Vec<usize>,
    pub hidden: usize,
    pub classes: usize,
    pub channel_gate: bool,
    pub spatial_gate: bool,
    pub dropout: f32,
    /// A BatchNorm2d between each stage's conv and its ELU (`--norm batch`).
    pub batch_norm: bool,
    /// The residual gates `F' = F + M F` (`--gate residual`).
    pub residual: bool,
}

/// Parameters (or their gradients) by name.
pub type Params = BTreeMap<String, Vec<f64>>;

/// Dropout masks: layer seeds and the step, as the GPU network derives them.
#[derive(Clone, Copy, Debug)]
pub struct DropoutState {
    pub training: bool,
    pub seeds: [u32; 2],
    pub step: u32,
}

/// What one forward/backward produces.
pub struct Output {
    /// [n, classes]
    pub logits: Vec<f64>,
    pub loss: f64,
    pub correct: usize,
    pub grads: Params,
    /// With batch norm: the running statistics after this training-mode forward, by name.
    pub running: Params,
}

/// x + y element-wise (the residual gates).
fn add(x: &[f64], y: &[f64]) -> Vec<f64> {
    x.iter().zip(y).map(|(a, b)| a + b).collect()
}

/// The batch norm of stage `i` (`pre` = "stages.{i}") in training mode on `x`: its forward and
/// the running statistics it leaves, inserted into `running`.
fn bn_train(
    p: &Params,
    pre: &str,
    x: &[f64],
    s: &batchnorm2d::Shape,
    running: &mut Params,
) -> batchnorm2d::Forward {
    let f = batchnorm2d::forward_train(
        x,
        get(p, &format!("{pre}.bn.weight")),
        get(p, &format!("{pre}.bn.bias")),
        s,
    );
    let (rm, rv) = batchnorm2d::update_running(
        get(p, &format!("{pre}.bn.running_mean")),
        get(p, &format!("{pre}.bn.running_var")),
        &f,
        s,
    );
    running.insert(format!("{pre}.bn.running_mean"), rm);
    running.insert(format!("{pre}.bn.running_var"), rv);
    f
}

/// The logits of x in evaluation mode: dropout off, batch norm on the running statistics in `p`.
pub fn forward_eval(c: &Config, p: &Params, x: &[f64]) -> Vec<f64> {
    let n = x.len() / (c.in_channels * c.image_size * c.image_size);
    let mut cur = x.to_vec();
    let mut c_prev = c.in_channels;
    let mut half = c.image_size;
    for (i, &w) in c.widths.iter().enumerate() {
        let s = c.image_size >> i;
        let pre = format!("stages.{i}");
        let cs = conv2d::Shape {
            n,
            c_in: c_prev,
            c_out: w,
            h: s,
            w: s,
            k: 3,
            pad: 1,
        };
        let mut act = conv2d::forward(
            &cur,
            get(p, &format!("{pre}.conv.weight")),
            Some(get(p, &format!("{pre}.conv.bias"))),
            &cs,
        );
        if c.batch_norm {
            act = batchnorm2d::forward_eval(
                &act,
                get(p, &format!("{pre}.bn.weight")),
                get(p, &format!("{pre}.bn.bias")),
                get(p, &format!("{pre}.bn.running_mean")),
                get(p, &format!("{pre}.bn.running_var")),
                &batchnorm2d::Shape {
                    n,
                    c: w,
                    h: s,
                    w: s,
                },
            );
        }
        let elu = activation::elu_forward(&act, 1.0);
        half = s / 2;
        let mut out = maxpool2d::forward(&elu, n, w, s, s);
        if c.channel_gate {
            let gs = cbam_channel::Shape {
                n,
                c: w,
                h: half,
                w: half,
            };
            let y = cbam_channel::forward(&out, &mlp(p, &pre), &gs).y;
            out = if c.residual { add(&out, &y) } else { y };
        }
        if c.spatial_gate {
            let ss = cbam_spatial::Shape {
                n,
                c: w,
                h: half,
                w: half,
            };
            let y = cbam_spatial::forward(
                &out,
                get(p, &format!("{pre}.cbam.spatial.conv.weight")),
                get(p, &format!("{pre}.cbam.spatial.conv.bias")),
                &ss,
            )
            .y;
            out = if c.residual { add(&out, &y) } else { y };
        }
        cur = out;
        c_prev = w;
    }
    let gs = global_avgpool::Shape {
        n,
        c: c_prev,
        h: half,
        w: half,
    };
    let pooled = global_avgpool::forward(&cur, &gs);
    let fc1 = linear::forward(
        &pooled,
        get(p, "head.fc1.weight"),
        Some(get(p, "head.fc1.bias")),
        &linear::Shape {
            n,
            in_features: c_prev,
            out_features: c.hidden,
        },
    );
    linear::forward(
        &activation::elu_forward(&fc1, 1.0),
        get(p, "head.fc2.weight"),
        Some(get(p, "head.fc2.bias")),
        &linear::Shape {
            n,
            in_features: c.hidden,
            out_features: c.classes,
        },
    )
}

fn get<'a>(p: &'a Params, name: &str) -> &'a [f64] {
    p.get(name)
        .unwrap_or_else(|| panic!("parameter {name} missing"))
}

/// x: [n, in_channels, image_size, image_size], labels: [n] -> logits, loss, every gradient, in
/// training mode (batch norm on the batch's statistics, moving the running ones).
pub fn forward_backward(
    c: &Config,
    p: &Params,
    x: &[f64],
    labels: &[u32],
    drop: DropoutState,
) -> Output {
    let n = labels.len();
    struct Saved {
        input: Vec<f64>,
        conv_out: Vec<f64>,
        /// The ELU's input: the batch norm's output, or the conv's.
        act_in: Vec<f64>,
        elu_out: Vec<f64>,
        pool_out: Vec<f64>,
        ch_out: Option<Vec<f64>>,
        sp_fwd: Option<(Vec<f64>, cbam_spatial::Forward)>,
        conv: conv2d::Shape,
        half: usize,
    }
    let mut saved: Vec<Saved> = Vec::new();
    let mut running = Params::new();
    let mut cur = x.to_vec();
    let mut c_prev = c.in_channels;
    for (i, &w) in c.widths.iter().enumerate() {
        let s = c.image_size >> i;
        let cs = conv2d::Shape {
            n,
            c_in: c_prev,
            c_out: w,
            h: s,
            w: s,
            k: 3,
            pad: 1,
        };
        let pre = format!("stages.{i}");
        let conv_out = conv2d::forward(
            &cur,
            get(p, &format!("{pre}.conv.weight")),
            Some(get(p, &format!("{pre}.conv.bias"))),
            &cs,
        );
        let act_in = if c.batch_norm {
            let bs = batchnorm2d::Shape {
                n,
                c: w,
                h: s,
                w: s,
            };
            bn_train(p, &pre, &conv_out, &bs, &mut running).y
        } else {
            conv_out.clone()
        };
        let elu_out = activation::elu_forward(&act_in, 1.0);
        let pool_out = maxpool2d::forward(&elu_out, n, w, s, s);
        let half = s / 2;
        let gs = cbam_channel::Shape {
            n,
            c: w,
            h: half,
            w: half,
        };
        let mut out = pool_out.clone();
        let ch_out = if c.channel_gate {
            let f = cbam_channel::forward(&out, &mlp(p, &pre), &gs);
            out = if c.residual { add(&out, &f.y) } else { f.y };
            Some(out.clone())
        } else {
            None
        };
        let sp_fwd = if c.spatial_gate {
            let ss = cbam_spatial::Shape {
                n,
                c: w,
                h: half,
                w: half,
            };
            let f = cbam_spatial::forward(
                &out,
                get(p, &format!("{pre}.cbam.spatial.conv.weight")),
                get(p, &format!("{pre}.cbam.spatial.conv.bias")),
                &ss,
            );
            let input = out.clone();
            out = if c.residual {
                add(&out, &f.y)
            } else {
                f.y.clone()
            };
            Some((input, f))
        } else {
            None
        };
        saved.push(Saved {
            input: cur,
            conv_out,
            act_in,
            elu_out,
            pool_out,
            ch_out,
            sp_fwd,
            conv: cs,
            half,
        });
        cur = out;
        c_prev = w;
    }
    // Head.
    let half = saved.last().unwrap().half;
    let gs = global_avgpool::Shape {
        n,
        c: c_prev,
        h: half,
        w: half,
    };
    let pooled = global_avgpool::forward(&cur, &gs);
    let drop1 = dropout::forward(&pooled, c.dropout, drop.seeds[0], drop.step, drop.training);
    let l1 = linear::Shape {
        n,
        in_features: c_prev,
        out_features: c.hidden,
    };
    let fc1_out = linear::forward(
        &drop1,
        get(p, "head.fc1.weight"),
        Some(get(p, "head.fc1.bias")),
        &l1,
    );
    let elu_out = activation::elu_forward(&fc1_out, 1.0);
    let drop2 = dropout::forward(&elu_out, c.dropout, drop.seeds[1], drop.step, drop.training);
    let l2 = linear::Shape {
        n,
        in_features: c.hidden,
        out_features: c.classes,
    };
    let logits = linear::forward(
        &drop2,
        get(p, "head.fc2.weight"),
        Some(get(p, "head.fc2.bias")),
        &l2,
    );
    let xs = softmax_xent::Shape { n, k: c.classes };
    let out = softmax_xent::forward(&logits, labels, None, &xs);

    // Backward.
    let mut g = Params::new();
    let d_logits = softmax_xent::backward(&out.probs, labels, None, &xs);
    g.insert(
        "head.fc2.weight".into(),
        linear::backward_weight(&d_logits, &drop2, &l2),
    );
    g.insert(
        "head.fc2.bias".into(),
        linear::backward_bias(&d_logits, &l2),
    );
    let d_drop2 = linear::backward_input(&d_logits, get(p, "head.fc2.weight"), &l2);
    let d_elu = dropout::backward(&d_drop2, c.dropout, drop.seeds[1], drop.step, drop.training);
    let d_fc1 = activation::elu_backward(&fc1_out, &d_elu, 1.0);
    g.insert(
        "head.fc1.weight".into(),
        linear::backward_weight(&d_fc1, &drop1, &l1),
    );
    g.insert("head.fc1.bias".into(), linear::backward_bias(&d_fc1, &l1));
    let d_drop1 = linear::backward_input(&d_fc1, get(p, "head.fc1.weight"), &l1);
    let d_pooled = dropout::backward(&d_drop1, c.dropout, drop.seeds[0], drop.step, drop.training);
    let mut d = global_avgpool::backward(&d_pooled, &gs);
    for (i, st) in saved.iter().enumerate().rev() {
        let pre = format!("stages.{i}");
        let w = st.conv.c_out;
        if let Some((input, f)) = &st.sp_fwd {
            let ss = cbam_spatial::Shape {
                n,
                c: w,
                h: st.half,
                w: st.half,
            };
            let gr = cbam_spatial::backward(
                &d,
                input,
                get(p, &format!("{pre}.cbam.spatial.conv.weight")),
                f,
                &ss,
            );
            g.insert(format!("{pre}.cbam.spatial.conv.weight"), gr.dweight);
            g.insert(format!("{pre}.cbam.spatial.conv.bias"), gr.dbias);
            d = if c.residual { add(&d, &gr.dx) } else { gr.dx };
        }
        if st.ch_out.is_some() {
            let gs = cbam_channel::Shape {
                n,
                c: w,
                h: st.half,
                w: st.half,
            };
            let b = cbam_channel::backward(&st.pool_out, &mlp(p, &pre), &d, &gs);
            let q = format!("{pre}.cbam.channel");
            g.insert(format!("{q}.fc1.weight"), b.dparams.fc1_weight);
            g.insert(format!("{q}.fc1.bias"), b.dparams.fc1_bias);
            g.insert(format!("{q}.fc2.weight"), b.dparams.fc2_weight);
            g.insert(format!("{q}.fc2.bias"), b.dparams.fc2_bias);
            d = if c.residual { add(&d, &b.dx) } else { b.dx };
        }
        let s = st.conv.h;
        let d_elu = maxpool2d::backward(&st.elu_out, &d, n, w, s, s);
        let mut d_conv = activation::elu_backward(&st.act_in, &d_elu, 1.0);
        if c.batch_norm {
            let bs = batchnorm2d::Shape {
                n,
                c: w,
                h: s,
                w: s,
            };
            let b = batchnorm2d::backward(
                &d_conv,
                &st.conv_out,
                get(p, &format!("{pre}.bn.weight")),
                &bs,
            );
            g.insert(format!("{pre}.bn.weight"), b.dgamma);
            g.insert(format!("{pre}.bn.bias"), b.dbeta);
            d_conv = b.dx;
        }
        g.insert(
            format!("{pre}.conv.weight"),
            conv2d::backward_weight(&d_conv, &st.input, &st.conv),
        );
        g.insert(
            format!("{pre}.conv.bias"),
            conv2d::backward_bias(&d_conv, &st.conv),
        );
        d = conv2d::backward_input(&d_conv, get(p, &format!("{pre}.conv.weight")), &st.conv);
    }
    Output {
        logits,
        loss: out.loss,
        correct: out.correct,
        grads: g,
        running,
    }
}

fn mlp(p: &Params, pre: &str) -> cbam_channel::Mlp {
    let q = format!("{pre}.cbam.channel");
    cbam_channel::Mlp {
        fc1_weight: get(p, &format!("{q}.fc1.weight")).to_vec(),
        fc1_bias: get(p, &format!("{q}.fc1.bias")).to_vec(),
        fc2_weight: get(p, &format!("{q}.fc2.weight")).to_vec(),
        fc2_bias: get(p, &format!("{q}.fc2.bias")).to_vec(),
    }
}
