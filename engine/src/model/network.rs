//! The network on the GPU: every op built once for one batch size, every activation and
//! gradient allocated once (the memory plan), and the whole training step (forward, loss,
//! backward, Adam) as one ordered list of dispatches recorded into a single submission.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{ModelConfig, Norm};
pub use crate::model::forward::PlanEntry;
use crate::model::forward::{Dropouts, Forward, Part, Planner, StageViews, Views};
use crate::model::inference::Evaluate;
use crate::model::params::ParamTable;
use crate::ops::adam::{Adam, AdamConfig};
use crate::ops::batchnorm2d::BnAffine;
use crate::ops::dropout::Dropout;
use crate::ops::Passes;
use crate::pipeline::Dispatch;
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

/// The gradients of one stage's activations; each optional one is there exactly when the
/// stage's forward has the op that writes the activation.
struct StageGrads {
    d_conv_out: Tensor,
    d_bn_out: Option<Tensor>,
    d_elu_out: Tensor,
    d_pool_out: Tensor,
    d_channel_out: Option<Tensor>,
    d_spatial_out: Option<Tensor>,
}

impl StageGrads {
    /// The gradient at the ELU's input.
    fn d_act_in(&self) -> &Tensor {
        self.d_bn_out.as_ref().unwrap_or(&self.d_conv_out)
    }
    /// The gradient at the spatial gate's input.
    fn d_spatial_in(&self) -> &Tensor {
        self.d_channel_out.as_ref().unwrap_or(&self.d_pool_out)
    }
    /// The gradient at the stage's output.
    fn d_output(&self) -> &Tensor {
        self.d_spatial_out
            .as_ref()
            .unwrap_or_else(|| self.d_spatial_in())
    }
}

/// The head's activation gradients.
struct HeadGrads {
    d_logits: Tensor,
    d_drop2_out: Tensor,
    d_elu_out: Tensor,
    d_fc1_out: Tensor,
    d_drop1_out: Tensor,
    d_pooled: Tensor,
}

/// Largest batch [`Network::new`] builds: beyond it the per-op shape uniforms (u32) and any
/// device's memory are long exceeded.
pub const MAX_BATCH: usize = 1 << 16;

/// Steps of (loss, correct) kept on the device between readbacks.
pub const HISTORY: usize = 64;

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
    /// The forward's ops and activations, as the inference network has them.
    net: Forward,
    dropouts: Dropouts,
    /// `[HISTORY, 2]`: (loss, correct) of the last HISTORY steps, slot (t - 1) % HISTORY.
    history: Tensor,
    plan: Vec<PlanEntry>,
    /// The plan's tensors, in the plan's order (for [`Network::tensor`]).
    planned: Vec<Tensor>,
    adam: Adam,
    /// Kept for their buffers, which the recorded dispatches bind.
    _grads: (Vec<StageGrads>, HeadGrads),
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

/// Checks a batch size against [`MAX_BATCH`].
pub(crate) fn check_batch(batch: usize) -> Result<()> {
    if batch == 0 || batch > MAX_BATCH {
        return Err(Error::InvalidConfig {
            op: "network".into(),
            message: format!("batch size {batch} is outside 1..={MAX_BATCH}"),
        });
    }
    Ok(())
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
        check_batch(batch)?;
        let n = batch;
        let table = ParamTable::new(config);
        let mut p = Planner {
            gpu,
            plan: Vec::new(),
            tensors: Vec::new(),
        };
        let packed = table.packed_len();
        let params = p.alloc("params", &[packed])?;
        let buffers = match table.buffers_len() {
            0 => None,
            len => {
                let t = p.alloc("buffers", &[len])?;
                gpu.write(&t, &table.init_buffers())?;
                Some(t)
            }
        };
        let k = config.classes.len();
        let class_weights = match &options.class_weights {
            Some(w) if w.len() != k || w.iter().any(|v| !v.is_finite() || *v < 0.0) => {
                return Err(Error::InvalidConfig {
                    op: "network".into(),
                    message: format!(
                        "class weights must be {k} finite non-negative numbers, got {w:?}"
                    ),
                })
            }
            Some(_) => Some(()),
            None => None,
        };
        let net =
            Forward::new(&mut p, config, n, Passes::Training, class_weights.is_some()).await?;
        let grads = p.alloc("grads", &[packed])?;
        let adam_m = p.alloc("adam.m", &[packed])?;
        let adam_v = p.alloc("adam.v", &[packed])?;
        let (c_last, hid) = (*config.widths.last().expect("a stage"), config.hidden);
        let dropouts = Dropouts {
            drop1: Part {
                op: Dropout::new(
                    gpu,
                    &[n, c_last],
                    config.dropout,
                    options.seed.wrapping_mul(2),
                )
                .await?,
                out: p.alloc("head.drop1_out", &[n, c_last])?,
            },
            drop2: Part {
                op: Dropout::new(
                    gpu,
                    &[n, hid],
                    config.dropout,
                    options.seed.wrapping_mul(2).wrapping_add(1),
                )
                .await?,
                out: p.alloc("head.drop2_out", &[n, hid])?,
            },
        };
        let history = p.alloc("history", &[HISTORY, 2])?;
        let class_weights = match (&class_weights, &options.class_weights) {
            (Some(()), Some(w)) => {
                let t = p.alloc("class_weights", &[k])?;
                gpu.write(&t, w)?;
                Some(t)
            }
            _ => None,
        };
        let mut stage_grads = Vec::with_capacity(config.widths.len());
        for (i, st) in net.stages.iter().enumerate() {
            let mut like =
                |t: &Tensor, name: &str| p.alloc(&format!("stages.{i}.{name}"), t.shape());
            stage_grads.push(StageGrads {
                d_conv_out: like(&st.conv.out, "d_conv_out")?,
                d_bn_out: st
                    .bn
                    .as_ref()
                    .map(|b| like(&b.out, "d_bn_out"))
                    .transpose()?,
                d_elu_out: like(&st.elu.out, "d_elu_out")?,
                d_pool_out: like(&st.pool.out, "d_pool_out")?,
                d_channel_out: st
                    .channel
                    .as_ref()
                    .map(|c| like(&c.out, "d_channel_out"))
                    .transpose()?,
                d_spatial_out: st
                    .spatial
                    .as_ref()
                    .map(|s| like(&s.out, "d_spatial_out"))
                    .transpose()?,
            });
        }
        let head_grads = HeadGrads {
            d_logits: p.alloc("head.d_logits", &[n, k])?,
            d_drop2_out: p.alloc("head.d_drop2_out", &[n, hid])?,
            d_elu_out: p.alloc("head.d_elu_out", &[n, hid])?,
            d_fc1_out: p.alloc("head.d_fc1_out", &[n, hid])?,
            d_drop1_out: p.alloc("head.d_drop1_out", &[n, c_last])?,
            d_pooled: p.alloc("head.d_pooled", &[n, c_last])?,
        };

        let views = Views::of(&table, config, &params, "", buffers.as_ref())?;
        let gviews = Views::of(&table, config, &grads, "grad.", None)?;
        let cw = class_weights.as_ref();
        let forward = net.record(gpu, &views, true, Some(&dropouts), cw)?;
        let forward_eval = match config.norm {
            Norm::Batch => Some(net.record(gpu, &views, false, Some(&dropouts), cw)?),
            Norm::None => None,
        };
        let backward = record_backward(
            gpu,
            &net,
            &dropouts,
            (&stage_grads, &head_grads),
            (&views, &gviews),
            cw,
        )?;
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
            net,
            dropouts,
            history,
            plan: p.plan,
            planned: p.tensors,
            adam,
            _grads: (stage_grads, head_grads),
            _class_weights: class_weights,
            forward,
            forward_eval,
            backward,
            update,
            step: 0,
        })
    }
}

/// The backward, in reverse. Every op overwrites its gradients, so nothing is zeroed per step.
fn record_backward(
    gpu: &Gpu,
    net: &Forward,
    dropouts: &Dropouts,
    (stage_grads, g): (&[StageGrads], &HeadGrads),
    (views, gviews): (&Views, &Views),
    class_weights: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let h = &net.head;
    let d = dropouts;
    let [fc2_w, _] = &views.head.fc2;
    let [fc2_dw, fc2_db] = &gviews.head.fc2;
    let [fc1_w, _] = &views.head.fc1;
    let [fc1_dw, fc1_db] = &gviews.head.fc1;
    let last = stage_grads.last().expect("a stage").d_output();
    let mut backward = vec![
        h.xent
            .backward(gpu, &h.probs, &h.labels, class_weights, &g.d_logits)?,
        h.fc2
            .op
            .backward_input(gpu, &g.d_logits, fc2_w, &g.d_drop2_out)?,
        h.fc2
            .op
            .backward_weight(gpu, &g.d_logits, &d.drop2.out, fc2_dw)?,
        h.fc2.op.backward_bias(gpu, &g.d_logits, fc2_db)?,
        d.drop2.op.backward(gpu, &g.d_drop2_out, &g.d_elu_out)?,
        h.elu
            .op
            .backward(gpu, &h.fc1.out, &g.d_elu_out, &g.d_fc1_out)?,
        h.fc1
            .op
            .backward_input(gpu, &g.d_fc1_out, fc1_w, &g.d_drop1_out)?,
        h.fc1
            .op
            .backward_weight(gpu, &g.d_fc1_out, &d.drop1.out, fc1_dw)?,
        h.fc1.op.backward_bias(gpu, &g.d_fc1_out, fc1_db)?,
        d.drop1.op.backward(gpu, &g.d_drop1_out, &g.d_pooled)?,
        h.gap.op.backward(gpu, &g.d_pooled, last)?,
    ];
    for i in (0..net.stages.len()).rev() {
        let (st, sg) = (&net.stages[i], &stage_grads[i]);
        let (v, gv) = (&views.stages[i], &gviews.stages[i]);
        let x = match i {
            0 => &net.input,
            _ => net.stages[i - 1].output(),
        };
        if let (Some(sp), Some(d_out), Some([w, _]), Some([dw, db])) =
            (&st.spatial, &sg.d_spatial_out, &v.spatial, &gv.spatial)
        {
            backward.extend(sp.op.backward(
                gpu,
                st.spatial_in(),
                d_out,
                w,
                sg.d_spatial_in(),
                dw,
                db,
            )?);
        }
        if let (Some(ch), Some(d_out), Some(t), Some(dt)) =
            (&st.channel, &sg.d_channel_out, &v.channel, &gv.channel)
        {
            backward.extend(ch.op.backward(
                gpu,
                &st.pool.out,
                &StageViews::mlp(t),
                d_out,
                &sg.d_pool_out,
                &StageViews::mlp(dt),
            )?);
        }
        backward.push(
            st.pool
                .op
                .backward(gpu, &st.elu.out, &sg.d_pool_out, &sg.d_elu_out)?,
        );
        backward.push(
            st.elu
                .op
                .backward(gpu, st.act_in(), &sg.d_elu_out, sg.d_act_in())?,
        );
        if let (Some(bn), Some(d_out), Some([gamma, _]), Some([dg, db])) =
            (&st.bn, &sg.d_bn_out, &v.bn, &gv.bn)
        {
            backward.extend(bn.op.backward(
                gpu,
                &st.conv.out,
                gamma,
                d_out,
                &sg.d_conv_out,
                &BnAffine {
                    weight: dg,
                    bias: db,
                },
            )?);
        }
        backward.extend(
            st.conv
                .op
                .backward_weight(gpu, &sg.d_conv_out, x, &gv.conv_weight)?,
        );
        backward.extend(
            st.conv
                .op
                .backward_bias(gpu, &sg.d_conv_out, &gv.conv_bias)?,
        );
        // The image's own gradient is never needed.
        if i > 0 {
            backward.extend(st.conv.op.backward_input(
                gpu,
                &sg.d_conv_out,
                &v.conv_weight,
                stage_grads[i - 1].d_output(),
            )?);
        }
    }
    Ok(backward)
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
        &self.net.head.fc2.out
    }
    pub fn probs(&self) -> &Tensor {
        &self.net.head.probs
    }
    /// `[1]`: the batch's mean cross-entropy after the last forward.
    pub fn loss(&self) -> &Tensor {
        &self.net.head.loss
    }
    /// `[1]`, f32: how many rows' argmax equalled the label after the last forward.
    pub fn correct(&self) -> &Tensor {
        &self.net.head.correct
    }
    /// Adam's first and second moments, packed like the parameters.
    pub fn adam_state(&self) -> (&Tensor, &Tensor) {
        (&self.adam_m, &self.adam_v)
    }
    /// Stage `i`'s spatial attention map M_s `[N, 1, S/2, S/2]`, if the stage has the gate.
    pub fn spatial_map(&self, i: usize) -> Option<&Tensor> {
        self.net.spatial_map(i)
    }
    /// Stage `i`'s channel gate M_c `[N, C]`, if the stage has the gate.
    pub fn channel_gate(&self, i: usize) -> Option<&Tensor> {
        self.net.channel_gate(i)
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

    /// The parameters and running statistics (with their count) as they are now, read back
    /// from the device into a checkpoint (native only: it waits for the device).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn checkpoint(&self, gpu: &Gpu) -> Result<Checkpoint> {
        Ok(Checkpoint {
            config: self.config.clone(),
            packed: gpu.read_blocking(&self.params)?,
            buffers: match &self.buffers {
                Some(t) => gpu.read_blocking(t)?,
                None => Vec::new(),
            },
            batches_tracked: self.batches_tracked(),
        })
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
        let h = &self.net.head;
        gpu.write(&self.net.input, images)?;
        h.xent.write_labels(gpu, &h.labels, labels)
    }

    /// One training step (forward, loss, backward, Adam) in one submission, on the batch last
    /// written. `dropout: false` runs the step with dropout as the identity (`debug-step`).
    pub fn train_step(&mut self, gpu: &Gpu, dropout: bool) -> Result<wgpu::SubmissionIndex> {
        let t = self.step + 1;
        for d in self.dropouts.ops() {
            d.set_training(gpu, dropout);
            d.set_step(gpu, t);
        }
        self.adam.set_step(gpu, t)?;
        let slot = 2 * ((t as usize - 1) % HISTORY);
        let index = gpu.submit_with_copies(
            self.dispatches(),
            &[
                (&self.net.head.loss, &self.history, slot),
                (&self.net.head.correct, &self.history, slot + 1),
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
        for d in self.dropouts.ops() {
            d.set_training(gpu, false);
        }
        gpu.submit_with_copies(
            self.eval_forward(),
            &[(&self.net.head.probs, dst, row * self.config.classes.len())],
        )
    }

    /// The forward pass and the loss only, in evaluation mode (dropout off, batch norm on the
    /// running statistics): evaluation and inference.
    pub fn forward_eval(&self, gpu: &Gpu) -> Result<wgpu::SubmissionIndex> {
        for d in self.dropouts.ops() {
            d.set_training(gpu, false);
        }
        gpu.submit_with_copies(self.eval_forward(), &[])
    }

    /// The forward pass, loss and backward in training mode, without updating the parameters
    /// (gradient checks). Like any training-mode forward, it moves the batch norms' running
    /// statistics.
    pub fn forward_backward(&self, gpu: &Gpu, dropout: bool) -> Result<wgpu::SubmissionIndex> {
        for d in self.dropouts.ops() {
            d.set_training(gpu, dropout);
            d.set_step(gpu, self.step + 1);
        }
        let index = gpu.submit_with_copies(self.forward.iter().chain(&self.backward), &[])?;
        self.track_batch();
        Ok(index)
    }
}

impl Evaluate for Network {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn write_batch(&self, gpu: &Gpu, images: &[f32], labels: &[u32]) -> Result<()> {
        Network::write_batch(self, gpu, images, labels)
    }
    fn forward_eval(&self, gpu: &Gpu) -> Result<wgpu::SubmissionIndex> {
        Network::forward_eval(self, gpu)
    }
    fn forward_eval_into(
        &self,
        gpu: &Gpu,
        dst: &Tensor,
        row: usize,
    ) -> Result<wgpu::SubmissionIndex> {
        Network::forward_eval_into(self, gpu, dst, row)
    }
    fn probs(&self) -> &Tensor {
        Network::probs(self)
    }
    fn logits(&self) -> &Tensor {
        Network::logits(self)
    }
    fn spatial_map(&self, i: usize) -> Option<&Tensor> {
        Network::spatial_map(self, i)
    }
    fn channel_gate(&self, i: usize) -> Option<&Tensor> {
        Network::channel_gate(self, i)
    }
}
