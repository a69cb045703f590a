//! Writes the browser page's default model folder (web/model/) from a training run: the
//! checkpoint, one example face per class from the run's test side (synthetic faces the model
//! never trained on, at its input size), and `default.json`, the manifest the page reads (name,
//! how it was trained, its test scores, the faces and their classes). Run by
//! tools/train-web-model.sh after `fer-cbam train --json`:
//!
//! ```sh
//! cargo run --release --example web_model -- TRAIN.json CHECKPOINT OUT_DIR SYNTHETIC SEED "COMMAND"
//! ```

use std::path::{Path, PathBuf};

use fer_cbam::data::synthetic;
use fer_cbam::model::checkpoint;

fn fail(msg: String) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}

/// The recipe in words, from the checkpoint itself (its config and its training record), so the
/// manifest cannot say other than what was trained.
fn recipe_words(c: &fer_cbam::model::ModelConfig, ck: &Path) -> String {
    let mut w = vec![format!("norm {}, init {}, gate {}", c.norm, c.init, c.gate)];
    let meta = checkpoint::load_training_meta(ck).unwrap_or_else(|e| fail(e.to_string()));
    if let Some(r) = meta.map(|m| m.recipe) {
        if r["flip"] == true {
            w.push("flips".into());
        }
        if let Some(s) = r["shift"].as_u64().filter(|&s| s > 0) {
            w.push(format!("shifts of up to {s} px"));
        }
        if let Some(k) = r["lr_schedule"]["decay"]["kind"].as_str() {
            w.push(format!("{k} learning rate"));
        }
        if let Some(m) = r["occlusion_mix"].as_f64().filter(|&m| m > 0.0) {
            w.push(format!("{:.0}% of the faces occluded", 100.0 * m));
        }
    }
    w.join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [train_json, ck, out, synthetic_count, synthetic_seed, command] = &args[..] else {
        fail("usage: web_model TRAIN.json CHECKPOINT OUT_DIR SYNTHETIC SEED \"COMMAND\"".into());
    };
    let (ck, out) = (Path::new(ck), PathBuf::from(out));
    let n: u64 = synthetic_count
        .parse()
        .unwrap_or_else(|e| fail(format!("SYNTHETIC {synthetic_count:?}: {e}")));
    let seed: u64 = synthetic_seed
        .parse()
        .unwrap_or_else(|e| fail(format!("SEED {synthetic_seed:?}: {e}")));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(train_json).unwrap_or_else(|e| fail(format!("{train_json}: {e}"))),
    )
    .unwrap_or_else(|e| fail(format!("{train_json}: not the JSON of train --json: {e}")));
    let loaded = checkpoint::load(ck).unwrap_or_else(|e| fail(e.to_string()));
    let c = &loaded.config;

    std::fs::create_dir_all(out.join("faces"))
        .unwrap_or_else(|e| fail(format!("{}: {e}", out.display())));
    let name = format!("synthetic-{}.safetensors", c.image_size);
    std::fs::copy(ck, out.join(&name)).unwrap_or_else(|e| fail(format!("{name}: {e}")));

    // The test side of `train --synthetic n`: faces n - n/5 .. n (see the data flags).
    let first_test = n - n / 5;
    let mut faces = Vec::new();
    for (class, class_name) in c.classes.iter().enumerate() {
        let index = (first_test..n)
            .find(|&i| synthetic::label_of(seed, i) == class)
            .unwrap_or_else(|| fail(format!("no {class_name} face on the test side")));
        let face = synthetic::generate(seed, index, c.image_size);
        let file = format!("faces/{index}-{class_name}.png");
        let s = c.image_size as u32;
        image::GrayImage::from_raw(s, s, face.pixels)
            .expect("size x size pixels")
            .save(out.join(&file))
            .unwrap_or_else(|e| fail(format!("{file}: {e}")));
        faces.push(serde_json::json!({ "file": file, "index": index, "class": class_name }));
    }

    let count = faces.len();
    let accuracy = report["accuracy"].as_f64().unwrap_or(f64::NAN);
    let images = report["images"].as_u64().unwrap_or(0);
    let epochs = report["epochs"].as_array().map_or(0, |e| e.len());
    let seconds = report["train_seconds"].as_f64().unwrap_or(f64::NAN);
    let widths: Vec<String> = c.widths.iter().map(|w| w.to_string()).collect();
    let manifest = serde_json::json!({
        "name": format!("synthetic faces, {0}x{0}, widths {1}, attention {2}, batch norm",
            c.image_size, widths.join("-"),
            serde_json::to_value(c.attention).unwrap().as_str().unwrap_or_default()),
        "checkpoint": name,
        "trained": format!(
            "trained by tools/train-web-model.sh on {} of the embedded synthetic faces (seed \
             {seed}) for {epochs} epochs in {seconds:.0} s ({}); test accuracy {:.1}% on the \
             other {images} (clean)",
            first_test,
            recipe_words(c, ck),
            100.0 * accuracy
        ),
        "command": command,
        "test": {
            "images": images,
            "accuracy": accuracy,
            "macro_f1": report["macro_f1"],
        },
        "train_seconds": seconds,
        "faces": faces,
    });
    let path = out.join("default.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap_or_else(|e| fail(format!("{}: {e}", path.display())));
    println!(
        "wrote {} ({name}, {} example faces, test accuracy {:.3})",
        path.display(),
        count,
        accuracy
    );
}
