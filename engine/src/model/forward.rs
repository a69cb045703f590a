//! The forward half of the network, built one way for both networks: the training
//! [`Network`](crate::model::Network) (its ops with their backward passes, dropout in the head)
//! and the [`InferenceNetwork`](crate::model::InferenceNetwork) (forward passes only, no
//! dropout: in evaluation it is the identity). Both record their evaluation forward from the
//! same [`Forward::record`], so the two give the same bits.

use crate::error::Result;
use crate::gpu::Gpu;
use crate::model::config::{Gate, ModelConfig, Norm};
use crate::model::params::ParamTable;
use crate::ops::activation::{Activation, ActivationKind};
use crate::ops::batchnorm2d::{BatchNorm2d, BatchNorm2dShape, BnAffine, BnRunning};
use crate::ops::cbam_channel::{CbamChannel, CbamChannelShape, ChannelMlp};
use crate::ops::cbam_spatial::{CbamSpatial, CbamSpatialShape};
use crate::ops::conv2d::{Conv2d, Conv2dShape};
use crate::ops::dropout::Dropout;
use crate::ops::global_avgpool::{GlobalAvgPool, GlobalAvgPoolShape};
use crate::ops::linear::{Linear, LinearShape};
use crate::ops::maxpool2d::{MaxPool2d, MaxPool2dShape};
use crate::ops::softmax_xent::{SoftmaxXent, SoftmaxXentShape};
use crate::ops::Passes;
use crate::pipeline::Dispatch;
use crate::tensor::Tensor;

/// One entry of the memory plan.
#[derive(Clone, Debug)]
pub struct PlanEntry {
    pub name: String,
    pub shape: Vec<usize>,
    pub bytes: u64,
}

/// Allocates tensors while recording the memory plan.
pub(crate) struct Planner<'a> {
    pub gpu: &'a Gpu,
    pub plan: Vec<PlanEntry>,
    /// The plan's tensors, in the plan's order.
    pub tensors: Vec<Tensor>,
}

impl Planner<'_> {
    pub fn alloc(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
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

/// An op with the tensor it writes.
pub(crate) struct Part<Op> {
    pub op: Op,
    pub out: Tensor,
}

/// One stage's ops and the activations they write: conv, optional batch norm, ELU, pool,
/// optional channel and spatial gates.
pub(crate) struct Stage {
    pub conv: Part<Conv2d>,
    pub bn: Option<Part<BatchNorm2d>>,
    pub elu: Part<Activation>,
    pub pool: Part<MaxPool2d>,
    pub channel: Option<Part<CbamChannel>>,
    pub spatial: Option<Part<CbamSpatial>>,
}

impl Stage {
    /// The ELU's input: the batch norm's output, or the conv's without one.
    pub fn act_in(&self) -> &Tensor {
        self.bn.as_ref().map_or(&self.conv.out, |b| &b.out)
    }
    /// The channel gate's input: the pool's output.
    pub fn gate_in(&self) -> &Tensor {
        &self.pool.out
    }
    /// The spatial gate's input: the channel gate's output, or the pool's without one.
    pub fn spatial_in(&self) -> &Tensor {
        self.channel.as_ref().map_or(&self.pool.out, |c| &c.out)
    }
    /// What the stage hands on: the last gate's output, or the pool's.
    pub fn output(&self) -> &Tensor {
        self.spatial
            .as_ref()
            .map(|s| &s.out)
            .unwrap_or_else(|| self.spatial_in())
    }
}

/// The head's ops and activations (dropout, a training-only op, belongs to the training
/// network).
pub(crate) struct Head {
    pub gap: Part<GlobalAvgPool>,
    pub fc1: Part<Linear>,
    pub elu: Part<Activation>,
    pub fc2: Part<Linear>,
    pub xent: SoftmaxXent,
    pub probs: Tensor,
    pub labels: Tensor,
    pub loss: Tensor,
    pub correct: Tensor,
}

/// The head's dropout layers and their outputs (training network only).
pub(crate) struct Dropouts {
    pub drop1: Part<Dropout>,
    pub drop2: Part<Dropout>,
}

impl Dropouts {
    pub fn ops(&self) -> [&Dropout; 2] {
        [&self.drop1.op, &self.drop2.op]
    }
}

/// The views of one stage's tensors in a packed buffer laid out by the table (parameters, or
/// their gradients), looked up by the table's names here and nowhere else.
pub(crate) struct StageViews {
    pub conv_weight: Tensor,
    pub conv_bias: Tensor,
    pub bn: Option<[Tensor; 2]>,
    /// fc1 weight, fc1 bias, fc2 weight, fc2 bias.
    pub channel: Option<[Tensor; 4]>,
    pub spatial: Option<[Tensor; 2]>,
}

impl StageViews {
    /// Stage `i`'s views into `packed`, each named `<prefix><parameter name>`.
    pub fn of(
        table: &ParamTable,
        config: &ModelConfig,
        packed: &Tensor,
        prefix: &str,
        i: usize,
    ) -> Result<StageViews> {
        let view = |name: &str| view(table, packed, prefix, &format!("stages.{i}.{name}"));
        Ok(StageViews {
            conv_weight: view("conv.weight")?,
            conv_bias: view("conv.bias")?,
            bn: match config.norm {
                Norm::Batch => Some([view("bn.weight")?, view("bn.bias")?]),
                Norm::None => None,
            },
            channel: match config.attention.has_channel() {
                true => Some([
                    view("cbam.channel.fc1.weight")?,
                    view("cbam.channel.fc1.bias")?,
                    view("cbam.channel.fc2.weight")?,
                    view("cbam.channel.fc2.bias")?,
                ]),
                false => None,
            },
            spatial: match config.attention.has_spatial() {
                true => Some([
                    view("cbam.spatial.conv.weight")?,
                    view("cbam.spatial.conv.bias")?,
                ]),
                false => None,
            },
        })
    }

    /// The channel gate's MLP tensors.
    pub fn mlp(t: &[Tensor; 4]) -> ChannelMlp<'_> {
        ChannelMlp {
            fc1_weight: &t[0],
            fc1_bias: &t[1],
            fc2_weight: &t[2],
            fc2_bias: &t[3],
        }
    }
}

/// The head's linear layers' views (weight, bias of fc1, then of fc2).
pub(crate) struct HeadViews {
    pub fc1: [Tensor; 2],
    pub fc2: [Tensor; 2],
}

impl HeadViews {
    pub fn of(table: &ParamTable, packed: &Tensor, prefix: &str) -> Result<HeadViews> {
        let view = |name: &str| view(table, packed, prefix, name);
        Ok(HeadViews {
            fc1: [view("head.fc1.weight")?, view("head.fc1.bias")?],
            fc2: [view("head.fc2.weight")?, view("head.fc2.bias")?],
        })
    }
}

fn view(table: &ParamTable, packed: &Tensor, prefix: &str, name: &str) -> Result<Tensor> {
    let e = table.get(name).expect("a parameter of the table");
    packed.view(&format!("{prefix}{name}"), e.offset, &e.shape)
}

/// The views of the running statistics of stage `i` (batch norm only).
pub(crate) fn running_views(table: &ParamTable, buffers: &Tensor, i: usize) -> Result<[Tensor; 2]> {
    let view = |name: String| {
        let e = table.buffer(&name).expect("a buffer of the table");
        buffers.view(&name, e.offset, &e.shape)
    };
    Ok([
        view(format!("stages.{i}.bn.running_mean"))?,
        view(format!("stages.{i}.bn.running_var"))?,
    ])
}

/// The forward ops and activations of one config at one batch size.
pub(crate) struct Forward {
    pub input: Tensor,
    pub stages: Vec<Stage>,
    pub head: Head,
}

impl Forward {
    /// Builds every forward op with `passes` and allocates every activation through `p`, in
    /// the plan's order: the input, each stage's, then the head's. `weighted`: the loss takes
    /// class weights.
    pub async fn new(
        p: &mut Planner<'_>,
        config: &ModelConfig,
        n: usize,
        passes: Passes,
        weighted: bool,
    ) -> Result<Forward> {
        let gpu = p.gpu;
        let training = passes == Passes::Training;
        let residual = config.gate == Gate::Residual;
        let size = config.image_size;
        let input = p.alloc("input", &[n, config.in_channels, size, size])?;
        let elu = ActivationKind::Elu { alpha: 1.0 };
        let mut stages = Vec::with_capacity(config.widths.len());
        let mut c_prev = config.in_channels;
        for (i, &w) in config.widths.iter().enumerate() {
            let s = config.stage_size(i);
            let full = [n, w, s, s];
            let half = [n, w, s / 2, s / 2];
            let name = |t: &str| format!("stages.{i}.{t}");
            let conv_shape = Conv2dShape {
                n,
                c_in: c_prev,
                c_out: w,
                h: s,
                w: s,
                k: 3,
                pad: 1,
            };
            let conv = Part {
                op: match training {
                    true => Conv2d::new(gpu, conv_shape, true).await?,
                    false => Conv2d::forward_only(gpu, conv_shape, true).await?,
                },
                out: p.alloc(&name("conv_out"), &full)?,
            };
            let bn = match config.norm {
                Norm::Batch => {
                    let shape = BatchNorm2dShape {
                        n,
                        c: w,
                        h: s,
                        w: s,
                    };
                    Some(Part {
                        op: match training {
                            true => BatchNorm2d::new(gpu, shape).await?,
                            false => BatchNorm2d::forward_only(gpu, shape).await?,
                        },
                        out: p.alloc(&name("bn_out"), &full)?,
                    })
                }
                Norm::None => None,
            };
            let elu = Part {
                op: match training {
                    true => Activation::new(gpu, elu, &full).await?,
                    false => Activation::forward_only(gpu, elu, &full).await?,
                },
                out: p.alloc(&name("elu_out"), &full)?,
            };
            let pool_shape = MaxPool2dShape {
                n,
                c: w,
                h: s,
                w: s,
            };
            let pool = Part {
                op: match training {
                    true => MaxPool2d::new(gpu, pool_shape).await?,
                    false => MaxPool2d::forward_only(gpu, pool_shape).await?,
                },
                out: p.alloc(&name("pool_out"), &half)?,
            };
            let (gn, gc, gh, gw) = (n, w, s / 2, s / 2);
            let channel = match config.attention.has_channel() {
                true => {
                    let shape = CbamChannelShape {
                        n: gn,
                        c: gc,
                        h: gh,
                        w: gw,
                    };
                    Some(Part {
                        op: match training {
                            true => CbamChannel::with_residual(gpu, shape, residual).await?,
                            false => CbamChannel::forward_only(gpu, shape, residual).await?,
                        },
                        out: p.alloc(&name("channel_out"), &half)?,
                    })
                }
                false => None,
            };
            let spatial = match config.attention.has_spatial() {
                true => {
                    let shape = CbamSpatialShape {
                        n: gn,
                        c: gc,
                        h: gh,
                        w: gw,
                    };
                    Some(Part {
                        op: match training {
                            true => CbamSpatial::with_residual(gpu, shape, residual).await?,
                            false => CbamSpatial::forward_only(gpu, shape, residual).await?,
                        },
                        out: p.alloc(&name("spatial_out"), &half)?,
                    })
                }
                false => None,
            };
            stages.push(Stage {
                conv,
                bn,
                elu,
                pool,
                channel,
                spatial,
            });
            c_prev = w;
        }

        let s_last = config.stage_size(config.widths.len() - 1) / 2;
        let (hid, k) = (config.hidden, config.classes.len());
        let gap_shape = GlobalAvgPoolShape {
            n,
            c: c_prev,
            h: s_last,
            w: s_last,
        };
        let fc1_shape = LinearShape {
            n,
            in_features: c_prev,
            out_features: hid,
        };
        let fc2_shape = LinearShape {
            n,
            in_features: hid,
            out_features: k,
        };
        let xent_shape = SoftmaxXentShape { n, k };
        let head = Head {
            gap: Part {
                op: match training {
                    true => GlobalAvgPool::new(gpu, gap_shape).await?,
                    false => GlobalAvgPool::forward_only(gpu, gap_shape).await?,
                },
                out: p.alloc("head.pooled", &[n, c_prev])?,
            },
            fc1: Part {
                op: match training {
                    true => Linear::new(gpu, fc1_shape, true).await?,
                    false => Linear::forward_only(gpu, fc1_shape, true).await?,
                },
                out: p.alloc("head.fc1_out", &[n, hid])?,
            },
            elu: Part {
                op: match training {
                    true => Activation::new(gpu, elu, &[n, hid]).await?,
                    false => Activation::forward_only(gpu, elu, &[n, hid]).await?,
                },
                out: p.alloc("head.elu_out", &[n, hid])?,
            },
            fc2: Part {
                op: match training {
                    true => Linear::new(gpu, fc2_shape, true).await?,
                    false => Linear::forward_only(gpu, fc2_shape, true).await?,
                },
                out: p.alloc("logits", &[n, k])?,
            },
            xent: match training {
                true => SoftmaxXent::new(gpu, xent_shape, weighted).await?,
                false => SoftmaxXent::forward_only(gpu, xent_shape).await?,
            },
            probs: p.alloc("probs", &[n, k])?,
            labels: p.alloc("labels", &[n])?,
            loss: p.alloc("loss", &[1])?,
            correct: p.alloc("correct", &[1])?,
        };
        Ok(Forward {
            input,
            stages,
            head,
        })
    }

    /// The forward's dispatches in order, reading `params` (and, with batch norm, the running
    /// statistics in `buffers`): batch norm on the batch's statistics (moving the running ones)
    /// when `training`, else on the running ones; with `dropout`, the head's two dropout layers
    /// between the pool and fc1 and between the ELU and fc2 (their mode is their uniform's, set
    /// per submission).
    pub fn record(
        &self,
        gpu: &Gpu,
        views: &Views,
        training: bool,
        dropout: Option<&Dropouts>,
        class_weights: Option<&Tensor>,
    ) -> Result<Vec<Dispatch>> {
        let mut forward = Vec::new();
        for (i, (st, v)) in self.stages.iter().zip(&views.stages).enumerate() {
            let x = match i {
                0 => &self.input,
                _ => self.stages[i - 1].output(),
            };
            forward.extend(st.conv.op.forward(
                gpu,
                x,
                &v.conv_weight,
                Some(&v.conv_bias),
                &st.conv.out,
            )?);
            if let (Some(bn), Some([g, b]), Some([rm, rv])) = (&st.bn, &v.bn, &views.running[i]) {
                let affine = BnAffine { weight: g, bias: b };
                let running = BnRunning { mean: rm, var: rv };
                forward.extend(match training {
                    true => bn
                        .op
                        .forward_train(gpu, &st.conv.out, &affine, &running, &bn.out)?,
                    false => bn
                        .op
                        .forward_eval(gpu, &st.conv.out, &affine, &running, &bn.out)?,
                });
            }
            forward.push(st.elu.op.forward(gpu, st.act_in(), &st.elu.out)?);
            forward.push(st.pool.op.forward(gpu, &st.elu.out, &st.pool.out)?);
            if let (Some(ch), Some(t)) = (&st.channel, &v.channel) {
                forward.extend(
                    ch.op
                        .forward(gpu, st.gate_in(), &StageViews::mlp(t), &ch.out)?,
                );
            }
            if let (Some(sp), Some([w, b])) = (&st.spatial, &v.spatial) {
                forward.extend(sp.op.forward(gpu, st.spatial_in(), w, b, &sp.out)?);
            }
        }
        let h = &self.head;
        let last = self.stages.last().expect("at least one stage").output();
        forward.push(h.gap.op.forward(gpu, last, &h.gap.out)?);
        let fc1_in = match dropout {
            Some(d) => {
                forward.push(d.drop1.op.forward(gpu, &h.gap.out, &d.drop1.out)?);
                &d.drop1.out
            }
            None => &h.gap.out,
        };
        let [w1, b1] = &views.head.fc1;
        forward.push(h.fc1.op.forward(gpu, fc1_in, w1, Some(b1), &h.fc1.out)?);
        forward.push(h.elu.op.forward(gpu, &h.fc1.out, &h.elu.out)?);
        let fc2_in = match dropout {
            Some(d) => {
                forward.push(d.drop2.op.forward(gpu, &h.elu.out, &d.drop2.out)?);
                &d.drop2.out
            }
            None => &h.elu.out,
        };
        let [w2, b2] = &views.head.fc2;
        forward.push(h.fc2.op.forward(gpu, fc2_in, w2, Some(b2), &h.fc2.out)?);
        forward.push(h.xent.forward(
            gpu,
            &h.fc2.out,
            &h.labels,
            class_weights,
            &h.probs,
            &h.loss,
            &h.correct,
        )?);
        Ok(forward)
    }

    /// Stage `i`'s spatial attention map M_s `[N, 1, S/2, S/2]`, if the stage has the gate.
    pub fn spatial_map(&self, i: usize) -> Option<&Tensor> {
        self.stages.get(i)?.spatial.as_ref().map(|s| s.op.m_s())
    }

    /// Stage `i`'s channel gate M_c `[N, C]`, if the stage has the gate.
    pub fn channel_gate(&self, i: usize) -> Option<&Tensor> {
        self.stages.get(i)?.channel.as_ref().map(|c| c.op.gate())
    }
}

/// Every view the forward reads: the parameters of each stage and of the head, and each
/// stage's running statistics (batch norm only).
pub(crate) struct Views {
    pub stages: Vec<StageViews>,
    pub running: Vec<Option<[Tensor; 2]>>,
    pub head: HeadViews,
}

impl Views {
    /// The views into `packed` (named `<prefix><name>`) and, for the running statistics, into
    /// `buffers`.
    pub fn of(
        table: &ParamTable,
        config: &ModelConfig,
        packed: &Tensor,
        prefix: &str,
        buffers: Option<&Tensor>,
    ) -> Result<Views> {
        let stages = (0..config.widths.len())
            .map(|i| StageViews::of(table, config, packed, prefix, i))
            .collect::<Result<Vec<_>>>()?;
        let running = (0..config.widths.len())
            .map(|i| buffers.map(|b| running_views(table, b, i)).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(Views {
            stages,
            running,
            head: HeadViews::of(table, packed, prefix)?,
        })
    }
}
