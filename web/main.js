// The page: checkpoint and image in, probabilities and attention maps out. All the numbers come
// from the wasm module (web/src/lib.rs), which runs the library's WGSL kernels on WebGPU.
// Query parameters: ?checkpoint=URL&image=URL load files served beside the page; with &test
// the page runs once, writes {"logits":[...],"probs":[...],"maps":[...]} into <pre id="result">
// and POSTs it to ./result.
import init, { load } from './pkg/fer_cbam_web.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const testMode = params.has('test');

let model = null;
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

async function loadModel(bytes, name) {
  status(`loading ${name}...`);
  model = await load(bytes, name);
  const c = JSON.parse(model.config_json);
  $('ckinfo').textContent = `${name}: ${c.image_size}x${c.image_size}, widths ${c.widths.join('-')}, ` +
    `attention ${c.attention}; adapter ${model.adapter}`;
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
    `<tr><td>${name}</td><td>${p.toFixed(3)}</td>` +
    `<td><div class="bar" style="width:${Math.round(200 * p)}px"></div></td></tr>`).join('');

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
  drawFace();
  run();
};

async function main() {
  try {
    await init();
    if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
    const ck = params.get('checkpoint');
    const img = params.get('image');
    if (ck) await loadModel(await fetchBytes(ck), ck);
    if (img) { await loadImage(img); drawFace(); }
    if (model && haveImage) await run();
    else status('choose a checkpoint and an image (or pass ?checkpoint=URL&image=URL)');
  } catch (e) { fail(e); }
}
main();
