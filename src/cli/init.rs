//! `fer-cbam init`: a freshly initialised checkpoint, seeded (the same seed gives the same
//! bytes everywhere).

use std::path::PathBuf;

use fer_cbam::model::{checkpoint, Norm, ParamTable};
use fer_cbam::Result;

use super::config::ConfigArgs;

/// `fer-cbam init`.
#[derive(clap::Args)]
pub struct Args {
    /// Seed of the initialisation: the same seed gives the same weights everywhere.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output checkpoint (.safetensors); written atomically.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &Args) -> Result<()> {
    let config = args.config.config(Norm::None)?;
    fer_cbam::files::check_file(&args.out, &[])?;
    let table = ParamTable::new(&config);
    checkpoint::save(&args.out, &config, &table.init(args.seed))?;
    super::print_line(format!(
        "wrote {} ({} parameters, seed {})",
        args.out.display(),
        table.count(),
        args.seed
    ));
    Ok(())
}
