//! fer-cbam in the browser: loads a checkpoint, runs one image through the network with the
//! library's own WGSL kernels on the browser's WebGPU, and hands the page the logits,
//! probabilities and each stage's spatial attention map.
//!
//! Built only for `wasm32-unknown-unknown` (see `tools/build-web.sh`); on other targets this
//! crate is empty.
#![cfg(target_arch = "wasm32")]

use std::path::Path;
use std::rc::Rc;

use fer_cbam_engine::model::infer::{self, Inference};
use fer_cbam_engine::model::{checkpoint, InferenceNetwork};
use fer_cbam_engine::preprocess;
use fer_cbam_engine::Gpu;
use js_sys::{Array, Float32Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console)]
    fn error(s: &str);
    #[wasm_bindgen(js_namespace = console)]
    fn warn(s: &str);
    #[wasm_bindgen(js_namespace = console)]
    fn info(s: &str);
}

/// The engine's `log` records (info and above) into the browser's console, where without a
/// logger they would vanish: its warnings about the adapter, and every device error no error
/// scope caught, which the engine also returns from the next readback, so the page's status
/// line shows it too.
struct ConsoleLogger;

impl log::Log for ConsoleLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }
    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("fer-cbam: {}", record.args());
        match record.level() {
            log::Level::Error => error(&line),
            log::Level::Warn => warn(&line),
            _ => info(&line),
        }
    }
    fn flush(&self) {}
}

static LOGGER: ConsoleLogger = ConsoleLogger;

/// Installs the console logger and the panic hook, once per page.
fn install_hooks() {
    // Fails only when a logger is already set: a second `load` on the same page.
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
    // A panic would otherwise reach the page as "unreachable executed" with no message.
    std::panic::set_hook(Box::new(|info| error(&info.to_string())));
}

fn js_err(e: fer_cbam_engine::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

struct Inner {
    gpu: Gpu,
    net: InferenceNetwork,
    /// The checkpoint's training record as JSON (`null` for one written by `init`).
    training: String,
}

/// A loaded checkpoint on the browser's GPU: a network of batch 1 with its parameters written.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<Inner>,
}

/// Opens the browser's WebGPU adapter, reads the checkpoint (safetensors bytes, as `fer-cbam
/// init` or `train` write them) and builds the network. Rejects with one line naming the
/// problem (no WebGPU, not a fer-cbam checkpoint, a shape mismatch...).
#[wasm_bindgen]
pub async fn load(checkpoint_bytes: Vec<u8>, name: String) -> Result<Model, JsValue> {
    install_hooks();
    let ck = checkpoint::from_bytes(&checkpoint_bytes, Path::new(&name)).map_err(js_err)?;
    let training = checkpoint::training_meta_from_bytes(&checkpoint_bytes, Path::new(&name))
        .map_err(js_err)?;
    let training = serde_json::to_string(&training).unwrap_or_default();
    let gpu = Gpu::new().await.map_err(js_err)?;
    let net = InferenceNetwork::from_checkpoint(&gpu, &ck, 1)
        .await
        .map_err(js_err)?;
    Ok(Model {
        inner: Rc::new(Inner { gpu, net, training }),
    })
}

#[wasm_bindgen]
impl Model {
    /// The network's square input size.
    #[wasm_bindgen(getter)]
    pub fn image_size(&self) -> usize {
        self.inner.net.config().image_size
    }

    /// Class names in logit order.
    #[wasm_bindgen(getter)]
    pub fn classes(&self) -> Array {
        self.inner
            .net
            .config()
            .classes
            .iter()
            .map(|c| JsValue::from_str(c))
            .collect()
    }

    /// The config as JSON (what the checkpoint's header says).
    #[wasm_bindgen(getter)]
    pub fn config_json(&self) -> String {
        serde_json::to_string(self.inner.net.config()).unwrap_or_default()
    }

    /// How the checkpoint was trained, as its header records it (JSON: the face crop, the
    /// recipe's augmentation and schedule, the validation split), or `null` for a checkpoint
    /// written by `fer-cbam init` or before training recorded it.
    #[wasm_bindgen(getter)]
    pub fn training_json(&self) -> String {
        self.inner.training.clone()
    }

    /// The adapter the kernels run on, in words.
    #[wasm_bindgen(getter)]
    pub fn adapter(&self) -> String {
        let i = &self.inner.gpu.info;
        // Browsers may hide the adapter's name (Chromium does for SwiftShader).
        let name = if i.name.is_empty() { "WebGPU" } else { &i.name };
        format!("{name} ({:?})", i.device_type)
    }

    /// Runs RGBA pixels (a canvas's `getImageData().data`, any size) through the network:
    /// converted to gray and resized exactly as the native `predict` does. Resolves to
    /// `{ logits, probs: Float32Array, input: Uint8Array (the gray network input, size x size),
    /// size, maps: [{ stage, side, data: Float32Array } | null per stage] }`.
    pub fn infer(&self, rgba: Vec<u8>, width: usize, height: usize) -> js_sys::Promise {
        let inner = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let c = inner.net.config();
            let (size, channels) = (c.image_size, c.in_channels);
            let pixels = preprocess::input_from_rgba(&rgba, width, height, size, channels)
                .map_err(js_err)?;
            let r = infer::infer(&inner.gpu, &inner.net, &pixels)
                .await
                .map_err(js_err)?;
            to_js(&r, &pixels[..size * size], size)
        })
    }
}

fn set(o: &Object, key: &str, v: &JsValue) -> Result<(), JsValue> {
    Reflect::set(o, &JsValue::from_str(key), v).map(|_| ())
}

fn to_js(r: &Inference, gray: &[u8], size: usize) -> Result<JsValue, JsValue> {
    let o = Object::new();
    set(
        &o,
        "logits",
        &Float32Array::from(r.logits.as_slice()).into(),
    )?;
    set(&o, "probs", &Float32Array::from(r.probs.as_slice()).into())?;
    set(&o, "input", &Uint8Array::from(gray).into())?;
    set(&o, "size", &JsValue::from(size))?;
    let maps = Array::new();
    for (i, m) in r.spatial_maps.iter().enumerate() {
        maps.push(&match m {
            Some((side, data)) => {
                let m = Object::new();
                set(&m, "stage", &JsValue::from(i))?;
                set(&m, "side", &JsValue::from(*side))?;
                set(&m, "data", &Float32Array::from(data.as_slice()).into())?;
                m.into()
            }
            None => JsValue::NULL,
        });
    }
    set(&o, "maps", &maps.into())?;
    Ok(o.into())
}
