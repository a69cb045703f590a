//! The browser build runs the same kernels and gives the same answer: builds `web/` for
//! wasm32 (WebGPU), serves the page from a loopback server, runs it in headless Chromium on
//! Google's SwiftShader WebGPU adapter, and holds its logits against the native run of the same
//! checkpoint and image through the library (lavapipe here): once with a checkpoint and an
//! image given in the URL, once with nothing given, where the page opens with its default
//! model (web/model/) and classifies its first example face.
//!
//! Needs `chromium` (or the browser named by `CHROMIUM`) and the `wasm-bindgen` CLI
//! (tools/install-web-test.sh). Without them the test prints why and passes, except under `CI`
//! (set by CI services and by .ci/run), where it fails.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::time::Duration;

use fer_cbam::data::{folder, synthetic};
use fer_cbam::model::infer::{self, Inference};
use fer_cbam::model::{checkpoint, Attention, InferenceNetwork, ModelConfig, ParamTable};

/// Two implementations of WebGPU/Vulkan (SwiftShader in Chromium, lavapipe natively) run the
/// same WGSL. Every reduction in our kernels has a fixed order, so the only freedom left is how
/// each compiler contracts a*b+c into an FMA and evaluates exp/division (a few ulps each).
/// Through four conv stages and two linear layers of this small network that stays well under
/// 1e-5 in logits of size ~0.1-1; 1e-4 is the bound. A wrong pixel, weight or gate
/// moves logits by 1e-3 or more.
const LOGIT_TOL: f32 = 1e-4;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo/bin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The version of the wasm-bindgen crate that Cargo.lock pins: the CLI must match it exactly.
fn locked_wasm_bindgen() -> String {
    let lock = std::fs::read_to_string(Path::new(REPO).join("Cargo.lock")).unwrap();
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l == "name = \"wasm-bindgen\"" {
            let v = lines.next().unwrap();
            return v.trim_start_matches("version = ").trim_matches('"').into();
        }
    }
    panic!("no wasm-bindgen in Cargo.lock");
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds the wasm module and the page into `site`: web/index.html, web/main.js and
/// wasm-bindgen's output in `site/pkg`.
fn build_site(wasm_bindgen: &Path, site: &Path) {
    // A target dir of its own: the outer `cargo test` holds the main one's lock.
    run(
        Command::new(env!("CARGO"))
            .current_dir(REPO)
            .args([
                "build",
                "-p",
                "fer-cbam-web",
                "--release",
                "--target",
                "wasm32-unknown-unknown",
                "--target-dir",
                "target/wasm",
            ])
            .env_remove("CARGO_TARGET_DIR"),
        "cargo build -p fer-cbam-web --target wasm32-unknown-unknown",
    );
    let wasm = Path::new(REPO).join("target/wasm/wasm32-unknown-unknown/release/fer_cbam_web.wasm");
    run(
        Command::new(wasm_bindgen)
            .args(["--target", "web", "--no-typescript", "--out-dir"])
            .arg(site.join("pkg"))
            .arg(&wasm),
        "wasm-bindgen",
    );
    for f in ["index.html", "main.js"] {
        std::fs::copy(Path::new(REPO).join("web").join(f), site.join(f)).unwrap();
    }
    // The default model the page opens with, and its example faces.
    let model = Path::new(REPO).join("web/model");
    std::fs::create_dir_all(site.join("model/faces")).unwrap();
    for f in ["default.json".to_string()]
        .into_iter()
        .chain(
            default_manifest()["faces"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["file"].as_str().unwrap().to_string()),
        )
        .chain([default_manifest()["checkpoint"]
            .as_str()
            .unwrap()
            .to_string()])
    {
        std::fs::copy(model.join(&f), site.join("model").join(&f))
            .unwrap_or_else(|e| panic!("web/model/{f}: {e}"));
    }
}

/// web/model/default.json: the default model's checkpoint, name and example faces.
fn default_manifest() -> serde_json::Value {
    let path = Path::new(REPO).join("web/model/default.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("png") => "image/png",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// Answers one request: GET serves a file of `root`; POST /result hands its body to `results`.
fn serve_one(s: TcpStream, root: &Path, results: &Sender<String>) {
    let mut reader = BufReader::new(&s);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let mut length = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let rel = target.split('?').next().unwrap().trim_start_matches('/');
    let rel = if rel.is_empty() { "index.html" } else { rel };
    let mut s = &s;
    if method == "POST" && rel == "result" {
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_ok() {
            let _ = results.send(String::from_utf8_lossy(&body).into_owned());
        }
        let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        return;
    }
    let path = root.join(rel);
    let body = if rel.split('/').any(|c| c == "..") {
        None
    } else {
        std::fs::read(&path).ok()
    };
    let _ = match body {
        Some(body) => s
            .write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                     Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                    mime(&path),
                    body.len()
                )
                .as_bytes(),
            )
            .and_then(|_| s.write_all(&body)),
        None => {
            s.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        }
    };
}

/// Serves `root` on a loopback port until the test process ends; returns the port and the
/// receiving end of what the page POSTs to /result.
fn serve(root: PathBuf) -> (u16, Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            let (root, tx) = (root.clone(), tx.clone());
            std::thread::spawn(move || serve_one(s, &root, &tx));
        }
    });
    (port, rx)
}

/// Opens `url` in headless Chromium (WebGPU on SwiftShader) and waits for the page to POST its
/// result, for as long as chromium runs: no deadline, since a loaded machine may take minutes;
/// a chromium that exits without a result fails the test with its log. (`--dump-dom` would not
/// do: it prints the DOM as soon as the page's own tasks are done, while the GPU work is still
/// pending.)
fn chromium_result(
    chromium: &Path,
    profile: &Path,
    url: &str,
    results: &Receiver<String>,
) -> String {
    let log = profile.with_extension("log");
    let mut child = Command::new(chromium)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-webgpu",
            "--use-webgpu-adapter=swiftshader",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromium.display()));
    let got = loop {
        match results.recv_timeout(Duration::from_millis(200)) {
            Ok(r) => break Some(r),
            Err(_) => {
                if let Some(status) = child.try_wait().unwrap() {
                    eprintln!("chromium exited ({status}) before the page posted a result");
                    break None;
                }
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    got.unwrap_or_else(|| {
        panic!(
            "the page posted no result; chromium's log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    })
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Every weight of the fixture is PyTorch's default init times this. Freshly initialised and
/// without batch norm, the network is nearly blind to its input (each CBAM gate starts near 0.5
/// and halves the signal): another face moved its logits by 2.5e-5, under the tolerance, so a
/// parity test on it would prove little. Times 6, changing one pixel of this fixture's face by
/// 16 levels in one channel moves the logits by 2.2e-3 (measured), and the test checks that
/// such a change stays above 10x the tolerance.
const WEIGHT_SCALE: f32 = 6.0;

/// The fixture: a small checkpoint and a synthetic face written as a 48x48 gray PNG (so both
/// sides also resample it to the network's 32x32).
fn fixture(site: &Path) -> (PathBuf, PathBuf) {
    let config = ModelConfig {
        image_size: 32,
        widths: vec![8, 16, 32, 64],
        hidden: 32,
        attention: Attention::Full,
        ..ModelConfig::default()
    };
    let table = ParamTable::new(&config);
    let mut packed = table.init(7);
    for e in table
        .entries()
        .iter()
        .filter(|e| e.name.ends_with(".weight"))
    {
        for v in &mut packed[e.offset..e.offset + e.len()] {
            *v *= WEIGHT_SCALE;
        }
    }
    let ck = site.join("ck.safetensors");
    checkpoint::save(&ck, &config, &packed).unwrap();
    let face = synthetic::generate(2026, 3, 48);
    let png = site.join("face.png");
    image::GrayImage::from_raw(48, 48, face.image(1))
        .unwrap()
        .save(&png)
        .unwrap();
    (ck, png)
}

/// The native run, plus the same with one pixel changed (to show the fixture is sensitive).
fn native(ck: &Path, png: &Path) -> (Inference, Inference) {
    let (w, h) = image::image_dimensions(png).unwrap();
    let (w, h) = (w as usize, h as usize);
    let ck = checkpoint::load(ck).unwrap();
    let c = &ck.config;
    let gpu = common::gpu();
    let net = common::block_on(InferenceNetwork::from_checkpoint(gpu, &ck, 1)).unwrap();
    let pixels = folder::decode(png, c.image_size, c.in_channels).unwrap();
    // The page hands the wasm module canvas RGBA, not the file: that path must give the same input.
    let rgba: Vec<u8> = image::open(png).unwrap().to_rgba8().into_raw();
    assert_eq!(
        fer_cbam::preprocess::input_from_rgba(&rgba, w, h, c.image_size, c.in_channels).unwrap(),
        pixels,
        "the RGBA path (browser) and the file path (native) preprocess differently"
    );
    let mut nudged = pixels.clone();
    let s = c.image_size;
    nudged[s * s / 2 + s / 2] ^= 0x10;
    (
        infer::infer_blocking(gpu, &net, &pixels).unwrap(),
        infer::infer_blocking(gpu, &net, &nudged).unwrap(),
    )
}

/// Holds what the page posted against the native run of the same checkpoint and image:
/// logits, probabilities and every stage's spatial map within [`LOGIT_TOL`], on an input that
/// one pixel's change moves by more than 10x that.
fn same_as_native(web: &serde_json::Value, ck: &Path, png: &Path) {
    let (nat, nudged) = native(ck, png);
    let sensitivity = max_diff(&nat.logits, &nudged.logits);
    println!("one pixel changed moves the native logits by {sensitivity:e}");
    assert!(
        sensitivity > 10.0 * LOGIT_TOL,
        "the fixture is too insensitive to its input ({sensitivity:e}) for this test to mean much"
    );
    let logits = floats(&web["logits"]);
    let d = max_diff(&logits, &nat.logits);
    println!(
        "logits browser {logits:?}\nlogits native  {:?}\nmax |diff| {d:e}",
        nat.logits
    );
    assert!(
        d <= LOGIT_TOL,
        "browser and native logits differ by {d:e} > {LOGIT_TOL:e}"
    );
    let dp = max_diff(&floats(&web["probs"]), &nat.probs);
    assert!(dp <= LOGIT_TOL, "probabilities differ by {dp:e}");
    // The attention maps the page draws: every stage has one with the full config.
    let maps = web["maps"].as_array().unwrap();
    assert_eq!(maps.len(), nat.spatial_maps.len());
    for (i, (w, n)) in maps.iter().zip(&nat.spatial_maps).enumerate() {
        let (side, n) = n.as_ref().unwrap();
        let w = floats(w);
        assert_eq!(w.len(), side * side, "stage {i} map size");
        let dm = max_diff(&w, n);
        println!("stage {i} map {side}x{side}: max |diff| {dm:e}");
        assert!(dm <= LOGIT_TOL, "stage {i} spatial maps differ by {dm:e}");
    }
}

#[test]
fn browser_logits_equal_native_logits() {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false");
    // CHROMIUM names another Chromium-based browser (google-chrome, chromium-browser).
    let chromium = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| find("chromium"));
    let wasm_bindgen = find("wasm-bindgen");
    if chromium.is_none() || wasm_bindgen.is_none() {
        let missing: Vec<&str> = [("chromium", &chromium), ("wasm-bindgen", &wasm_bindgen)]
            .iter()
            .filter(|(_, p)| p.is_none())
            .map(|(n, _)| *n)
            .collect();
        let msg = format!(
            "browser test needs {} (install with tools/install-web-test.sh)",
            missing.join(" and ")
        );
        assert!(!ci, "{msg}; CI is set, so this is a failure");
        // Straight to the process's stderr: the test harness captures print! and eprint!, and a
        // skip must be seen in a plain `cargo test` run.
        let _ = writeln!(std::io::stderr(), "SKIPPED: {msg}");
        return;
    }
    let (chromium, wasm_bindgen) = (chromium.unwrap(), wasm_bindgen.unwrap());
    let want = locked_wasm_bindgen();
    let have = String::from_utf8(
        Command::new(&wasm_bindgen)
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        have.split_whitespace().nth(1),
        Some(want.as_str()),
        "wasm-bindgen CLI ({}) must match the crate in Cargo.lock ({want}): \
         cargo install wasm-bindgen-cli --version {want}",
        have.trim()
    );

    let dir = common::tmp_dir("web");
    let site = dir.join("site");
    std::fs::create_dir_all(&site).unwrap();
    build_site(&wasm_bindgen, &site);
    let (ck, png) = fixture(&site);
    let (port, results) = serve(site.clone());
    let page = |query: &str, profile: &str| {
        let url = format!("http://127.0.0.1:{port}/index.html?{query}");
        let posted = chromium_result(&chromium, &dir.join(profile), &url, &results);
        let web: serde_json::Value = serde_json::from_str(&posted).unwrap_or_else(|e| {
            panic!("the page posted something that is not JSON ({e}): {posted:?}")
        });
        assert!(
            web.get("error").is_none(),
            "the page failed: {}",
            web["error"]
        );
        web
    };

    let web = page("test&checkpoint=ck.safetensors&image=face.png", "profile");
    assert_eq!(web["model"], "ck.safetensors");
    same_as_native(&web, &ck, &png);

    // No file chosen and no parameters: the page opens with its default model and classifies
    // its first example face.
    let manifest = default_manifest();
    let web = page("test", "profile-default");
    assert_eq!(
        web["model"], manifest["name"],
        "the page must say which model it loaded"
    );
    let face = &manifest["faces"][0];
    let image = web["image"].as_str().unwrap();
    assert!(
        image.contains(face["class"].as_str().unwrap()),
        "the page names its example face and its class: {image:?}"
    );
    let model = Path::new(REPO).join("web/model");
    same_as_native(
        &web,
        &model.join(manifest["checkpoint"].as_str().unwrap()),
        &model.join(face["file"].as_str().unwrap()),
    );
    let _ = std::fs::remove_dir_all(&dir);
}
