// The page: checkpoint and image in, probabilities and attention maps out. All the numbers come
// from the wasm module (web/src/lib.rs), which runs the library's WGSL kernels on WebGPU.
// It opens with the default model of model/default.json (written by tools/train-web-model.sh)
// and its first example face; the user's own checkpoint or image replaces them.
// Query parameters: ?checkpoint=URL&image=URL load files served beside the page instead; with
// &test the page runs once, writes {"model":..., "image":..., "logits":[...],"probs":[...],
// "maps":[...]} into <pre id="result"> and POSTs it to ./result.
import init, { load } from './pkg/fer_cbam_web.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const testMode = params.has('test');

// The default model's manifest: its checkpoint, how it was trained, example faces.
const MANIFEST = 'model/default.json';

let model = null;
let modelName = null;
let manifest = null;
let imageName = null;
let trueClass = null; // an example face's own class, shown beside the prediction
const source = document.createElement('canvas'); // the image at its own size, before the occluder
let haveImage = false;
let occluder = null; // {x, y, w, h} in source pixels
let drag = null;
let running = false;
let again = false;

function status(text, isError = false) {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
}

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

// What a checkpoint's own training record says (fer-cbam train writes one; init does not).
function describeTraining(t) {
  if (!t) return 'no training record in the checkpoint (written by fer-cbam init, or before training recorded one)';
  const r = t.recipe || {};
  const parts = [];
  if (r.lr_schedule) {
    const kind = r.lr_schedule.decay ? r.lr_schedule.decay.kind : 'constant';
    parts.push(`learning rate ${kind} over ${r.lr_schedule.total_epochs} epochs`);
  }
  if (r.occlusion_mix) parts.push(`${Math.round(100 * r.occlusion_mix)}% of images occluded`);
  if (r.flip) parts.push('flipped');
  if (r.shift) parts.push(`shifted by up to ${r.shift} px`);
  if (t.crop) parts.push('face crops');
  if (t.validation) {
    parts.push(`kept epoch ${t.validation.epoch}, validation accuracy ${(100 * t.validation.accuracy).toFixed(1)}%`);
  }
  return `trained with: ${parts.join(', ') || 'no augmentation'}`;
}

// Loads a checkpoint, replacing the model in use once the new one is ready. `about` says how
// it was trained when the checkpoint's own record is not the whole story (the default model).
async function loadModel(bytes, name, about = null) {
  status(`loading ${name}...`);
  const next = await load(bytes, name);
  if (model) model.free(); // its GPU buffers
  model = next;
  modelName = name;
  const c = JSON.parse(model.config_json);
  $('ckname').textContent = name;
  $('ckconfig').textContent = `${c.image_size}x${c.image_size} input, ${c.in_channels} channel(s), ` +
    `widths ${c.widths.join('-')}, attention ${c.attention}, norm ${c.norm || 'none'}, ` +
    `gate ${c.gate || 'multiply'}; on ${model.adapter}`;
  $('cktrained').textContent = about || describeTraining(JSON.parse(model.training_json));
  $('ckcommand').hidden = true;
}

// The manifest of the default model, or null (with a note) when the page is served without it.
async function readManifest() {
  try {
    const r = await fetch(MANIFEST);
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return await r.json();
  } catch (e) {
    console.warn(`${MANIFEST}: ${e.message}: no default model`);
    return null;
  }
}

async function loadDefaultModel() {
  const bytes = await fetchBytes(`model/${manifest.checkpoint}`);
  await loadModel(bytes, manifest.name, manifest.trained);
  if (manifest.command) {
    $('ckcommand').querySelector('code').textContent = manifest.command;
    $('ckcommand').hidden = false;
  }
}

async function useExample(i) {
  const f = manifest.faces[i];
  await loadImage(`model/${f.file}`);
  imageName = `synthetic face #${f.index} (${f.class})`;
  trueClass = f.class;
  $('examples').value = String(i);
  drawFace();
}

function setSource(drawable, w, h) {
  source.width = w;
  source.height = h;
  source.getContext('2d').drawImage(drawable, 0, 0);
  haveImage = true;
  occluder = null;
}

async function loadImage(url) {
  const img = new Image();
  img.src = url;
  await img.decode();
  setSource(img, img.naturalWidth, img.naturalHeight);
}

// The pixels the network sees: the source with the occluder painted black, at the source's size.
function pixels() {
  const c = document.createElement('canvas');
  c.width = source.width;
  c.height = source.height;
  const g = c.getContext('2d');
  g.drawImage(source, 0, 0);
  if (occluder) {
    g.fillStyle = '#000';
    g.fillRect(occluder.x, occluder.y, occluder.w, occluder.h);
  }
  return g.getImageData(0, 0, c.width, c.height);
}

function drawFace() {
  const face = $('face');
  const scale = Math.min(320 / source.width, 320 / source.height, 8);
  face.width = Math.round(source.width * scale);
  face.height = Math.round(source.height * scale);
  const g = face.getContext('2d');
  g.imageSmoothingEnabled = scale < 1;
  const p = pixels();
  const c = document.createElement('canvas');
  c.width = p.width;
  c.height = p.height;
  c.getContext('2d').putImageData(p, 0, 0);
  g.drawImage(c, 0, 0, face.width, face.height);
  return scale;
}

// A perceptual colour ramp (dark blue -> teal -> yellow) for attention values in 0..1.
function ramp(v) {
  const stops = [[48, 18, 59], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const t = Math.min(Math.max(v, 0), 1) * (stops.length - 1);
  const i = Math.min(Math.floor(t), stops.length - 2);
  const f = t - i;
  return stops[i].map((a, k) => Math.round(a + (stops[i + 1][k] - a) * f));
}

function showResult(r) {
  const classes = model.classes;
  const rows = classes.map((name, i) => ({ name, p: r.probs[i] })).sort((a, b) => b.p - a.p);
  $('probs').innerHTML = rows.map(({ name, p }) =>
    `<tr><td>${name}${name === trueClass ? ' *' : ''}</td><td>${p.toFixed(3)}</td>` +
    `<td><div class="bar" style="width:${Math.round(200 * p)}px"></div></td></tr>`).join('');
  $('truth').textContent = trueClass
    ? `* the example face's own class: ${trueClass} (predicted: ${rows[0].name})` : '';

  // The gray network input, once, as the background of every map.
  const n = r.size;
  const bg = document.createElement('canvas');
  bg.width = bg.height = n;
  const bgData = bg.getContext('2d').createImageData(n, n);
  for (let i = 0; i < n * n; i++) {
    bgData.data.set([r.input[i], r.input[i], r.input[i], 255], 4 * i);
  }
  bg.getContext('2d').putImageData(bgData, 0, 0);

  const maps = $('maps');
  maps.innerHTML = '';
  r.maps.forEach((m, stage) => {
    if (!m) return;
    // Each map is stretched to its own range: the gates sit in a narrow band around 0.5
    // (sigmoid of small numbers), and where they differ is what the map is for.
    let lo = Infinity, hi = -Infinity;
    for (const v of m.data) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    const span = hi - lo || 1;
    const small = document.createElement('canvas');
    small.width = small.height = m.side;
    const d = small.getContext('2d').createImageData(m.side, m.side);
    m.data.forEach((v, i) => d.data.set([...ramp((v - lo) / span), 255], 4 * i));
    small.getContext('2d').putImageData(d, 0, 0);
    const out = document.createElement('canvas');
    out.width = out.height = 96;
    const g = out.getContext('2d');
    g.imageSmoothingEnabled = false;
    g.drawImage(bg, 0, 0, 96, 96);
    g.globalAlpha = 0.55;
    g.imageSmoothingEnabled = true;
    g.drawImage(small, 0, 0, 96, 96);
    const fig = document.createElement('figure');
    fig.append(out);
    const cap = document.createElement('figcaption');
    cap.innerText = `stage ${stage + 1}, ${m.side}x${m.side}\n${lo.toFixed(3)}..${hi.toFixed(3)}`;
    fig.append(cap);
    maps.append(fig);
  });
}

async function run() {
  if (!model || !haveImage) return;
  if (running) { again = true; return; }
  running = true;
  try {
    do {
      again = false;
      const p = pixels();
      const t0 = performance.now();
      const r = await model.infer(new Uint8Array(p.data.buffer), p.width, p.height);
      status(`inference ${(performance.now() - t0).toFixed(0)} ms on ${model.adapter}`);
      showResult(r);
      window.__runs = (window.__runs || 0) + 1; // for tools/screenshot-web.py
      if (testMode) {
        report(JSON.stringify({
          model: modelName, image: imageName,
          logits: Array.from(r.logits), probs: Array.from(r.probs),
          maps: r.maps.map((m) => (m ? Array.from(m.data) : null)),
        }));
      }
    } while (again);
  } catch (e) {
    fail(e);
  } finally {
    running = false;
  }
}

function fail(e) {
  const msg = `error: ${e && e.message ? e.message : e}`;
  status(msg, true);
  if (testMode) report(JSON.stringify({ error: msg }));
}

// Test mode: the result goes into the page and back to the server that served it (the test's
// loopback server waits for it: GPU work does not hold headless Chromium's --dump-dom back).
function report(json) {
  $('result').textContent = json;
  document.title = 'done';
  fetch('result', { method: 'POST', body: json }).catch(() => {});
}

// Occluder: drag a rectangle on the displayed face (display -> source pixels).
function at(ev) {
  const face = $('face');
  const rect = face.getBoundingClientRect();
  return {
    x: (ev.clientX - rect.left) / rect.width * source.width,
    y: (ev.clientY - rect.top) / rect.height * source.height,
  };
}
$('face').addEventListener('mousedown', (ev) => { if (haveImage) drag = at(ev); });
window.addEventListener('mousemove', (ev) => {
  if (!drag) return;
  const p = at(ev);
  occluder = {
    x: Math.round(Math.min(drag.x, p.x)), y: Math.round(Math.min(drag.y, p.y)),
    w: Math.round(Math.abs(p.x - drag.x)), h: Math.round(Math.abs(p.y - drag.y)),
  };
  drawFace();
});
window.addEventListener('mouseup', () => { if (drag) { drag = null; run(); } });
$('clear').onclick = () => { occluder = null; drawFace(); run(); };

$('ckfile').onchange = async (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  try {
    await loadModel(new Uint8Array(await f.arrayBuffer()), f.name);
    await run();
    if (!haveImage) status('model loaded: now choose an image');
  } catch (e) { fail(e); }
};
$('imgfile').onchange = async (ev) => {
  const f = ev.target.files[0];
  if (!f) return;
  try {
    const url = URL.createObjectURL(f);
    await loadImage(url);
    URL.revokeObjectURL(url);
    imageName = f.name;
    trueClass = null;
    $('examples').value = '';
    drawFace();
    if (!model) status('image loaded: now choose a checkpoint');
    await run();
  } catch (e) { fail(e); }
};
$('camera').onclick = async () => {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ video: true });
    $('video').srcObject = stream;
    $('video').style.display = 'block';
    $('snap').disabled = false;
  } catch (e) { fail(e); }
};
$('snap').onclick = () => {
  const v = $('video');
  // A centred square crop: the network sees square faces.
  const s = Math.min(v.videoWidth, v.videoHeight);
  const c = document.createElement('canvas');
  c.width = c.height = s;
  c.getContext('2d').drawImage(v, (v.videoWidth - s) / 2, (v.videoHeight - s) / 2, s, s, 0, 0, s, s);
  setSource(c, s, s);
  imageName = 'webcam frame';
  trueClass = null;
  $('examples').value = '';
  drawFace();
  run();
};
$('examples').onchange = async (ev) => {
  if (ev.target.value === '') return;
  try {
    await useExample(Number(ev.target.value));
    await run();
  } catch (e) { fail(e); }
};

async function main() {
  try {
    await init();
    if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
    const ck = params.get('checkpoint');
    const img = params.get('image');
    manifest = await readManifest();
    const select = $('examples');
    select.add(new Option('(your own image)', ''));
    (manifest ? manifest.faces : []).forEach((f, i) =>
      select.add(new Option(`#${f.index}: ${f.class}`, String(i))));
    if (ck) await loadModel(await fetchBytes(ck), ck);
    else if (manifest) await loadDefaultModel();
    if (img) {
      await loadImage(img);
      imageName = img;
      drawFace();
    } else if (manifest && manifest.faces.length) {
      await useExample(0);
    }
    if (model && haveImage) await run();
    else status('choose a checkpoint and an image (or pass ?checkpoint=URL&image=URL)');
  } catch (e) { fail(e); }
}
main();
