//! The inference network against the training network: the same checkpoint and images give the
//! same bits (probabilities, logits, attention maps), with and without batch norm; and it holds
//! only what the forward needs (no backward pipeline, no gradient, no optimizer state).

mod common;

use common::*;
use fer_cbam::model::checkpoint::Checkpoint;
use fer_cbam::model::{
    Attention, Evaluate, Gate, InferenceNetwork, ModelConfig, Network, Norm, ParamTable,
    TrainOptions,
};
use fer_cbam::ops::conv2d::{Conv2d, Conv2dShape};

fn config(norm: Norm, attention: Attention, gate: Gate) -> ModelConfig {
    ModelConfig {
        image_size: 32,
        // The third stage's 16 input channels run Winograd (conv2d v3) on the cpu set.
        widths: vec![8, 16, 32],
        norm,
        attention,
        gate,
        ..ModelConfig::default()
    }
}

/// A checkpoint whose parameters and (with batch norm) running statistics are far from their
/// initial values, so that a stage reading the wrong tensor would show.
fn checkpoint(config: &ModelConfig, seed: u64) -> Checkpoint {
    let table = ParamTable::new(config);
    let mut buffers = table.init_buffers();
    for e in table.buffers() {
        let v = random(seed ^ e.offset as u64, e.len());
        for (b, r) in buffers[e.offset..e.offset + e.len()].iter_mut().zip(v) {
            // Means in [-0.5, 0.5), variances in [0.5, 1.5).
            *b = if e.name.ends_with("running_var") {
                1.0 + r / 2.0
            } else {
                r / 2.0
            };
        }
    }
    Checkpoint {
        config: config.clone(),
        packed: table.init(seed),
        buffers,
        batches_tracked: 7,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Runs `net` on `images` and reads back what evaluation and the attention figures use.
fn outputs(net: &dyn Evaluate, images: &[f32], labels: &[u32]) -> Vec<Vec<u32>> {
    let gpu = gpu();
    let c = net.config();
    let dst = zeros("eval.probs", &[2 * net.batch(), c.classes.len()]);
    net.write_batch(gpu, images, labels).unwrap();
    net.forward_eval_into(gpu, &dst, net.batch()).unwrap();
    let mut out = vec![bits(&read(&dst)), bits(&read(net.logits()))];
    for i in 0..c.widths.len() {
        if let Some(m) = net.spatial_map(i) {
            out.push(bits(&read(m)));
        }
        if let Some(g) = net.channel_gate(i) {
            out.push(bits(&read(g)));
        }
    }
    out
}

#[test]
fn the_inference_network_gives_the_training_networks_evaluation_bits() {
    let gpu = gpu();
    let batch = 4;
    for (norm, attention, gate) in [
        (Norm::None, Attention::Full, Gate::Multiply),
        (Norm::Batch, Attention::Full, Gate::Multiply),
        (Norm::Batch, Attention::Channel, Gate::Residual),
        (Norm::None, Attention::None, Gate::Multiply),
    ] {
        let c = config(norm, attention, gate);
        let ck = checkpoint(&c, 11);
        let train = block_on(Network::new(gpu, &c, batch, TrainOptions::default())).unwrap();
        train.load(gpu, &ck).unwrap();
        let infer = block_on(InferenceNetwork::from_checkpoint(gpu, &ck, batch)).unwrap();
        let images: Vec<f32> = random(3, batch * 3 * 32 * 32)
            .iter()
            .map(|v| (v + 1.0) / 2.0)
            .collect();
        let labels = [0, 3, 6, 1];
        let a = outputs(&train, &images, &labels);
        let b = outputs(&infer, &images, &labels);
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            let differ = x.iter().zip(y).filter(|(p, q)| p != q).count();
            assert_eq!(
                differ,
                0,
                "{norm:?} {attention:?} {gate:?}: output {i} differs in {differ} of {} values",
                x.len()
            );
        }
        // The probabilities are real ones, not zeros both sides agree on.
        let probs = read(infer.probs());
        let row: f32 = probs[..c.classes.len()].iter().sum();
        assert!((row - 1.0).abs() < 1e-5 && probs.iter().any(|&p| p != probs[0]));
    }
}

#[test]
fn the_inference_network_holds_no_gradient_optimizer_state_or_backward_pipeline() {
    // A device of its own: the pipeline cache is per device, and the shared one has training
    // pipelines from other tests.
    let gpu = fer_cbam::Gpu::new_blocking().unwrap();
    let c = config(Norm::Batch, Attention::Full, Gate::Multiply);
    let net = block_on(InferenceNetwork::new(&gpu, &c, 8)).unwrap();
    let labels = gpu.pipeline_labels();
    assert!(!labels.is_empty());
    if gpu.kernels.conv == fer_cbam::ops::conv2d::Conv2dVersion::V3 {
        assert!(
            labels.iter().any(|l| l.starts_with("conv2d_winograd")),
            "the third stage should run Winograd: {labels:?}"
        );
    }
    for l in &labels {
        let training_only = l.contains("backward")
            // Winograd's weight gradient.
            || l.contains("output_grad_transform")
            || l.contains("weight_reduce")
            || l.starts_with("adam.")
            || l.starts_with("dropout.")
            // Batch norm's training forward (batch statistics); evaluation uses eval_stats.
            || l.contains("partial_")
            || l.contains("finish_");
        assert!(!training_only, "inference built {l}");
    }
    for e in net.plan() {
        let n = &e.name;
        assert!(
            !(n.contains("d_") || n.starts_with("grad") || n.starts_with("adam") || n == "history"),
            "inference allocated {n}"
        );
    }
    // Everything it holds, the training network holds too, at the same size; the rest of the
    // training network is the gradients, the optimizer state and the dropout outputs.
    let train = block_on(Network::new(&gpu, &c, 8, TrainOptions::default())).unwrap();
    for e in net.plan() {
        let t = train.plan().iter().find(|t| t.name == e.name);
        assert_eq!(t.map(|t| t.bytes), Some(e.bytes), "{}", e.name);
    }
    for t in train.plan() {
        if !net.plan().iter().any(|e| e.name == t.name) {
            let n = &t.name;
            let training_only = ["grads", "adam.m", "adam.v", "history"].contains(&n.as_str())
                || n.contains(".d_")
                || n.contains("drop");
            assert!(training_only, "the inference network lacks {n}");
        }
    }
}

#[test]
fn an_op_built_for_inference_refuses_its_backward_naming_it() {
    let gpu = gpu();
    let s = Conv2dShape {
        n: 1,
        c_in: 2,
        c_out: 3,
        h: 5,
        w: 5,
        k: 3,
        pad: 1,
    };
    let conv = block_on(Conv2d::forward_only(gpu, s, true)).unwrap();
    let (dy, w, dx) = (
        zeros("dy", &s.output_shape()),
        zeros("w", &s.weight_shape()),
        zeros("dx", &s.input_shape()),
    );
    let e = conv
        .backward_input(gpu, &dy, &w, &dx)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv2d.backward_input") && e.contains("inference"),
        "{e}"
    );
}
