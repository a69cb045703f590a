//! The network for inference: the forward passes of the training network and nothing else. Its
//! memory is the parameters, the running statistics and the activations of one batch: no
//! gradients, no Adam state, no history, no backward pipeline, no dropout (in evaluation it is
//! the identity). It records its forward from the same code as the training network's
//! evaluation forward, so on the same checkpoint and images the two give the same bits (held
//! by `tests/inference.rs`). `predict`, `eval`, `explain`, the protocols' test sets and the
//! browser run on it.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;
use crate::model::forward::{Forward, PlanEntry, Planner, Views};
use crate::model::network::check_batch;
use crate::model::params::ParamTable;
use crate::ops::Passes;
use crate::pipeline::Dispatch;
use crate::tensor::Tensor;

/// What evaluating a network needs of it: the [`InferenceNetwork`] has it, and so has the
/// training [`Network`](crate::model::Network), whose validation runs on itself between
/// epochs.
pub trait Evaluate {
    fn config(&self) -> &ModelConfig;
    fn batch(&self) -> usize;
    /// Uploads a batch: `images` `[N, C, S, S]` in network input scale, `labels` class indices
    /// (the loss's; any valid class serves where they are unknown). Queued.
    fn write_batch(&self, gpu: &Gpu, images: &[f32], labels: &[u32]) -> Result<()>;
    /// The evaluation forward on the batch last written.
    fn forward_eval(&self, gpu: &Gpu) -> Result<wgpu::SubmissionIndex>;
    /// [`Evaluate::forward_eval`], copying the probabilities into `dst` `[rows, K]` at row `row`
    /// in the same submission (so a whole test set is read back once).
    fn forward_eval_into(
        &self,
        gpu: &Gpu,
        dst: &Tensor,
        row: usize,
    ) -> Result<wgpu::SubmissionIndex>;
    /// `[N, K]` softmax outputs of the last forward.
    fn probs(&self) -> &Tensor;
    /// `[N, K]` logits of the last forward.
    fn logits(&self) -> &Tensor;
    /// Stage `i`'s spatial attention map M_s `[N, 1, S/2, S/2]`, if the stage has the gate.
    fn spatial_map(&self, i: usize) -> Option<&Tensor>;
    /// Stage `i`'s channel gate M_c `[N, C]`, if the stage has the gate.
    fn channel_gate(&self, i: usize) -> Option<&Tensor>;
}

/// The network's forward for one config and one batch size.
pub struct InferenceNetwork {
    config: ModelConfig,
    batch: usize,
    table: ParamTable,
    params: Tensor,
    buffers: Option<Tensor>,
    net: Forward,
    plan: Vec<PlanEntry>,
    forward: Vec<Dispatch>,
}

impl InferenceNetwork {
    /// Builds every forward op, allocates the parameters, running statistics and activations
    /// (each checked against the device's limits) and records the forward.
    pub async fn new(gpu: &Gpu, config: &ModelConfig, batch: usize) -> Result<InferenceNetwork> {
        config.validate()?;
        check_batch(batch)?;
        let table = ParamTable::new(config);
        let mut p = Planner {
            gpu,
            plan: Vec::new(),
            tensors: Vec::new(),
        };
        let params = p.alloc("params", &[table.packed_len()])?;
        let buffers = match table.buffers_len() {
            0 => None,
            len => {
                let t = p.alloc("buffers", &[len])?;
                gpu.write(&t, &table.init_buffers())?;
                Some(t)
            }
        };
        let net = Forward::new(&mut p, config, batch, Passes::Inference, false).await?;
        let views = Views::of(&table, config, &params, "", buffers.as_ref())?;
        let forward = net.record(gpu, &views, false, None, None)?;
        Ok(InferenceNetwork {
            config: config.clone(),
            batch,
            table,
            params,
            buffers,
            net,
            plan: p.plan,
            forward,
        })
    }

    /// [`InferenceNetwork::new`] with a checkpoint's parameters and running statistics loaded.
    pub async fn from_checkpoint(
        gpu: &Gpu,
        checkpoint: &Checkpoint,
        batch: usize,
    ) -> Result<InferenceNetwork> {
        let net = InferenceNetwork::new(gpu, &checkpoint.config, batch).await?;
        net.load(gpu, checkpoint)?;
        Ok(net)
    }

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
    /// The forward's dispatches, in order.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.forward
    }
    pub fn params(&self) -> &Tensor {
        &self.params
    }
    /// The running statistics (batch norm only).
    pub fn buffers(&self) -> Option<&Tensor> {
        self.buffers.as_ref()
    }

    /// Overwrites the parameters (packed by [`InferenceNetwork::table`]); queued.
    pub fn write_params(&self, gpu: &Gpu, packed: &[f32]) -> Result<()> {
        gpu.write(&self.params, packed)
    }

    /// Overwrites the running statistics (packed by the table's buffer layout, empty without
    /// batch norm); queued.
    pub fn write_buffers(&self, gpu: &Gpu, packed: &[f32]) -> Result<()> {
        match &self.buffers {
            Some(t) => gpu.write(t, packed),
            None if packed.is_empty() => Ok(()),
            None => Err(Error::InvalidConfig {
                op: "network".into(),
                message: format!(
                    "{} buffer values for a network without batch norm",
                    packed.len()
                ),
            }),
        }
    }

    /// Loads a checkpoint's parameters and running statistics (its config must be this
    /// network's).
    pub fn load(&self, gpu: &Gpu, checkpoint: &Checkpoint) -> Result<()> {
        if checkpoint.config != self.config {
            return Err(Error::InvalidConfig {
                op: "network".into(),
                message: "the checkpoint's model config differs from the network's".into(),
            });
        }
        self.write_params(gpu, &checkpoint.packed)?;
        self.write_buffers(gpu, &checkpoint.buffers)
    }
}

impl Evaluate for InferenceNetwork {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn batch(&self) -> usize {
        self.batch
    }
    fn write_batch(&self, gpu: &Gpu, images: &[f32], labels: &[u32]) -> Result<()> {
        let h = &self.net.head;
        gpu.write(&self.net.input, images)?;
        h.xent.write_labels(gpu, &h.labels, labels)
    }
    fn forward_eval(&self, gpu: &Gpu) -> Result<wgpu::SubmissionIndex> {
        gpu.submit_with_copies(&self.forward, &[])
    }
    fn forward_eval_into(
        &self,
        gpu: &Gpu,
        dst: &Tensor,
        row: usize,
    ) -> Result<wgpu::SubmissionIndex> {
        gpu.submit_with_copies(
            &self.forward,
            &[(&self.net.head.probs, dst, row * self.config.classes.len())],
        )
    }
    fn probs(&self) -> &Tensor {
        &self.net.head.probs
    }
    fn logits(&self) -> &Tensor {
        &self.net.head.fc2.out
    }
    fn spatial_map(&self, i: usize) -> Option<&Tensor> {
        self.net.spatial_map(i)
    }
    fn channel_gate(&self, i: usize) -> Option<&Tensor> {
        self.net.channel_gate(i)
    }
}
