//! The model config flags shared by `info`, `init`, `train` and `profile`: the input, the
//! attention variant, the stage widths and the network options. Defaults are the spec's network.

use fer_cbam::model::{Attention, ModelConfig, Norm};
use fer_cbam::Result;

use super::recipe::NetworkArgs;

/// The model config flags; defaults are the spec's network.
#[derive(clap::Args)]
pub struct ConfigArgs {
    /// Square input size in pixels.
    #[arg(long, value_parser = super::image_size, default_value_t = 128)]
    pub image_size: usize,
    /// Input channels: 3 (grayscale replicated) or 1.
    #[arg(long, value_parser = super::in_channels, default_value_t = 3)]
    pub in_channels: usize,
    /// Attention variant: full, none, channel or spatial.
    #[arg(long, default_value = "full")]
    pub attention: Attention,
    /// Conv widths of the stages, comma-separated.
    #[arg(long, value_parser = super::width, value_delimiter = ',', default_value = "32,64,128,256")]
    pub widths: Vec<usize>,
    #[command(flatten)]
    pub network: NetworkArgs,
}

impl ConfigArgs {
    /// The config, with `norm` where --norm is not given.
    pub fn config(&self, norm: Norm) -> Result<ModelConfig> {
        let config = self.network.apply(
            ModelConfig {
                image_size: self.image_size,
                in_channels: self.in_channels,
                attention: self.attention,
                widths: self.widths.clone(),
                ..ModelConfig::default()
            },
            norm,
        );
        config.validate()?;
        Ok(config)
    }
}
