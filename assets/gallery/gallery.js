"use strict";
function decodeMap(map) {
  const bytes = atob(map.q);
  const values = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; ++i) values[i] = bytes.charCodeAt(i) / 255 * map.max;
  return values;
}
function fuseHeads(heads, how) {
  const out = Float32Array.from(heads[0]);
  for (let k = 1; k < heads.length; ++k) {
    for (let i = 0; i < out.length; ++i) {
      if (how === "mean") out[i] += heads[k][i];
      else if (how === "max") out[i] = Math.max(out[i], heads[k][i]);
      else out[i] = Math.min(out[i], heads[k][i]);
    }
  }
  if (how === "mean") for (let i = 0; i < out.length; ++i) out[i] /= heads.length;
  return out;
}
// One token map over the image: token (i, j) covers resized pixels [j*p, (j+1)*p), clipped.
function drawMap(data, image, values, point, caption) {
  const box = document.createElement("div");
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(image, 0, 0);
  let lo = Infinity, hi = -Infinity;
  for (const v of values) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  const [h, w] = data.grid, p = data.patch;
  const [rw, rh] = data.resized;
  const sx = canvas.width / rw, sy = canvas.height / rh;
  ctx.globalAlpha = 0.6;
  for (let i = 0; i < h; ++i) {
    for (let j = 0; j < w; ++j) {
      const t = hi > lo ? (values[i * w + j] - lo) / (hi - lo) : 0;
      const [r, g, b] = TURBO[Math.round(t * 255)];
      ctx.fillStyle = "rgb(" + r + "," + g + "," + b + ")";
      const x0 = Math.round(j * p * sx), x1 = Math.round(Math.min((j + 1) * p, rw) * sx);
      const y0 = Math.round(i * p * sy), y1 = Math.round(Math.min((i + 1) * p, rh) * sy);
      ctx.fillRect(x0, y0, x1 - x0, y1 - y0);
    }
  }
  ctx.globalAlpha = 1;
  // Rows of no point (the CLS token, all tokens, learned queries) mark nothing.
  if (Array.isArray(point) && point.length === 2) {
    const x = point[0] * canvas.width / data.size[0], y = point[1] * canvas.height / data.size[1];
    ctx.lineWidth = 3; ctx.strokeStyle = "black";
    ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    ctx.lineWidth = 1; ctx.strokeStyle = "white";
    ctx.beginPath(); ctx.arc(x, y, 7, 0, 2 * Math.PI); ctx.stroke();
    box.dataset.marked = "1";
  }
  box.textContent = caption;
  box.appendChild(canvas);
  return box;
}
function option(select, value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text;
  select.appendChild(o);
}
function setupExplorer() {
  const data = JSON.parse(document.getElementById("maps").textContent);
  const image = document.getElementById("explorer-image");
  const kind = document.getElementById("kind"), layer = document.getElementById("layer");
  const head = document.getElementById("head"), point = document.getElementById("point");
  const view = document.getElementById("explorer-view");
  const kinds = [...new Set(data.modules.map(m => m.kind))];
  if (data.rollout.length) kinds.push("rollout");
  kinds.forEach(k => option(kind, k, k));
  function fillLayers() {
    layer.innerHTML = "";
    data.modules.filter(m => m.kind === kind.value).forEach(m => option(layer, m.name, "layer " + m.layer));
    layer.parentElement.classList.toggle("hidden", kind.value === "rollout");
    head.parentElement.classList.toggle("hidden", kind.value === "rollout");
  }
  function current() { return data.modules.find(m => m.name === layer.value); }
  function fillHeads() {
    const keep = head.value;
    head.innerHTML = "";
    ["mean", "max", "min"].forEach(f => option(head, "fused:" + f, "heads fused: " + f));
    option(head, "all", "every head (montage)");
    const module = current();
    if (module) module.rows[0].heads.forEach((_, k) => option(head, "head:" + k, "head " + k));
    head.value = [...head.options].some(o => o.value === keep) ? keep : "fused:" + data.fusion;
  }
  function fillPoints() {
    const keep = point.value;
    point.innerHTML = "";
    const rows = kind.value === "rollout" ? data.rollout : current().rows;
    rows.forEach((r, i) => option(point, i, r.label));
    point.value = keep !== "" && Number(keep) < rows.length ? keep : "0";
  }
  function render() {
    view.innerHTML = "";
    if (kind.value === "rollout") {
      const row = data.rollout[point.value];
      view.appendChild(drawMap(data, image, decodeMap(row.map), row.point, "rollout: " + row.label));
    } else {
      const module = current(), row = module.rows[point.value];
      const heads = row.heads.map(decodeMap);
      const [mode, arg] = head.value.split(":");
      if (mode === "fused") {
        view.appendChild(drawMap(data, image, fuseHeads(heads, arg), row.point, module.name + ", " + row.label + ", " + arg + " of heads"));
      } else if (mode === "head") {
        view.appendChild(drawMap(data, image, heads[arg], row.point, module.name + ", " + row.label + ", head " + arg));
      } else {
        view.appendChild(drawMap(data, image, fuseHeads(heads, data.fusion), row.point, row.label + ", " + data.fusion + " of heads"));
        heads.forEach((h, k) => view.appendChild(drawMap(data, image, h, row.point, row.label + ", head " + k)));
      }
    }
    document.body.dataset.rendered = view.querySelectorAll("canvas").length;
    document.body.dataset.marked = view.querySelectorAll("[data-marked]").length;
  }
  kind.onchange = () => { fillLayers(); fillHeads(); fillPoints(); render(); };
  layer.onchange = () => { fillHeads(); fillPoints(); render(); };
  head.onchange = render;
  point.onchange = render;
  kind.value = kinds[0];
  fillLayers(); fillHeads(); fillPoints(); render();
}
function setupIndex() {
  const filter = document.getElementById("filter");
  const cards = [...document.querySelectorAll(".card")];
  filter.oninput = () => {
    const text = filter.value.toLowerCase();
    cards.forEach(c => c.classList.toggle("hidden", !c.dataset.search.includes(text)));
  };
  document.body.dataset.rendered = cards.length;
}
window.addEventListener("load", () => {
  if (document.getElementById("maps")) setupExplorer();
  else if (document.getElementById("filter")) setupIndex();
});
