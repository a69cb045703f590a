//! The inference network as an ONNX graph (opset 17), for other runtimes: onnxruntime,
//! TensorRT, OpenCV's DNN module, ONNX.js. Built from standard operators only, one node per
//! step of `../shared/spec/network.md` in evaluation mode: Conv, BatchNormalization (running
//! statistics) where the config has batch norm, Elu, MaxPool, the CBAM gates from ReduceMean,
//! ReduceMax, Gemm, Relu, Add, Sigmoid, Unsqueeze, Mul, Concat and Conv, then
//! GlobalAveragePool, Flatten, Gemm, Elu, Gemm and Softmax. Dropout is the identity at
//! inference and has no node.
//!
//! Every parameter is an initializer under its checkpoint name (`stages.0.conv.weight`...), so
//! the file and the checkpoint can be compared tensor by tensor.

use crate::error::{Error, Result};
use crate::model::config::{Gate, ModelConfig, Norm};
use crate::model::params::ParamTable;
use crate::onnx_proto::{self as proto, Attr, Dim, Node};

/// The operator set the graph is written for. 17 (ONNX 1.12, 2022) is read by every current
/// runtime; in it the Reduce* operators still take their axes as attributes.
pub const OPSET: i64 = 17;
/// The IR version that goes with opset 17.
pub const IR_VERSION: i64 = 8;
/// The graph's input: `[N, in_channels, image_size, image_size]` f32, pixel / 255.
pub const INPUT: &str = "input";
/// The graph's outputs: `[N, classes]` f32 each.
pub const LOGITS: &str = "logits";
pub const PROBABILITIES: &str = "probabilities";
/// The name of the free batch dimension.
pub const BATCH: &str = "N";
/// `metadata_props` key holding the checkpoint's model config JSON (as in its header).
pub const CONFIG_KEY: &str = "fer_cbam.config";

/// How the input is made from an image, in words (the graph's doc string and the docs say it).
pub fn input_doc(config: &ModelConfig) -> String {
    let s = config.image_size;
    let planes = if config.in_channels == 1 {
        "one plane".to_string()
    } else {
        format!(
            "the gray plane replicated to all {} channels",
            config.in_channels
        )
    };
    format!(
        "f32 [{BATCH}, {c}, {s}, {s}], NCHW: each image converted to 8-bit gray, resized to \
         {s}x{s}, every pixel p in 0..255 mapped to p / 255 (0.0 black, 1.0 white), {planes}; \
         an occluded pixel is 0.0",
        c = config.in_channels
    )
}

/// The graph's doc string: what goes in, what comes out, and where it came from.
pub fn doc(config: &ModelConfig, source: &str) -> String {
    let stages: Vec<String> = config.widths.iter().map(|w| w.to_string()).collect();
    format!(
        "fer-cbam: the CBAM attention CNN for facial expression recognition under occlusion, \
         inference graph (dropout off{bn}). From {source}. \
         Input `{INPUT}`: {input}. \
         Outputs `{LOGITS}` and `{PROBABILITIES}` (softmax of the logits): f32 [{BATCH}, {k}], \
         classes in this order: {classes}. \
         Network: {n} stages of widths {stages}, attention {att}, gate {gate}, norm {norm}; \
         the model config is in metadata_props[\"{CONFIG_KEY}\"].",
        bn = if config.norm == Norm::Batch {
            ", batch norm with its running statistics"
        } else {
            ""
        },
        input = input_doc(config),
        k = config.classes.len(),
        classes = config.classes.join(", "),
        n = config.widths.len(),
        stages = stages.join("-"),
        att = serde_json::to_value(config.attention)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default(),
        gate = config.gate,
        norm = config.norm,
    )
}

/// Collects nodes and the initializers they read.
struct Graph<'a> {
    table: &'a ParamTable,
    packed: &'a [f32],
    buffers: &'a [f32],
    nodes: Vec<Node>,
    initializers: Vec<proto::Encoder>,
}

impl Graph<'_> {
    /// Adds a node; its output is named after the node.
    fn node(
        &mut self,
        op: &'static str,
        name: String,
        inputs: &[&str],
        attrs: Vec<(&'static str, Attr)>,
    ) -> String {
        self.nodes.push(Node {
            op,
            name: name.clone(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            outputs: vec![name.clone()],
            attrs,
        });
        name
    }

    /// Adds the parameter or buffer `name` as an initializer and returns its name.
    fn param(&mut self, name: &str) -> Result<String> {
        let (e, data) = match (self.table.get(name), self.table.buffer(name)) {
            (Some(e), _) => (e, self.packed),
            (None, Some(e)) => (e, self.buffers),
            (None, None) => {
                return Err(Error::InvalidConfig {
                    op: "onnx export".into(),
                    message: format!("the config has no tensor `{name}`"),
                })
            }
        };
        let values =
            data.get(e.offset..e.offset + e.len())
                .ok_or_else(|| Error::InvalidConfig {
                    op: "onnx export".into(),
                    message: format!("`{name}` lies past the end of the packed values"),
                })?;
        self.initializers
            .push(proto::tensor_f32(name, &e.shape, values));
        Ok(name.to_string())
    }

    /// `mlp(v) = fc2(relu(fc1(v)))` of a channel gate, on `[N, C]`.
    fn mlp(&mut self, p: &str, v: &str, which: &str) -> Result<String> {
        let t = || vec![("transB", Attr::Int(1))];
        let (w1, b1) = (format!("{p}.fc1.weight"), format!("{p}.fc1.bias"));
        let (w2, b2) = (format!("{p}.fc2.weight"), format!("{p}.fc2.bias"));
        let h = self.node("Gemm", format!("{p}.fc1.{which}"), &[v, &w1, &b1], t());
        let r = self.node("Relu", format!("{p}.relu.{which}"), &[&h], vec![]);
        Ok(self.node("Gemm", format!("{p}.fc2.{which}"), &[&r, &w2, &b2], t()))
    }

    /// `F * M`, or `F + F * M` for the residual gate form.
    fn apply(&mut self, p: &str, f: &str, m: &str, gate: Gate) -> String {
        let fm = self.node("Mul", format!("{p}.apply"), &[f, m], vec![]);
        match gate {
            Gate::Multiply => fm,
            Gate::Residual => self.node("Add", format!("{p}.residual"), &[f, &fm], vec![]),
        }
    }
}

/// The ONNX file (serialised `ModelProto`) of the network `config` with the parameters
/// `packed` and, with batch norm, the running statistics `buffers` (both laid out by
/// [`ParamTable::new`]`(config)`, as a loaded checkpoint holds them). `source` names where the
/// parameters came from, for the doc string.
pub fn export(
    config: &ModelConfig,
    packed: &[f32],
    buffers: &[f32],
    source: &str,
) -> Result<Vec<u8>> {
    config.validate()?;
    let table = ParamTable::new(config);
    if packed.len() != table.packed_len() || buffers.len() != table.buffers_len() {
        return Err(Error::InvalidConfig {
            op: "onnx export".into(),
            message: format!(
                "{} packed parameters and {} buffer values for a config that lays out {} and {}",
                packed.len(),
                buffers.len(),
                table.packed_len(),
                table.buffers_len()
            ),
        });
    }
    let mut g = Graph {
        table: &table,
        packed,
        buffers,
        nodes: Vec::new(),
        initializers: Vec::new(),
    };
    // Unsqueeze takes its axes as an input tensor from opset 13 on.
    let hw_axes = "axes.hw";
    g.initializers
        .push(proto::tensor_i64(hw_axes, &[2], &[2, 3]));

    let ints = |v: &[i64]| Attr::Ints(v.to_vec());
    let mut x = INPUT.to_string();
    for i in 0..config.widths.len() {
        let p = format!("stages.{i}");
        let (w, b) = (
            g.param(&format!("{p}.conv.weight"))?,
            g.param(&format!("{p}.conv.bias"))?,
        );
        x = g.node(
            "Conv",
            format!("{p}.conv"),
            &[&x, &w, &b],
            vec![
                ("kernel_shape", ints(&[3, 3])),
                ("pads", ints(&[1, 1, 1, 1])),
                ("strides", ints(&[1, 1])),
            ],
        );
        if config.norm == Norm::Batch {
            let q = format!("{p}.bn");
            let inputs = [
                g.param(&format!("{q}.weight"))?,
                g.param(&format!("{q}.bias"))?,
                g.param(&format!("{q}.running_mean"))?,
                g.param(&format!("{q}.running_var"))?,
            ];
            // Opset 15's BatchNormalization is in inference mode unless training_mode is set:
            // (x - running_mean) / sqrt(running_var + eps) * weight + bias.
            x = g.node(
                "BatchNormalization",
                q,
                &[&x, &inputs[0], &inputs[1], &inputs[2], &inputs[3]],
                vec![("epsilon", Attr::Float(crate::ops::batchnorm2d::EPS as f32))],
            );
        }
        x = g.node(
            "Elu",
            format!("{p}.elu"),
            &[&x],
            vec![("alpha", Attr::Float(1.0))],
        );
        // Floor mode (ceil_mode 0, the default), as the engine's pool halves odd sizes.
        x = g.node(
            "MaxPool",
            format!("{p}.pool"),
            &[&x],
            vec![("kernel_shape", ints(&[2, 2])), ("strides", ints(&[2, 2]))],
        );
        if config.attention.has_channel() {
            let q = format!("{p}.cbam.channel");
            for n in ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"] {
                g.param(&format!("{q}.{n}"))?;
            }
            let reduce = |keep| vec![("axes", ints(&[2, 3])), ("keepdims", Attr::Int(keep))];
            let a = g.node("ReduceMean", format!("{q}.avg"), &[&x], reduce(0));
            let m = g.node("ReduceMax", format!("{q}.max"), &[&x], reduce(0));
            let ma = g.mlp(&q, &a, "avg")?;
            let mm = g.mlp(&q, &m, "max")?;
            let s = g.node("Add", format!("{q}.sum"), &[&ma, &mm], vec![]);
            let s = g.node("Sigmoid", format!("{q}.sigmoid"), &[&s], vec![]);
            // M_c: [N, C] -> [N, C, 1, 1], broadcast over H and W.
            let m_c = g.node("Unsqueeze", format!("{q}.gate"), &[&s, hw_axes], vec![]);
            x = g.apply(&q, &x, &m_c, config.gate);
        }
        if config.attention.has_spatial() {
            let q = format!("{p}.cbam.spatial");
            let (w, b) = (
                g.param(&format!("{q}.conv.weight"))?,
                g.param(&format!("{q}.conv.bias"))?,
            );
            let reduce = || vec![("axes", ints(&[1])), ("keepdims", Attr::Int(1))];
            let m = g.node("ReduceMax", format!("{q}.max"), &[&x], reduce());
            let a = g.node("ReduceMean", format!("{q}.mean"), &[&x], reduce());
            // Max first, then mean: the order of the CBAM reference code and of the spec.
            let s = g.node(
                "Concat",
                format!("{q}.pooled"),
                &[&m, &a],
                vec![("axis", Attr::Int(1))],
            );
            let z = g.node(
                "Conv",
                format!("{q}.conv"),
                &[&s, &w, &b],
                vec![
                    ("kernel_shape", ints(&[7, 7])),
                    ("pads", ints(&[3, 3, 3, 3])),
                    ("strides", ints(&[1, 1])),
                ],
            );
            let m_s = g.node("Sigmoid", format!("{q}.gate"), &[&z], vec![]);
            x = g.apply(&q, &x, &m_s, config.gate);
        }
    }
    let t = || vec![("transB", Attr::Int(1))];
    let pooled = g.node("GlobalAveragePool", "head.pool".into(), &[&x], vec![]);
    let flat = g.node(
        "Flatten",
        "head.flatten".into(),
        &[&pooled],
        vec![("axis", Attr::Int(1))],
    );
    let (w1, b1) = (g.param("head.fc1.weight")?, g.param("head.fc1.bias")?);
    let h = g.node("Gemm", "head.fc1".into(), &[&flat, &w1, &b1], t());
    let h = g.node(
        "Elu",
        "head.elu".into(),
        &[&h],
        vec![("alpha", Attr::Float(1.0))],
    );
    let (w2, b2) = (g.param("head.fc2.weight")?, g.param("head.fc2.bias")?);
    g.nodes.push(Node {
        op: "Gemm",
        name: "head.fc2".into(),
        inputs: vec![h, w2, b2],
        outputs: vec![LOGITS.into()],
        attrs: t(),
    });
    g.nodes.push(Node {
        op: "Softmax",
        name: "softmax".into(),
        inputs: vec![LOGITS.into()],
        outputs: vec![PROBABILITIES.into()],
        attrs: vec![("axis", Attr::Int(1))],
    });

    let (s, c, k) = (config.image_size, config.in_channels, config.classes.len());
    let n = Dim::Named(BATCH);
    let inputs = [proto::value_info(
        INPUT,
        &[n.clone(), Dim::Fixed(c), Dim::Fixed(s), Dim::Fixed(s)],
        &input_doc(config),
    )];
    let outputs = [
        proto::value_info(
            LOGITS,
            &[n.clone(), Dim::Fixed(k)],
            &format!(
                "class scores before the softmax: {}",
                config.classes.join(", ")
            ),
        ),
        proto::value_info(
            PROBABILITIES,
            &[n, Dim::Fixed(k)],
            "softmax of the logits over the classes",
        ),
    ];
    let config_json = serde_json::to_string(config).expect("a config serialises");
    let doc = doc(config, source);
    Ok(proto::Model {
        ir_version: IR_VERSION,
        opset: OPSET,
        producer: "fer-cbam",
        producer_version: env!("CARGO_PKG_VERSION"),
        doc: &doc,
        graph_name: "fer_cbam",
        nodes: &g.nodes,
        initializers: &g.initializers,
        inputs: &inputs,
        outputs: &outputs,
        metadata: &[
            (CONFIG_KEY.to_string(), config_json),
            ("classes".to_string(), config.classes.join(",")),
            ("input_scale".to_string(), "1/255".to_string()),
        ],
    }
    .encode())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::Attention;
    use crate::onnx_proto::{all, first, read_fields};

    fn small(attention: Attention, norm: Norm, gate: Gate) -> ModelConfig {
        ModelConfig {
            image_size: 16,
            widths: vec![4, 8],
            hidden: 8,
            attention,
            norm,
            gate,
            ..ModelConfig::default()
        }
    }

    /// (op types in order, initializer names) of an exported file, through the decoder.
    fn ops_and_initializers(bytes: &[u8]) -> (Vec<String>, Vec<String>) {
        let m = read_fields(bytes).unwrap();
        assert_eq!(first(&m, 1).unwrap().as_int(), Some(IR_VERSION));
        let opset = read_fields(first(&m, 8).unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(first(&opset, 2).unwrap().as_int(), Some(OPSET));
        let g = read_fields(first(&m, 7).unwrap().as_bytes().unwrap()).unwrap();
        let ops = all(&g, 1)
            .map(|n| {
                let n = read_fields(n.as_bytes().unwrap()).unwrap();
                first(&n, 4).unwrap().as_str().unwrap().to_string()
            })
            .collect();
        let inits = all(&g, 5)
            .map(|t| {
                let t = read_fields(t.as_bytes().unwrap()).unwrap();
                first(&t, 8).unwrap().as_str().unwrap().to_string()
            })
            .collect();
        (ops, inits)
    }

    #[test]
    fn every_parameter_and_buffer_is_an_initializer_under_its_own_name() {
        for attention in [
            Attention::Full,
            Attention::Channel,
            Attention::Spatial,
            Attention::None,
        ] {
            for norm in [Norm::None, Norm::Batch] {
                let c = small(attention, norm, Gate::Multiply);
                let t = ParamTable::new(&c);
                let bytes = export(&c, &t.init(1), &t.init_buffers(), "test").unwrap();
                let (_, inits) = ops_and_initializers(&bytes);
                let mut want: Vec<String> = t
                    .entries()
                    .iter()
                    .chain(t.buffers())
                    .map(|e| e.name.clone())
                    .collect();
                want.push("axes.hw".into());
                let mut got = inits.clone();
                want.sort();
                got.sort();
                assert_eq!(got, want, "{attention:?} {norm:?}");
            }
        }
    }

    #[test]
    fn the_graph_has_one_node_per_step_of_the_network() {
        let count = |c: &ModelConfig, op: &str| {
            let t = ParamTable::new(c);
            let (ops, _) =
                ops_and_initializers(&export(c, &t.init(1), &t.init_buffers(), "t").unwrap());
            ops.iter().filter(|o| *o == op).count()
        };
        let full = small(Attention::Full, Norm::Batch, Gate::Residual);
        // Per stage: the 3x3 conv and the 7x7 spatial conv.
        assert_eq!(count(&full, "Conv"), 4);
        assert_eq!(count(&full, "BatchNormalization"), 2);
        // Two stages' gates (one Mul each) and their residual Adds, plus the channel sum.
        assert_eq!(count(&full, "Mul"), 4);
        assert_eq!(count(&full, "Add"), 4 + 2);
        assert_eq!(count(&full, "Sigmoid"), 4);
        // Shared MLP applied to the mean and the max: 4 per stage, plus the head's 2.
        assert_eq!(count(&full, "Gemm"), 2 * 4 + 2);
        assert_eq!(count(&full, "Softmax"), 1);
        let plain = small(Attention::None, Norm::None, Gate::Multiply);
        assert_eq!(count(&plain, "Conv"), 2);
        assert_eq!(count(&plain, "BatchNormalization"), 0);
        assert_eq!(count(&plain, "Mul"), 0);
        assert_eq!(count(&plain, "Sigmoid"), 0);
        assert_eq!(count(&plain, "Elu"), 3);
    }

    #[test]
    fn parameters_of_the_wrong_length_are_refused() {
        let c = small(Attention::Full, Norm::Batch, Gate::Multiply);
        let t = ParamTable::new(&c);
        let e = export(&c, &t.init(1)[1..], &t.init_buffers(), "t").unwrap_err();
        assert!(e.to_string().contains("packed parameters"), "{e}");
        let e = export(&c, &t.init(1), &[], "t").unwrap_err();
        assert!(e.to_string().contains("buffer values"), "{e}");
    }
}
