"use strict";
// hsiseg annotate: the page. Names from trees and files are set with textContent only, never as markup.
(() => {
  const token = new URLSearchParams(location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  const UNLABELLED = -100, UNKNOWN = -1, INVALID = -2;
  const state = {
    nodes: [], colours: {}, names: {}, leaves: 0, samples: [], index: 0, layer: null, selected: null,
    zoom: 1, panX: 0, panY: 0, drawing: null, polygon: [], hidden: new Set(), modelVersion: 0, mapShown: -1,
    classSpectra: {}, spectrum: null, hiddenLayers: new Set(), spectrumBusy: false, lastMap: null, mapClasses: {},
  };

  async function api(path, options = {}) {
    const headers = Object.assign({"X-Hsiseg-Token": token}, options.body ? {"Content-Type": "application/json"} : {});
    const response = await fetch(path, Object.assign({}, options, {headers}));
    if (!response.ok) {
      let message = response.statusText;
      try { message = (await response.json()).error; } catch (error) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }
  const post = (path, body) => api(path, {method: "POST", body: JSON.stringify(body || {})});
  function toast(message) {
    const box = $("toast");
    box.textContent = message;
    box.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { box.hidden = true; }, 6000);
  }

  // --- palette ------------------------------------------------------------------------------------------------
  function buildPalette() {
    const lists = {null: $("palette")};
    for (const node of state.nodes) {
      const item = document.createElement("li");
      const row = document.createElement("div");
      row.className = "node" + (node.leaf ? "" : " internal");
      row.dataset.code = node.code;
      row.title = node.leaf ? "leaf" : "internal node: a partial label";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = node.colour;
      const name = document.createElement("span");
      name.textContent = node.name;
      row.append(swatch, name);
      row.addEventListener("click", () => select(node.code));
      item.append(row);
      const children = document.createElement("ul");
      item.append(children);
      lists[node.code] = children;
      (lists[node.parent] || $("palette")).append(item);
    }
    const firstLeaf = state.nodes.find((n) => n.leaf);
    if (firstLeaf) select(firstLeaf.code);
  }
  function select(code) {
    state.selected = code;
    for (const row of document.querySelectorAll(".node")) row.classList.toggle("selected", Number(row.dataset.code) === code);
  }

  // --- images and layers --------------------------------------------------------------------------------------
  async function openSample(index) {
    state.index = index;
    $("sample").value = String(index);
    state.polygon = [];
    const layer = await (await api(`/api/samples/${index}/layer`)).json();
    state.layer = layer;
    for (const id of ["image-canvas", "map-canvas", "strokes-canvas", "suggest-canvas", "draft-canvas"]) {
      $(id).width = layer.width;
      $(id).height = layer.height;
    }
    $("band").max = String(layer.bands - 1);
    showLayerInfo();
    buildLayerList();
    fitView();
    await Promise.all([loadImage(), loadStrokes()]);
    state.mapShown = -1;
    clearCanvas("map-canvas");
    clearSuggestions();
    await loadMap();
  }
  async function loadImage() {
    const band = $("view-mode").value === "band" ? `?band=${$("band").value}` : "";
    $("band-label").textContent = band ? `band ${$("band").value}` : "";
    const blob = await (await api(`/api/samples/${state.index}/image${band}`)).blob();
    const bitmap = await createImageBitmap(blob);
    $("image-canvas").getContext("2d").drawImage(bitmap, 0, 0);
  }
  async function loadStrokes() {
    // every visible layer, the others first and the own layer (0) on top
    const count = 1 + state.layer.others.length;
    const codes = new Int16Array(state.layer.width * state.layer.height).fill(UNLABELLED);
    for (let layer = count - 1; layer >= 0; layer--) {
      if (state.hiddenLayers.has(layer)) continue;
      const part = new Int16Array(await (await api(`/api/samples/${state.index}/codes?layer=${layer}`)).arrayBuffer());
      for (let i = 0; i < part.length; i++) if (part[i] !== UNLABELLED) codes[i] = part[i];
    }
    paint("strokes-canvas", codes, (code) => (code === UNLABELLED ? null : [...state.colours[code], 255]));
  }
  function buildLayerList() {
    const list = $("layers");
    list.replaceChildren();
    const names = [`${state.layer.file.split("/").pop().replace(/\.png$/, "")} (you)`, ...state.layer.others];
    names.forEach((name, layer) => {
      const label = document.createElement("label");
      const toggle = document.createElement("input");
      toggle.type = "checkbox";
      toggle.checked = !state.hiddenLayers.has(layer);
      toggle.dataset.layer = String(layer);
      toggle.addEventListener("change", () => {
        if (toggle.checked) state.hiddenLayers.delete(layer); else state.hiddenLayers.add(layer);
        loadStrokes();
      });
      label.append(toggle, " " + name + (layer ? " (read-only)" : ""));
      list.append(label);
    });
  }
  function showLayerInfo() {
    const layer = state.layer;
    $("layer-info").textContent = `your layer: ${layer.file} (version ${layer.version})`;
    $("undo").disabled = !layer.can_undo;
    $("redo").disabled = !layer.can_redo;
  }
  function paint(canvasId, codes, colourOf) {
    const canvas = $(canvasId);
    const context = canvas.getContext("2d");
    const image = context.createImageData(canvas.width, canvas.height);
    const cache = new Map();
    for (let i = 0; i < codes.length; i++) {
      const code = codes[i];
      let colour = cache.get(code);
      if (colour === undefined) { colour = colourOf(code, i); if (code !== UNKNOWN) cache.set(code, colour); }
      if (code === UNKNOWN) colour = colourOf(code, i);
      if (colour) image.data.set(colour, i * 4);
    }
    context.putImageData(image, 0, 0);
  }
  function clearCanvas(id) { const c = $(id); c.getContext("2d").clearRect(0, 0, c.width, c.height); }

  // --- the live model's map -----------------------------------------------------------------------------------
  async function loadMap() {
    const response = await api(`/api/samples/${state.index}/map`);
    if (response.status === 204) return;
    const version = Number(response.headers.get("X-Model-Version"));
    state.mapClasses = JSON.parse(response.headers.get("X-Classes") || "{}");
    state.unknownShare = Number(response.headers.get("X-Unknown-Share"));
    state.lastMap = new Int16Array(await response.arrayBuffer());
    state.mapShown = version;
    drawMap();
    drawLegend();
  }
  function drawMap() {
    if (!state.lastMap) return;
    const width = state.layer.width;
    paint("map-canvas", state.lastMap, (code, i) => {
      if (code === INVALID) return [0, 0, 0, 200];
      if (code === UNKNOWN) { const x = i % width, y = (i - x) / width; return (x + y) % 6 < 2 ? [255, 255, 255, 255] : [60, 60, 60, 160]; }
      if (state.hidden.has(code)) return null;
      return [...state.colours[code], 255];
    });
  }
  function drawLegend() {
    const body = document.querySelector("#legend tbody");
    body.replaceChildren();
    const rows = Object.entries(state.mapClasses).sort((a, b) => b[1][0] - a[1][0]);
    for (const [code, [share, confidence]] of rows) {
      const row = document.createElement("tr");
      const toggle = document.createElement("input");
      toggle.type = "checkbox";
      toggle.checked = !state.hidden.has(Number(code));
      toggle.title = "show this class on the map";
      toggle.dataset.code = code;
      toggle.addEventListener("change", () => {
        if (toggle.checked) state.hidden.delete(Number(code)); else state.hidden.add(Number(code));
        drawMap();
      });
      const name = document.createElement("td");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.display = "inline-block";
      swatch.style.background = `rgb(${state.colours[code].join(",")})`;
      name.append(swatch, " " + state.names[code]);
      const cells = [toggle, null, `${(100 * share).toFixed(1)}%`, confidence.toFixed(2)].map((content) => {
        const cell = document.createElement("td");
        if (content instanceof Node) cell.append(content); else if (content) cell.textContent = content;
        return cell;
      });
      cells[1] = name;
      row.append(...cells);
      body.append(row);
    }
    const unknown = document.createElement("tr");
    const cell = document.createElement("td");
    cell.colSpan = 4;
    cell.textContent = `unknown tissue (hatched): ${(100 * (state.unknownShare || 0)).toFixed(1)}%`;
    unknown.append(cell);
    body.append(unknown);
  }
  async function pollStatus() {
    try {
      const status = await (await api("/api/status")).json();
      $("status").textContent = `${status.state}${status.message ? ": " + status.message : ""}`;
      $("progress").value = status.steps ? status.step / status.steps : 0;
      const heldOut = status.held_out || {};
      $("held-out").textContent = heldOut.pixels ? `held-out strokes: mean leaf Dice ${heldOut.mean_dice.toFixed(3)}, ` +
        `leaf accuracy ${heldOut.leaf_accuracy.toFixed(3)} on ${heldOut.pixels} px; unknown calibrated on ${status.calibrated_on}; ` +
        `${status.seconds} s` : (status.model_version ? "no stroke held out yet: draw two strokes of a class to score it" : "");
      $("final-status").textContent = status.final_state ? `final model: ${status.final_state} ${status.final_message}` : "";
      if (status.model_version !== state.mapShown && status.model_version > 0) await loadMap();
    } catch (error) { $("status").textContent = error.message; }
    setTimeout(pollStatus, 500);
  }

  // --- where to draw next -----------------------------------------------------------------------------------
  function clearSuggestions() { clearCanvas("suggest-canvas"); $("suggestions").replaceChildren(); }
  async function showSuggestions() {
    const response = await api(`/api/samples/${state.index}/suggestions?count=5`);
    clearSuggestions();
    if (response.status === 204) { toast("no model yet: draw strokes of every class first"); return; }
    const found = await response.json();
    const context = $("suggest-canvas").getContext("2d");
    context.strokeStyle = "#ffeb3b";
    context.lineWidth = Math.max(1, 2 / state.zoom);
    context.font = `${Math.max(8, Math.round(12 / state.zoom))}px sans-serif`;
    for (const suggestion of found) {
      for (const polygon of suggestion.outline) {
        context.beginPath();
        polygon.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
        context.closePath();
        context.stroke();
      }
      context.fillStyle = "#ffeb3b";
      context.fillText(String(suggestion.rank), suggestion.centre[0], suggestion.centre[1]);
      const item = document.createElement("li");
      item.append(`${suggestion.reasons.join("; ")}. Label: `);
      for (const name of suggestion.accept) {
        const button = document.createElement("button");
        button.textContent = name;
        button.title = "select this label in the palette";
        const node = state.nodes.find((n) => n.name === name);
        button.addEventListener("click", () => node && select(node.code));
        item.append(button);
      }
      const none = document.createElement("button");
      none.textContent = "no class here";
      none.className = "decline";
      none.title = "none of the tree's classes is in this region: do not suggest it again";
      none.addEventListener("click", () => post(`/api/samples/${state.index}/suggestions/${suggestion.rank}/decline`)
        .then(showSuggestions).catch((error) => toast(error.message)));
      item.append(" or ", none);
      $("suggestions").append(item);
    }
  }

  // --- view: zoom and pan -------------------------------------------------------------------------------------
  function fitView() {
    const viewport = $("viewport").getBoundingClientRect();
    state.zoom = Math.max(0.05, Math.min(viewport.width / state.layer.width, viewport.height / state.layer.height));
    state.panX = (viewport.width - state.layer.width * state.zoom) / 2;
    state.panY = (viewport.height - state.layer.height * state.zoom) / 2;
    applyView();
  }
  function applyView() { $("stage").style.transform = `translate(${state.panX}px, ${state.panY}px) scale(${state.zoom})`; }
  function toImage(event) {
    const box = $("viewport").getBoundingClientRect();
    return [(event.clientX - box.left - state.panX) / state.zoom, (event.clientY - box.top - state.panY) / state.zoom];
  }

  // --- drawing ------------------------------------------------------------------------------------------------
  const tool = () => (state.spaceDown ? "pan" : document.querySelector("input[name=tool]:checked").value);
  function drawDraft() {
    const canvas = $("draft-canvas");
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    const points = state.drawing ? state.drawing.points : state.polygon;
    if (!points.length) return;
    const colour = state.drawing && state.drawing.tool === "eraser" ? "rgba(255,255,255,0.8)" : `rgb(${state.colours[state.selected].join(",")})`;
    context.strokeStyle = colour;
    context.fillStyle = colour;
    context.lineCap = context.lineJoin = "round";
    context.lineWidth = state.drawing ? Number($("size").value) : 1 / state.zoom;
    context.beginPath();
    points.forEach(([x, y], i) => (i ? context.lineTo(x + 0.5, y + 0.5) : context.moveTo(x + 0.5, y + 0.5)));
    if (!state.drawing) for (const [x, y] of points) context.fillRect(x, y, 1, 1);
    context.stroke();
  }
  async function send(edit) {
    try {
      const body = Object.assign({version: state.layer.version, label: state.selected === null ? null : state.names[state.selected],
        width: Number($("size").value)}, edit);
      state.layer = await (await post(`/api/samples/${state.index}/strokes`, body)).json();
      showLayerInfo();
      await loadStrokes();
      clearSuggestions();
      refreshClassSpectra();
    } catch (error) { toast(error.message); await openSample(state.index); }
    finally { state.drawing = null; state.polygon = []; drawDraft(); }
  }
  async function history(which) {
    try {
      state.layer = await (await post(`/api/samples/${state.index}/${which}`, {version: state.layer.version})).json();
      showLayerInfo();
      await loadStrokes();
    } catch (error) { toast(error.message); }
  }
  function pointerDown(event) {
    const viewport = $("viewport");
    viewport.setPointerCapture(event.pointerId);
    if (event.button === 1 || tool() === "pan") { state.panning = [event.clientX - state.panX, event.clientY - state.panY]; return; }
    if (event.button !== 0) return;
    const [x, y] = toImage(event).map(Math.floor);
    if (tool() === "polygon") { state.polygon.push([x, y]); drawDraft(); return; }
    state.drawing = {tool: tool(), points: [[x, y]]};
    drawDraft();
  }
  function pointerMove(event) {
    if (state.panning) { state.panX = event.clientX - state.panning[0]; state.panY = event.clientY - state.panning[1]; applyView(); return; }
    const [x, y] = toImage(event).map(Math.floor);
    if (state.drawing) {
      const last = state.drawing.points[state.drawing.points.length - 1];
      if (last[0] !== x || last[1] !== y) { state.drawing.points.push([x, y]); drawDraft(); }
    }
    showSpectrum(x, y);
  }
  function pointerUp() {
    if (state.panning) { state.panning = null; return; }
    if (state.drawing) send({tool: state.drawing.tool, points: state.drawing.points});
  }
  function closePolygon() {
    if (state.polygon.length >= 3) send({tool: "polygon", points: state.polygon}); else { state.polygon = []; drawDraft(); }
  }
  function wheel(event) {
    event.preventDefault();
    const box = $("viewport").getBoundingClientRect();
    const factor = Math.exp(-event.deltaY * 0.0015);
    const zoom = Math.min(64, Math.max(0.05, state.zoom * factor));
    const mx = event.clientX - box.left, my = event.clientY - box.top;
    state.panX = mx - ((mx - state.panX) * zoom) / state.zoom;
    state.panY = my - ((my - state.panY) * zoom) / state.zoom;
    state.zoom = zoom;
    applyView();
  }

  // --- spectra ------------------------------------------------------------------------------------------------
  async function showSpectrum(x, y) {
    if (!state.layer || x < 0 || y < 0 || x >= state.layer.width || y >= state.layer.height) return;
    const code = state.lastMap ? state.lastMap[y * state.layer.width + x] : null;
    const label = code === null ? "" : code === UNKNOWN ? " · map: unknown tissue" : code === INVALID ? " · no usable spectrum" : ` · map: ${state.names[code]}`;
    $("cursor").textContent = `pixel (${x}, ${y})${label}`;
    if (state.spectrumBusy) { state.spectrumNext = [x, y]; return; }
    state.spectrumBusy = true;
    try { state.spectrum = await (await api(`/api/samples/${state.index}/spectrum?x=${x}&y=${y}`)).json(); drawSpectra(); }
    catch (error) { /* outside the image while moving */ }
    state.spectrumBusy = false;
    if (state.spectrumNext) { const [nx, ny] = state.spectrumNext; state.spectrumNext = null; showSpectrum(nx, ny); }
  }
  async function refreshClassSpectra() {
    try { state.classSpectra = await (await api("/api/class-spectra")).json(); drawSpectra(); } catch (error) { /* next time */ }
  }
  function drawSpectra() {
    const canvas = $("spectrum");
    const context = canvas.getContext("2d");
    context.clearRect(0, 0, canvas.width, canvas.height);
    if (!state.spectrum) return;
    const wavelengths = state.spectrum.wavelengths;
    const curves = Object.entries(state.classSpectra).map(([name, values]) => [name, values]);
    const all = curves.flatMap(([, v]) => v).concat(state.spectrum.values);
    const high = Math.max(...all, 1e-9), low = Math.min(0, ...all);
    const x = (i) => 30 + (i / Math.max(1, wavelengths.length - 1)) * (canvas.width - 40);
    const y = (v) => canvas.height - 20 - ((v - low) / (high - low)) * (canvas.height - 30);
    const line = (values, colour, width) => {
      context.strokeStyle = colour; context.lineWidth = width; context.beginPath();
      values.forEach((v, i) => (i ? context.lineTo(x(i), y(v)) : context.moveTo(x(i), y(v)))); context.stroke();
    };
    const codeOf = Object.fromEntries(state.nodes.map((n) => [n.name, n.code]));
    for (const [name, values] of curves) line(values, `rgb(${state.colours[codeOf[name]].join(",")})`, 1.5);
    line(state.spectrum.values, "#000", 2.5);
    context.fillStyle = "#444";
    context.fillText(`${Math.round(wavelengths[0])} nm`, 28, canvas.height - 5);
    context.fillText(`${Math.round(wavelengths[wavelengths.length - 1])} nm`, canvas.width - 55, canvas.height - 5);
  }

  // --- start --------------------------------------------------------------------------------------------------
  async function start() {
    const info = await (await api("/api/session")).json();
    $("spec-name").textContent = `${info.spec} · annotator ${info.annotator}`;
    state.nodes = info.nodes;
    state.leaves = info.leaves;
    for (const node of info.nodes) {
      const hex = node.colour;
      state.colours[node.code] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
      state.names[node.code] = node.name;
    }
    state.samples = info.samples;
    for (const sample of info.samples) {
      const option = document.createElement("option");
      option.value = String(sample.index);
      option.textContent = `${sample.id} (${sample.subject})`;
      $("sample").append(option);
    }
    buildPalette();
    const viewport = $("viewport");
    viewport.addEventListener("pointerdown", pointerDown);
    viewport.addEventListener("pointermove", pointerMove);
    viewport.addEventListener("pointerup", pointerUp);
    viewport.addEventListener("dblclick", closePolygon);
    viewport.addEventListener("wheel", wheel, {passive: false});
    $("sample").addEventListener("change", () => openSample(Number($("sample").value)));
    $("previous").addEventListener("click", () => openSample((state.index + state.samples.length - 1) % state.samples.length));
    $("next").addEventListener("click", () => openSample((state.index + 1) % state.samples.length));
    $("view-mode").addEventListener("change", () => { $("band").hidden = $("view-mode").value !== "band"; loadImage(); });
    $("band").addEventListener("change", loadImage);
    $("size").addEventListener("input", () => { $("size-label").textContent = `${$("size").value} px`; });
    $("undo").addEventListener("click", () => history("undo"));
    $("redo").addEventListener("click", () => history("redo"));
    $("update").addEventListener("click", () => post("/api/update").catch((error) => toast(error.message)));
    $("suggest").addEventListener("click", () => showSuggestions().catch((error) => toast(error.message)));
    $("final").addEventListener("click", () => post("/api/final").catch((error) => toast(error.message)));
    $("show-map").addEventListener("change", () => { $("map-canvas").hidden = !$("show-map").checked; });
    $("show-strokes").addEventListener("change", () => { $("strokes-canvas").hidden = !$("show-strokes").checked; });
    $("opacity").addEventListener("input", () => { $("map-canvas").style.opacity = $("opacity").value / 100; });
    $("map-canvas").style.opacity = 0.55;
    document.addEventListener("keydown", (event) => {
      if (event.target.tagName === "INPUT" && event.target.type !== "radio") return;
      const key = event.key.toLowerCase();
      if ((event.ctrlKey || event.metaKey) && key === "z") { event.preventDefault(); history(event.shiftKey ? "redo" : "undo"); }
      else if ((event.ctrlKey || event.metaKey) && key === "y") { event.preventDefault(); history("redo"); }
      else if (key === " ") { state.spaceDown = true; event.preventDefault(); }
      else if (key === "enter") closePolygon();
      else if (key === "escape") { state.polygon = []; drawDraft(); }
      else if ("bep".includes(key) && key) document.querySelector(`input[name=tool][value=${{b: "brush", e: "eraser", p: "polygon"}[key]}]`).checked = true;
    });
    document.addEventListener("keyup", (event) => { if (event.key === " ") state.spaceDown = false; });
    window.addEventListener("resize", fitView);
    await openSample(0);
    refreshClassSpectra();
    pollStatus();
    document.body.dataset.ready = "1";
  }
  start().catch((error) => toast(error.message));
})();
