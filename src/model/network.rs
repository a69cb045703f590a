//! The network on the GPU: every op built once for one batch size, every activation and
//! gradient allocated once (the memory plan), and the whole training step (forward, loss,
//! backward, Adam) as one ordered list of dispatches recorded into a single submission.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{Gate, ModelConfig, Norm};
use crate::model::params::ParamTable;
use crate::ops::activation::{Activation, ActivationKind};
use crate::ops::adam::{Adam, AdamConfig};
use crate::ops::batchnorm2d::{BatchNorm2d, BatchNorm2dShape, BnAffine, BnRunning};
use crate::ops::cbam_channel::{CbamChannel, CbamChannelShape, ChannelMlp};
use crate::ops::cbam_spatial::{CbamSpatial, CbamSpatialShape};
use crate::ops::conv2d::{Conv2d, Conv2dShape};
use crate::ops::dropout::Dropout;
use crate::ops::global_avgpool::{GlobalAvgPool, GlobalAvgPoolShape};
use crate::ops::linear::{Linear, LinearShape};
use crate::ops::maxpool2d::{MaxPool2d, MaxPool2dShape};
use crate::ops::softmax_xent::{SoftmaxXent, SoftmaxXentShape};
use crate::ops::Dispatch;
use crate::tensor::Tensor;

/// Training options that live on the device.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    pub adam: AdamConfig,
    /// Seed of the dropout masks (each layer derives its own).
    pub seed: u32,
    /// Per-class weights of the loss (PyTorch's `CrossEntropyLoss(weight=...)`), one per class,
    /// uploaded once; `None` is the plain batch mean.
    pub class_weights: Option<Vec<f32>>,
}

/// The tensors of one stage (conv, optional batch norm, ELU, pool, optional gates) and their
/// gradients.
struct Stage {
    conv: Conv2d,
    bn: Option<BatchNorm2d>,
    elu: Activation,
    pool: MaxPool2d,
    channel: Option<CbamChannel>,
    spatial: Option<CbamSpatial>,
    conv_out: Tensor,
    bn_out: Option<Tensor>,
    elu_out: Tensor,
    pool_out: Tensor,
    channel_out: Option<Tensor>,
    spatial_out: Option<Tensor>,
    d_conv_out: Tensor,
    d_bn_out: Option<Tensor>,
    d_elu_out: Tensor,
    d_pool_out: Tensor,
    d_channel_out: Option<Tensor>,
    d_spatial_out: Option<Tensor>,
}

impl Stage {
    /// The ELU's input: the batch norm's output, or the conv's without one.
    fn act_in(&self) -> &Tensor {
        self.bn_out.as_ref().unwrap_or(&self.conv_out)
    }
    fn d_act_in(&self) -> &Tensor {
        self.d_bn_out.as_ref().unwrap_or(&self.d_conv_out)
    }
    fn output(&self) -> &Tensor {
        self.spatial_out
            .as_ref()
            .or(self.channel_out.as_ref())
            .unwrap_or(&self.pool_out)
    }
    fn d_output(&self) -> &Tensor {
        self.d_spatial_out
            .as_ref()
            .or(self.d_channel_out.as_ref())
            .unwrap_or(&self.d_pool_out)
    }
}

/// Largest batch [`Network::new`] builds: beyond it the per-op shape uniforms (u32) and any
/// device's memory are long exceeded.
pub const MAX_BATCH: usize = 1 << 16;

/// Steps of (loss, correct) kept on the device between readbacks.
pub const HISTORY: usize = 64;

/// One entry of the memory plan.
#[derive(Clone, Debug)]
pub struct PlanEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub bytes: u64,
}

/// The network for one config and one batch size.
pub struct Network {
    config: ModelConfig,
    batch: usize,
    table: ParamTable,
    params: Tensor,
    grads: Tensor,
    adam_m: Tensor,
    adam_v: Tensor,
    /// The running statistics, packed by the table's buffer layout (batch norm only).
    buffers: Option<Tensor>,
    /// Training-mode forwards since the running statistics started (PyTorch's
    /// `num_batches_tracked`; counted here, as every training submission tracks one batch).
    /// Atomic because the GPU state it counts changes through `&self` too.
    batches_tracked: AtomicU64,
    input: Tensor,
    labels: Tensor,
    logits: Tensor,
    probs: Tensor,
    loss: Tensor,
    correct: Tensor,
    /// `[HISTORY, 2]`: (loss, correct) of the last HISTORY steps, slot (t - 1) % HISTORY.
    history: Tensor,
    plan: Vec<PlanEntry>,
    /// The plan's tensors, in the plan's order (for [`Network::tensor`]).
    planned: Vec<Tensor>,
    stages: Vec<Stage>,
    dropouts: [Dropout; 2],
    xent: SoftmaxXent,
    adam: Adam,
    /// Kept for their uniform buffers, which the recorded dispatches bind.
    _head: (GlobalAvgPool, Linear, Linear, Activation),
    /// The loss's class weights, bound by the recorded loss dispatches.
    _class_weights: Option<Tensor>,
    forward: Vec<Dispatch>,
    /// With batch norm, the evaluation forward (running statistics instead of the batch's,
    /// which stay as they are); without, `forward` serves both.
    forward_eval: Option<Vec<Dispatch>>,
    backward: Vec<Dispatch>,
    update: Dispatch,
    step: u32,
}

/// A device-side copy of a network's training state (see [`Network::snapshot`]).
pub struct Snapshot {
    tensors: Vec<Tensor>,
    step: u32,
    batches_tracked: u64,
}

impl Snapshot {
    /// The step count of the state it holds.
    pub fn step(&self) -> u32 {
        self.step
    }
}

/// Allocates tensors while recording the memory plan.
struct Planner<'a> {
    gpu: &'a Gpu,
    plan: Vec<PlanEntry>,
    tensors: Vec<Tensor>,
}

impl Planner<'_> {
    fn alloc(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.gpu.zeros(name, shape)?;
        self.plan.push(PlanEntry {
            name: name.into(),
            shape: shape.to_vec(),
            bytes: 4 * t.len() as u64,
        });
        self.tensors.push(t.clone());
        Ok(t)
    }
}

impl Network {
    /// Builds every op, allocates every tensor (each checked against the device's limits, with
    /// an error naming the tensor) and records the step's dispatches.
    pub async fn new(
        gpu: &Gpu,
        config: &ModelConfig,
        batch: usize,
        options: TrainOptions,
    ) -> Result<Network> {
        config.validate()?;
        if batch == 0 || batch > MAX_BATCH {
            return Err(Error::InvalidConfig {
                op: "network".into(),
                message: format!("batch size {batch} is outside 1..={MAX_BATCH}"),
            });
        }
        let n = batch;
        let table = ParamTable::new(config);
        let mut p = Planner {
            gpu,
            plan: Vec::new(),
            tensors: Vec::new(),
        };
        let packed = table.packed_len();
        let params = p.alloc("params", &[packed])?;
        let grads = p.alloc("grads", &[packed])?;
        let adam_m = p.alloc("adam.m", &[packed])?;
        let adam_v = p.alloc("adam.v", &[packed])?;
        let buffers = if table.buffers_len() > 0 {
            let t = p.alloc("buffers", &[table.buffers_len()])?;
            gpu.write(&t, &table.init_buffers())?;
            Some(t)
        } else {
            None
        };
        let view = |t: &Tensor, prefix: &str, name: &str| -> Result<Tensor> {
            let e = table.get(name).expect("parameter from the table");
            t.view(&format!("{prefix}{name}"), e.offset, &e.shape)
        };
        let param = |name: &str| view(&params, "", name);
        let grad = |name: &str| view(&grads, "grad.", name);
        let buffer = |name: &str| -> Result<Tensor> {
            let e = table.buffer(name).expect("buffer from the table");
            let t = buffers
                .as_ref()
                .expect("allocated with the table's buffers");
            t.view(name, e.offset, &e.shape)
        };
        let residual = config.gate == Gate::Residual;

        let size = config.image_size;
        let input = p.alloc("input", &[n, config.in_channels, size, size])?;
        let mut stages: Vec<Stage> = Vec::new();
        let mut c_prev = config.in_channels;
        for (i, &w) in config.widths.iter().enumerate() {
            let s = config.stage_size(i);
            let full = [n, w, s, s];
            let half = [n, w, s / 2, s / 2];
            let conv_shape = Conv2dShape {
                n,
                c_in: c_prev,
                c_out: w,
                h: s,
                w: s,
                k: 3,
                pad: 1,
            };
            let gate_shape = (n, w, s / 2, s / 2);
            let bn = if config.norm == Norm::Batch {
                Some(
                    BatchNorm2d::new(
                        gpu,
                        BatchNorm2dShape {
                            n,
                            c: w,
                            h: s,
                            w: s,
                        },
                    )
                    .await?,
                )
            } else {
                None
            };
            let channel = if config.attention.has_channel() {
                let (n, c, h, w) = gate_shape;
                Some(
                    CbamChannel::with_residual(gpu, CbamChannelShape { n, c, h, w }, residual)
                        .await?,
                )
            } else {
                None
            };
            let spatial = if config.attention.has_spatial() {
                let (n, c, h, w) = gate_shape;
                Some(
                    CbamSpatial::with_residual(gpu, CbamSpatialShape { n, c, h, w }, residual)
                        .await?,
                )
            } else {
                None
            };
            let mut opt = |on: bool, name: String, shape: &[usize]| -> Result<Option<Tensor>> {
                on.then(|| p.alloc(&name, shape)).transpose()
            };
            let bn_out = opt(bn.is_some(), format!("stages.{i}.bn_out"), &full)?;
            let d_bn_out = opt(bn.is_some(), format!("stages.{i}.d_bn_out"), &full)?;
            let channel_out = opt(channel.is_some(), format!("stages.{i}.channel_out"), &half)?;
            let spatial_out = opt(spatial.is_some(), format!("stages.{i}.spatial_out"), &half)?;
            let d_channel_out = opt(
                channel.is_some(),
                format!("stages.{i}.d_channel_out"),
                &half,
            )?;
            let d_spatial_out = opt(
                spatial.is_some(),
                format!("stages.{i}.d_spatial_out"),
                &half,
            )?;
            stages.push(Stage {
                conv: Conv2d::new(gpu, conv_shape, true).await?,
                bn,
                elu: Activation::new(gpu, ActivationKind::Elu { alpha: 1.0 }, &full).await?,
                pool: MaxPool2d::new(
                    gpu,
                    MaxPool2dShape {
                        n,
                        c: w,
                        h: s,
                        w: s,
                    },
                )
                .await?,
                channel,
                spatial,
                conv_out: p.alloc(&format!("stages.{i}.conv_out"), &full)?,
                bn_out,
                elu_out: p.alloc(&format!("stages.{i}.elu_out"), &full)?,
                pool_out: p.alloc(&format!("stages.{i}.pool_out"), &half)?,
                channel_out,
                spatial_out,
                d_conv_out: p.alloc(&format!("stages.{i}.d_conv_out"), &full)?,
                d_bn_out,
                d_elu_out: p.alloc(&format!("stages.{i}.d_elu_out"), &full)?,
                d_pool_out: p.alloc(&format!("stages.{i}.d_pool_out"), &half)?,
                d_channel_out,
                d_spatial_out,
            });
            c_prev = w;
        }

        // Head: global average pool, dropout, fc1, ELU, dropout, fc2, softmax cross-entropy.
        let last = stages.last().expect("at least one stage");
        let s_last = config.stage_size(config.widths.len() - 1) / 2;
        let hid = config.hidden;
        let k = config.classes.len();
        let gap = GlobalAvgPool::new(
            gpu,
            GlobalAvgPoolShape {
                n,
                c: c_prev,
                h: s_last,
                w: s_last,
            },
        )
        .await?;
        let pooled = p.alloc("head.pooled", &[n, c_prev])?;
        let drop1_out = p.alloc("head.drop1_out", &[n, c_prev])?;
        let fc1_out = p.alloc("head.fc1_out", &[n, hid])?;
        let elu_out = p.alloc("head.elu_out", &[n, hid])?;
        let drop2_out = p.alloc("head.drop2_out", &[n, hid])?;
        let logits = p.alloc("logits", &[n, k])?;
        let probs = p.alloc("probs", &[n, k])?;
        let labels = p.alloc("labels", &[n])?;
        let loss = p.alloc("loss", &[1])?;
        let correct = p.alloc("correct", &[1])?;
        let history = p.alloc("history", &[HISTORY, 2])?;
        let d_logits = p.alloc("head.d_logits", &[n, k])?;
        let d_drop2_out = p.alloc("head.d_drop2_out", &[n, hid])?;
        let d_elu_out = p.alloc("head.d_elu_out", &[n, hid])?;
        let d_fc1_out = p.alloc("head.d_fc1_out", &[n, hid])?;
        let d_drop1_out = p.alloc("head.d_drop1_out", &[n, c_prev])?;
        let d_pooled = p.alloc("head.d_pooled", &[n, c_prev])?;

        let drop1 = Dropout::new(
            gpu,
            &[n, c_prev],
            config.dropout,
            options.seed.wrapping_mul(2),
        )
        .await?;
        let drop2 = Dropout::new(
            gpu,
            &[n, hid],
            config.dropout,
            options.seed.wrapping_mul(2).wrapping_add(1),
        )
        .await?;
        let fc1 = Linear::new(
            gpu,
            LinearShape {
                n,
                in_features: c_prev,
                out_features: hid,
            },
            true,
        )
        .await?;
        let head_elu = Activation::new(gpu, ActivationKind::Elu { alpha: 1.0 }, &[n, hid]).await?;
        let fc2 = Linear::new(
            gpu,
            LinearShape {
                n,
                in_features: hid,
                out_features: k,
            },
            true,
        )
        .await?;
        let class_weights = match &options.class_weights {
            Some(w) => {
                if w.len() != k || w.iter().any(|v| !v.is_finite() || *v < 0.0) {
                    return Err(Error::InvalidConfig {
                        op: "network".into(),
                        message: format!(
                            "class weights must be {k} finite non-negative numbers, got {w:?}"
                        ),
                    });
                }
                Some(p.alloc("class_weights", &[k])?)
            }
            None => None,
        };
        if let (Some(t), Some(w)) = (&class_weights, &options.class_weights) {
            gpu.write(t, w)?;
        }
        let xent =
            SoftmaxXent::new(gpu, SoftmaxXentShape { n, k }, class_weights.is_some()).await?;

        // The forward, in training mode (batch norm on the batch's statistics, moving the
        // running ones) or evaluation mode (on the running statistics). Dropout's mode is its
        // uniform's, set per submission, so both lists share its dispatches' form.
        let record_forward = |training: bool| -> Result<Vec<Dispatch>> {
            let mut forward = Vec::new();
            for (i, st) in stages.iter().enumerate() {
                let x = if i == 0 {
                    &input
                } else {
                    stages[i - 1].output()
                };
                let pre = format!("stages.{i}");
                forward.push(st.conv.forward(
                    gpu,
                    x,
                    &param(&format!("{pre}.conv.weight"))?,
                    Some(&param(&format!("{pre}.conv.bias"))?),
                    &st.conv_out,
                )?);
                if let (Some(bn), Some(out)) = (&st.bn, &st.bn_out) {
                    let (g, b) = (
                        param(&format!("{pre}.bn.weight"))?,
                        param(&format!("{pre}.bn.bias"))?,
                    );
                    let (rm, rv) = (
                        buffer(&format!("{pre}.bn.running_mean"))?,
                        buffer(&format!("{pre}.bn.running_var"))?,
                    );
                    let affine = BnAffine {
                        weight: &g,
                        bias: &b,
                    };
                    let running = BnRunning {
                        mean: &rm,
                        var: &rv,
                    };
                    forward.extend(if training {
                        bn.forward_train(gpu, &st.conv_out, &affine, &running, out)?
                    } else {
                        bn.forward_eval(gpu, &st.conv_out, &affine, &running, out)?
                    });
                }
                forward.push(st.elu.forward(gpu, st.act_in(), &st.elu_out)?);
                forward.push(st.pool.forward(gpu, &st.elu_out, &st.pool_out)?);
                let mut gate_in = st.pool_out.clone();
                if let (Some(ch), Some(out)) = (&st.channel, &st.channel_out) {
                    let t = mlp_tensors(&param, &pre)?;
                    forward.extend(ch.forward(gpu, &gate_in, &t.as_mlp(), out)?);
                    gate_in = out.clone();
                }
                if let (Some(sp), Some(out)) = (&st.spatial, &st.spatial_out) {
                    forward.extend(sp.forward(
                        gpu,
                        &gate_in,
                        &param(&format!("{pre}.cbam.spatial.conv.weight"))?,
                        &param(&format!("{pre}.cbam.spatial.conv.bias"))?,
                        out,
                    )?);
                }
            }
            forward.push(gap.forward(gpu, last.output(), &pooled)?);
            forward.push(drop1.forward(gpu, &pooled, &drop1_out)?);
            forward.push(fc1.forward(
                gpu,
                &drop1_out,
                &param("head.fc1.weight")?,
                Some(&param("head.fc1.bias")?),
                &fc1_out,
            )?);
            forward.push(head_elu.forward(gpu, &fc1_out, &elu_out)?);
            forward.push(drop2.forward(gpu, &elu_out, &drop2_out)?);
            forward.push(fc2.forward(
                gpu,
                &drop2_out,
                &param("head.fc2.weight")?,
                Some(&param("head.fc2.bias")?),
                &logits,
            )?);
            forward.push(xent.forward(
                gpu,
                &logits,
                &labels,
                class_weights.as_ref(),
                &probs,
                &loss,
                &correct,
            )?);
            Ok(forward)
        };
        let forward = record_forward(true)?;
        let forward_eval = match config.norm {
            Norm::Batch => Some(record_forward(false)?),
            Norm::None => None,
        };

        // Backward, in reverse. Every op overwrites its gradients, so nothing is zeroed per step.
        let mut backward =
            vec![xent.backward(gpu, &probs, &labels, class_weights.as_ref(), &d_logits)?];
        let fc2_w = param("head.fc2.weight")?;
        backward.push(fc2.backward_input(gpu, &d_logits, &fc2_w, &d_drop2_out)?);
        backward.push(fc2.backward_weight(
            gpu,
            &d_logits,
            &drop2_out,
            &grad("head.fc2.weight")?,
        )?);
        backward.push(fc2.backward_bias(gpu, &d_logits, &grad("head.fc2.bias")?)?);
        backward.push(drop2.backward(gpu, &d_drop2_out, &d_elu_out)?);
        backward.push(head_elu.backward(gpu, &fc1_out, &d_elu_out, &d_fc1_out)?);
        let fc1_w = param("head.fc1.weight")?;
        backward.push(fc1.backward_input(gpu, &d_fc1_out, &fc1_w, &d_drop1_out)?);
        backward.push(fc1.backward_weight(
            gpu,
            &d_fc1_out,
            &drop1_out,
            &grad("head.fc1.weight")?,
        )?);
        backward.push(fc1.backward_bias(gpu, &d_fc1_out, &grad("head.fc1.bias")?)?);
        backward.push(drop1.backward(gpu, &d_drop1_out, &d_pooled)?);
        backward.push(gap.backward(gpu, &d_pooled, last.d_output())?);
        for i in (0..stages.len()).rev() {
            let st = &stages[i];
            let pre = format!("stages.{i}");
            let x = if i == 0 {
                &input
            } else {
                stages[i - 1].output()
            };
            let mut gate_in = st.pool_out.clone();
            let mut d_gate_in = st.d_pool_out.clone();
            if let Some(out) = &st.channel_out {
                gate_in = out.clone();
                d_gate_in = st
                    .d_channel_out
                    .clone()
                    .expect("allocated with channel_out");
            }
            if let (Some(sp), Some(d_out)) = (&st.spatial, &st.d_spatial_out) {
                backward.extend(sp.backward(
                    gpu,
                    &gate_in,
                    d_out,
                    &param(&format!("{pre}.cbam.spatial.conv.weight"))?,
                    &d_gate_in,
                    &grad(&format!("{pre}.cbam.spatial.conv.weight"))?,
                    &grad(&format!("{pre}.cbam.spatial.conv.bias"))?,
                )?);
            }
            if let (Some(ch), Some(d_out)) = (&st.channel, &st.d_channel_out) {
                let t = mlp_tensors(&param, &pre)?;
                let g = mlp_tensors(&grad, &pre)?;
                backward.extend(ch.backward(
                    gpu,
                    &st.pool_out,
                    &t.as_mlp(),
                    d_out,
                    &st.d_pool_out,
                    &g.as_mlp(),
                )?);
            }
            backward.push(
                st.pool
                    .backward(gpu, &st.elu_out, &st.d_pool_out, &st.d_elu_out)?,
            );
            backward.push(
                st.elu
                    .backward(gpu, st.act_in(), &st.d_elu_out, st.d_act_in())?,
            );
            if let (Some(bn), Some(d_out)) = (&st.bn, &st.d_bn_out) {
                let (dg, db) = (
                    grad(&format!("{pre}.bn.weight"))?,
                    grad(&format!("{pre}.bn.bias"))?,
                );
                backward.extend(bn.backward(
                    gpu,
                    &st.conv_out,
                    &param(&format!("{pre}.bn.weight"))?,
                    d_out,
                    &st.d_conv_out,
                    &BnAffine {
                        weight: &dg,
                        bias: &db,
                    },
                )?);
            }
            backward.extend(st.conv.backward_weight(
                gpu,
                &st.d_conv_out,
                x,
                &grad(&format!("{pre}.conv.weight"))?,
            )?);
            backward.extend(st.conv.backward_bias(
                gpu,
                &st.d_conv_out,
                &grad(&format!("{pre}.conv.bias"))?,
            )?);
            // The image's own gradient is never needed.
            if i > 0 {
                backward.push(st.conv.backward_input(
                    gpu,
                    &st.d_conv_out,
                    &param(&format!("{pre}.conv.weight"))?,
                    stages[i - 1].d_output(),
                )?);
            }
        }
        let mut adam = Adam::new(gpu, packed, options.adam).await?;
        adam.set_step(gpu, 1)?;
        let update = adam.step(gpu, &params, &grads, &adam_m, &adam_v)?;
        Ok(Network {
            config: config.clone(),
            batch,
            table,
            params,
            grads,
            adam_m,
            adam_v,
            buffers,
            batches_tracked: AtomicU64::new(0),
            input,
            labels,
            logits,
            probs,
            loss,
            correct,
            history,
            plan: p.plan,
            planned: p.tensors,
            stages,
            dropouts: [drop1, drop2],
            xent,
            adam,
            _head: (gap, fc1, fc2, head_elu),
            _class_weights: class_weights,
            forward,
            forward_eval,
            backward,
            update,
            step: 0,
        })
    }
}

/// The four tensors of a stage's channel-gate MLP, taken from `source` (parameters or grads).
struct MlpTensors([Tensor; 4]);

impl MlpTensors {
    fn as_mlp(&self) -> ChannelMlp<'_> {
        ChannelMlp {
            fc1_weight: &self.0[0],
            fc1_bias: &self.0[1],
            fc2_weight: &self.0[2],
            fc2_bias: &self.0[3],
        }
    }
}

fn mlp_tensors(source: &dyn Fn(&str) -> Result<Tensor>, pre: &str) -> Result<MlpTensors> {
    let t = |s: &str| source(&format!("{pre}.cbam.channel.{s}"));
    Ok(MlpTensors([
        t("fc1.weight")?,
        t("fc1.bias")?,
        t("fc2.weight")?,
        t("fc2.bias")?,
    ]))
}

impl Network {
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }
    pub fn batch(&self) -> usize {
        self.batch
    }
    pub fn table(&self) -> &ParamTable {
        &self.table
    }
    /// Every tensor the network allocated, in allocation order, with its size.
    pub fn plan(&self) -> &[PlanEntry] {
        &self.plan
    }
    /// The planned tensor named `name` (an activation such as `stages.0.conv_out` or a
    /// gradient such as `stages.0.d_conv_out`; see [`Network::plan`]), for inspection: read
    /// it back after a step to hold one intermediate against another framework.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.plan
            .iter()
            .position(|e| e.name == name)
            .map(|i| &self.planned[i])
    }
    /// Training steps taken (Adam's t after the last step).
    pub fn step(&self) -> u32 {
        self.step
    }
    /// The step's dispatches in recording order: forward, backward, Adam.
    pub fn dispatches(&self) -> impl Iterator<Item = &Dispatch> + Clone {
        self.forward
            .iter()
            .chain(&self.backward)
            .chain(std::iter::once(&self.update))
    }
    /// The training-mode forward's dispatches.
    pub fn forward_dispatches(&self) -> &[Dispatch] {
        &self.forward
    }
    /// The evaluation-mode forward's dispatches (the training-mode ones without batch norm).
    pub fn eval_dispatches(&self) -> &[Dispatch] {
        self.eval_forward()
    }
    pub fn params(&self) -> &Tensor {
        &self.params
    }
    pub fn grads(&self) -> &Tensor {
        &self.grads
    }
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }
    pub fn probs(&self) -> &Tensor {
        &self.probs
    }
    /// `[1]`: the batch's mean cross-entropy after the last forward.
    pub fn loss(&self) -> &Tensor {
        &self.loss
    }
    /// `[1]`, f32: how many rows' argmax equalled the label after the last forward.
    pub fn correct(&self) -> &Tensor {
        &self.correct
    }
    /// Adam's first and second moments, packed like the parameters.
    pub fn adam_state(&self) -> (&Tensor, &Tensor) {
        (&self.adam_m, &self.adam_v)
    }
    /// Stage `i`'s spatial attention map M_s `[N, 1, S/2, S/2]`, if the stage has the gate.
    pub fn spatial_map(&self, i: usize) -> Option<&Tensor> {
        self.stages.get(i)?.spatial.as_ref().map(|s| s.m_s())
    }
    /// Stage `i`'s channel gate M_c `[N, C]`, if the stage has the gate.
    pub fn channel_gate(&self, i: usize) -> Option<&Tensor> {
        self.stages.get(i)?.channel.as_ref().map(|c| c.gate())
    }

    /// Overwrites the parameters (packed by [`Network::table`]); queued until the next submit.
    pub fn write_params(&self, gpu: &Gpu, packed: &[f32]) -> Result<()> {
        gpu.write(&self.params, packed)
    }

    /// `[buffers_len]`: the running statistics, packed by the table's buffer layout; `None`
    /// without batch norm.
    pub fn buffers(&self) -> Option<&Tensor> {
        self.buffers.as_ref()
    }

    /// Batches the batch norms have tracked (PyTorch's `num_batches_tracked`): training-mode
    /// forwards since the running statistics started; 0 without batch norm.
    pub fn batches_tracked(&self) -> u64 {
        self.batches_tracked.load(Ordering::Relaxed)
    }

    /// Overwrites the running statistics (packed by the table's buffer layout, empty without
    /// batch norm) and the count of batches they have tracked; queued until the next submit.
    pub fn write_buffers(&self, gpu: &Gpu, packed: &[f32], batches_tracked: u64) -> Result<()> {
        match &self.buffers {
            Some(t) => gpu.write(t, packed)?,
            None if packed.is_empty() => {}
            None => {
                return Err(Error::InvalidConfig {
                    op: "network".into(),
                    message: format!(
                        "{} buffer values for a network without batch norm",
                        packed.len()
                    ),
                })
            }
        }
        self.batches_tracked
            .store(batches_tracked, Ordering::Relaxed);
        Ok(())
    }

    /// Loads a checkpoint's parameters and buffers (its config must be this network's).
    pub fn load(&self, gpu: &Gpu, checkpoint: &Checkpoint) -> Result<()> {
        if checkpoint.config != self.config {
            return Err(Error::InvalidConfig {
                op: "network".into(),
                message: "the checkpoint's model config differs from the network's".into(),
            });
        }
        self.write_params(gpu, &checkpoint.packed)?;
        self.write_buffers(gpu, &checkpoint.buffers, checkpoint.batches_tracked)
    }

    /// Restores Adam's moments and step count (for `train --resume`).
    pub fn write_adam_state(&mut self, gpu: &Gpu, m: &[f32], v: &[f32], step: u32) -> Result<()> {
        gpu.write(&self.adam_m, m)?;
        gpu.write(&self.adam_v, v)?;
        self.step = step;
        Ok(())
    }

    /// Changes the learning rate from the next step on.
    pub fn set_lr(&mut self, gpu: &Gpu, lr: f64) -> Result<()> {
        self.adam.set_lr(gpu, lr)
    }

    /// The learning rate the next step runs at.
    pub fn lr(&self) -> f64 {
        self.adam.config().lr
    }

    /// The device tensors a training step changes and a checkpoint with its optimizer state
    /// restores: parameters, Adam's moments and, with batch norm, the running statistics.
    /// Anything else a step comes to update must be listed here too, or a [`Snapshot`] would
    /// not restore it.
    fn state(&self) -> Vec<&Tensor> {
        [&self.params, &self.adam_m, &self.adam_v]
            .into_iter()
            .chain(self.buffers.as_ref())
            .collect()
    }

    /// A device-side copy of the training state as it is now (parameters, Adam's moments, the
    /// running statistics, the step counts): for keeping the best epoch's weights without reading them back. Allocates
    /// its buffers; call it before training, then [`Network::save_snapshot`] to overwrite.
    pub fn snapshot(&self, gpu: &Gpu) -> Result<Snapshot> {
        let tensors = self
            .state()
            .iter()
            .map(|t| gpu.zeros(&format!("snapshot.{}", t.name()), t.shape()))
            .collect::<Result<Vec<_>>>()?;
        let mut s = Snapshot {
            tensors,
            step: 0,
            batches_tracked: 0,
        };
        self.save_snapshot(gpu, &mut s)?;
        Ok(s)
    }

    /// Overwrites `snapshot` with the current state: buffer copies in one submission, queued
    /// behind the steps already submitted.
    pub fn save_snapshot(&self, gpu: &Gpu, snapshot: &mut Snapshot) -> Result<()> {
        let copies: Vec<(&Tensor, &Tensor, usize)> = self
            .state()
            .into_iter()
            .zip(&snapshot.tensors)
            .map(|(src, dst)| (src, dst, 0))
            .collect();
        gpu.submit_with_copies(std::iter::empty::<&Dispatch>(), &copies)?;
        snapshot.step = self.step;
        snapshot.batches_tracked = self.batches_tracked();
        Ok(())
    }

    /// Puts the state of `snapshot` back (parameters, moments, step count): the next step
    /// continues from there as if the steps since had not been taken.
    pub fn restore_snapshot(&mut self, gpu: &Gpu, snapshot: &Snapshot) -> Result<()> {
        let copies: Vec<(&Tensor, &Tensor, usize)> = snapshot
            .tensors
            .iter()
            .zip(self.state())
            .map(|(src, dst)| (src, dst, 0))
            .collect();
        gpu.submit_with_copies(std::iter::empty::<&Dispatch>(), &copies)?;
        self.step = snapshot.step;
        self.batches_tracked
            .store(snapshot.batches_tracked, Ordering::Relaxed);
        Ok(())
    }

    /// Uploads a batch: `images` `[N, C, S, S]` in network input scale, `labels` class indices.
    /// Queued; takes effect at the next submit.
    pub fn write_batch(&self, gpu: &Gpu, images: &[f32], labels: &[u32]) -> Result<()> {
        gpu.write(&self.input, images)?;
        self.xent.write_labels(gpu, &self.labels, labels)
    }

    /// One training step (forward, loss, backward, Adam) in one submission, on the batch last
    /// written. `dropout: false` runs the step with dropout as the identity (`debug-step`).
    pub fn train_step(&mut self, gpu: &Gpu, dropout: bool) -> Result<wgpu::SubmissionIndex> {
        let t = self.step + 1;
        for d in &self.dropouts {
            d.set_training(gpu, dropout);
            d.set_step(gpu, t);
        }
        self.adam.set_step(gpu, t)?;
        let slot = 2 * ((t as usize - 1) % HISTORY);
        let index = gpu.submit_with_copies(
            self.dispatches(),
            &[
                (&self.loss, &self.history, slot),
                (&self.correct, &self.history, slot + 1),
            ],
        )?;
        self.step = t;
        self.track_batch();
        Ok(index)
    }

    fn track_batch(&self) {
        if self.buffers.is_some() {
            self.batches_tracked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The forward that evaluation submits: with batch norm, the one on the running statistics.
    fn eval_forward(&self) -> &[Dispatch] {
        self.forward_eval.as_deref().unwrap_or(&self.forward)
    }

    /// `[HISTORY, 2]`: (loss, correct count) of step t in row (t - 1) % HISTORY.
    pub fn history(&self) -> &Tensor {
        &self.history
    }

    /// Evaluation forward on the batch last written, copying the probabilities into `dst`
    /// `[rows, K]` at row `row` in the same submission (so a whole test set is read back once).
    pub fn forward_eval_into(
        &self,
        gpu: &Gpu,
        dst: &Tensor,
        row: usize,
    ) -> Result<wgpu::SubmissionIndex> {
        for d in &self.dropouts {
            d.set_training(gpu, false);
        }
        gpu.submit_with_copies(
            self.eval_forward(),
            &[(&self.probs, dst, row * self.config.classes.len())],
        )
    }

    /// The forward pass and the loss only, in evaluation mode (dropout off, batch norm on the
    /// running statistics): evaluation and inference.
    pub fn forward_eval(&self, gpu: &Gpu) -> Result<wgpu::SubmissionIndex> {
        for d in &self.dropouts {
            d.set_training(gpu, false);
        }
        gpu.submit_with_copies(self.eval_forward(), &[])
    }

    /// The forward pass, loss and backward in training mode, without updating the parameters
    /// (gradient checks). Like any training-mode forward, it moves the batch norms' running
    /// statistics.
    pub fn forward_backward(&self, gpu: &Gpu, dropout: bool) -> Result<wgpu::SubmissionIndex> {
        for d in &self.dropouts {
            d.set_training(gpu, dropout);
            d.set_step(gpu, self.step + 1);
        }
        let index = gpu.submit_with_copies(self.forward.iter().chain(&self.backward), &[])?;
        self.track_batch();
        Ok(index)
    }
}
