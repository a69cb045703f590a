//! `fer-cbam info`: the adapter, backend, driver and device limits in use; with --model, the
//! model's parameter table and the memory plans of the inference and the training network.

use fer_cbam::model::network::PlanEntry;
use fer_cbam::model::{InferenceNetwork, Network, Norm, ParamTable};
use fer_cbam::Result;

use super::config::ConfigArgs;

/// `fer-cbam info`.
#[derive(clap::Args)]
pub struct Args {
    /// Also print the parameter table (names, shapes, counts) of the model config below and
    /// the memory plan at --batch-size (every device tensor, allocated for real).
    #[arg(long)]
    pub model: bool,
    /// Batch size of the memory plan.
    #[arg(long, value_parser = super::batch_size, default_value_t = 64)]
    pub batch_size: usize,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> Result<()> {
    let batch_size = args.batch_size;
    let gpu = super::new_gpu()?;
    super::print_line(gpu.describe());
    super::print_line(format!("choosing: {}", fer_cbam::gpu::CHOOSING));
    if args.model {
        let config = args.config.config(Norm::None)?;
        let table = ParamTable::new(&config);
        super::print_line(format!(
            "\nmodel: {}",
            serde_json::to_string(&config).unwrap()
        ));
        super::print_line(format!(
            "{:<40} {:<18} {:>10}",
            "parameter", "shape", "count"
        ));
        for e in table.entries() {
            super::print_line(format!(
                "{:<40} {:<18} {:>10}",
                e.name,
                format!("{:?}", e.shape),
                e.len()
            ));
        }
        super::print_line(format!("{:<40} {:<18} {:>10}", "total", "", table.count()));
        if !table.buffers().is_empty() {
            super::print_line(format!(
                "\n{:<40} {:<18} {:>10}",
                "buffer (not trained; in the checkpoint)", "shape", "count"
            ));
            for e in table.buffers() {
                super::print_line(format!(
                    "{:<40} {:<18} {:>10}",
                    e.name,
                    format!("{:?}", e.shape),
                    e.len()
                ));
            }
            for name in table.counters() {
                super::print_line(format!("{name:<40} {:<18} {:>10}", "[] (I64)", 1));
            }
            let floats: usize = table.buffers().iter().map(|e| e.len()).sum();
            super::print_line(format!("{:<40} {:<18} {:>10}", "total f32", "", floats));
        }
        // Both networks, allocated for real: what `predict`, `eval` and `explain` hold (the
        // inference network), and what `train` holds.
        let inference = pollster::block_on(InferenceNetwork::new(&gpu, &config, batch_size))?;
        let inferred: Vec<PlanEntry> = inference.plan().to_vec();
        drop(inference);
        let net = pollster::block_on(Network::new(&gpu, &config, batch_size, Default::default()))?;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        super::print_line(format!(
            "\nmemory plan at batch {batch_size} (the networks' device tensors, f32; each gate's and batch norm's small saved tensors come on top):"
        ));
        super::print_line(format!(
            "{:<40} {:<22} {:>14} {:>14}",
            "tensor", "shape", "inference", "training"
        ));
        for e in net.plan() {
            let inf = inferred
                .iter()
                .find(|i| i.name == e.name)
                .map_or("-".to_string(), |i| format!("{:.2} MiB", mib(i.bytes)));
            super::print_line(format!(
                "{:<40} {:<22} {:>14} {:>14}",
                e.name,
                format!("{:?}", e.shape),
                inf,
                format!("{:.2} MiB", mib(e.bytes))
            ));
        }
        let total =
            |plan: &[PlanEntry]| format!("{:.2} MiB", mib(plan.iter().map(|e| e.bytes).sum()));
        super::print_line(format!(
            "{:<40} {:<22} {:>14} {:>14}",
            "total",
            "",
            total(&inferred),
            total(net.plan())
        ));
    }
    Ok(())
}
