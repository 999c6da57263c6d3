"""``html``: ``report.html``, one self-contained file a clinician opens offline (no server, no CDN, no script
from elsewhere): the run's model and recording, the areas-over-time plot, a strip of frame thumbnails, the
selected frame's image and overlay with a toggle per class and an opacity slider, the legend, the unknown and
invalid shares, and every failure and warning.

Each frame is embedded as two data URIs: the RGB image as JPEG (quality 85) and its label map as a lossless
PNG (grey value = code + 3, so invalid = 1, unknown = 2, leaf k = k + 3; with more than 252 leaves an RGB PNG
holding code + 3 as red + 256 x green, so any tree size works); the page colours the labels itself
with the run's palette, so the class toggles and the opacity act on the real map. At most ``MAX_FRAMES``
frames are embedded, evenly spaced; the report says how many of how many.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from hsiseg.areas import area_name
from hsiseg.export.base import EXPORTERS
from hsiseg.export.maps import StreamMaps, frame_label
from hsiseg.io.atomic import atomic_path
from hsiseg.labels import INVALID, UNKNOWN
from hsiseg.render.overlay import node_colours

MAX_FRAMES = 300
LABEL_OFFSET = 3  # grey value of a code in the embedded label PNG: code + 3 (invalid -2 -> 1, unknown -1 -> 2)


@EXPORTERS.register("html", needs=("areas",), files=("report.html",))
def write_html(maps: StreamMaps, output: Path) -> Path:
    slots = _chosen(maps)
    wide = maps.tree.num_leaves + LABEL_OFFSET > 255  # codes need two bytes
    frames = []
    with_slots = {int(s) for s in slots}
    for slot, frame, stamp, image, labels in maps.iterate():
        if slot in with_slots:
            frames.append({"name": frame_label(frame, stamp), "frame": frame, "image": _jpeg(image),
                           "labels": _png(_label_image(labels, wide))})  # fmt: skip
    classes = _classes(maps)
    page = TEMPLATE.format(
        title=html.escape(Path(maps.recording or maps.path).name),
        summary=_summary(maps, len(frames)),
        areas=_areas_image(output),
        messages=_messages(maps),
        data=script_json({"frames": frames, "classes": classes, "offset": LABEL_OFFSET, "wide": wide}),
    )
    path = output / "report.html"
    with atomic_path(path) as temporary:
        temporary.write_text(page, encoding="utf-8")
    return path


def script_json(data: object) -> str:
    """JSON safe inside an HTML ``<script>`` block whatever the strings hold (class names are data, never
    markup): ``<``, ``>`` and ``&`` as JSON escapes, so no ``</script>`` or ``<!--`` can end or bend the block."""
    text = json.dumps(data)  # ensure_ascii: U+2028 / U+2029 are escaped already
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _label_image(labels: np.ndarray, wide: bool) -> np.ndarray:
    """(H, W) codes -> the embedded label image: grey code + 3 (uint8), or (H, W, 3) red + 256 x green."""
    values = labels.astype(np.int32) + LABEL_OFFSET
    if not wide:
        return values.astype(np.uint8)
    return np.stack([values & 255, values >> 8, np.zeros_like(values)], axis=-1).astype(np.uint8)


def _chosen(maps: StreamMaps) -> np.ndarray:
    slots = maps.slots
    if len(slots) <= MAX_FRAMES:
        return slots
    return slots[np.unique(np.linspace(0, len(slots) - 1, MAX_FRAMES).round().astype(int))]


def _jpeg(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _classes(maps: StreamMaps) -> list[dict]:
    """Legend entries: code, name, colour (CSS), share of all pixels of the run, in order of area."""
    colours = node_colours(maps.tree)
    totals = maps.pixels.sum(axis=0)
    entries = []
    for code in maps.present_codes():
        colour = {UNKNOWN: "pattern-unknown", INVALID: "pattern-invalid"}.get(code)
        rgb = colours[code] if code >= 0 else np.zeros(3)
        entries.append({"code": code, "name": area_name(maps.tree, code, legend=True), "pattern": colour,
                        "rgb": [int(round(255 * v)) for v in rgb],
                        "share": float(totals[code + 2] / max(1, totals.sum()))})  # fmt: skip
    return entries


def _summary(maps: StreamMaps, embedded: int) -> str:
    totals = maps.pixels.sum(axis=0)
    unknown, invalid = (totals[code + 2] / max(1, totals.sum()) for code in (UNKNOWN, INVALID))
    rows = {
        "recording": maps.recording,
        "frames predicted": f"{len(maps.slots)} of {maps.selected} selected ({embedded} shown here)",
        "model (SHA-256)": maps.model_sha256[:16] + "...",
        "classes the model knows": ", ".join(maps.tree.leaves),
        "unknown-tissue score": maps.ood_score or "none calibrated",
        "what the unknown map promises": maps.ood_promise or "(not recorded)",
        "unknown / invalid pixels": f"{unknown:.1%} / {invalid:.1%}",
        **_acquisition(maps),
    }
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items())


def _acquisition(maps: StreamMaps) -> dict[str, str]:
    """Ranges of what the recorder wrote per frame (exposure, temperatures) over the predicted frames."""
    rows = {}
    for name, values in maps.per_frame().items():
        known = values[np.isfinite(values)]
        if known.size and name != "acq_nframe":
            label = "exposure (us)" if name == "exposure_us" else f"{name.replace('_', ' ')} (degrees)"
            rows[label] = f"{known.min():g}" if known.min() == known.max() else f"{known.min():g} to {known.max():g}"
    return rows


def _areas_image(output: Path) -> str:
    path = output / "areas.png"
    if not path.is_file():
        return "<p>(run the areas export for the plot)</p>"
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="tissue areas over time" src="data:image/png;base64,{encoded}">'


def _messages(maps: StreamMaps) -> str:
    items = [f"<li>recording: {html.escape(note)}</li>" for note in maps.notes]
    items += [f"<li class=failure>frame {k}: {html.escape('; '.join(v))}</li>" for k, v in
             sorted(maps.messages("failures").items())]  # fmt: skip
    items += [f"<li>frame {k}: {html.escape('; '.join(v))}</li>" for k, v in sorted(maps.messages("warnings").items())]
    return f"<ul>{''.join(items)}</ul>" if items else "<p>none</p>"


TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hsiseg report: {title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} th {{ text-align: left; padding-right: 1em; }}
#strip {{ display: flex; overflow-x: auto; gap: 4px; padding: 4px 0; }}
#strip img {{ height: 56px; cursor: pointer; border: 2px solid transparent; image-rendering: pixelated; }}
#strip img.selected {{ border-color: #d33; }}
#views canvas {{ image-rendering: pixelated; width: 45%; margin-right: 1%; border: 1px solid #ccc; }}
#legend label {{ display: block; margin: 2px 0; }} .swatch {{ display: inline-block; width: 22px; height: 14px;
  border: 1px solid #000; vertical-align: middle; margin-right: 6px; }}
.pattern-unknown {{ background: repeating-linear-gradient(45deg, #000 0 3px, #fff 3px 6px); }}
.pattern-invalid {{ background: repeating-conic-gradient(#595959 0 25%, #a6a6a6 0 50%) 0 0 / 8px 8px; }}
li.failure {{ color: #b00; }}
</style></head><body>
<h1>hsiseg report: {title}</h1>
<table>{summary}</table>
<h2>Tissue areas over time</h2>{areas}
<h2>Frames</h2><div id="strip"></div>
<p><b id="name"></b> &nbsp; opacity <input id="opacity" type="range" min="0" max="1" step="0.05" value="0.5"></p>
<div id="views"><canvas id="image"></canvas><canvas id="overlay"></canvas></div>
<h2>Legend</h2><div id="legend"></div>
<h2>Failures and warnings</h2>{messages}
<script id="report-data" type="application/json">{data}</script>
<script>
const data = JSON.parse(document.getElementById("report-data").textContent);
const shown = new Set(data.classes.map(c => c.code));
let current = 0;
const stripes = (x, y) => (((x + y) >> 1) & 1) ? 255 : 0;
const checker = (x, y) => ((((x >> 2) + (y >> 2)) & 1) ? 166 : 89);
function load(source) {{
  return new Promise(resolve => {{
    const image = new Image(); image.onload = () => resolve(image); image.src = source;
  }});
}}
async function draw() {{
  const frame = data.frames[current];
  document.getElementById("name").textContent = frame.name;
  const [picture, labels] = await Promise.all([load(frame.image), load(frame.labels)]);
  for (const id of ["image", "overlay"]) {{
    const canvas = document.getElementById(id);
    canvas.width = picture.width; canvas.height = picture.height;
    canvas.getContext("2d").drawImage(picture, 0, 0);
  }}
  const scratch = document.createElement("canvas");
  scratch.width = labels.width; scratch.height = labels.height;
  const context = scratch.getContext("2d"); context.drawImage(labels, 0, 0);
  const codes = context.getImageData(0, 0, labels.width, labels.height).data;
  const target = document.getElementById("overlay").getContext("2d");
  const pixels = target.getImageData(0, 0, picture.width, picture.height);
  const alpha = parseFloat(document.getElementById("opacity").value);
  const colours = new Map(data.classes.map(c => [c.code, c.rgb]));
  for (let i = 0; i < codes.length; i += 4) {{
    const code = codes[i] + (data.wide ? 256 * codes[i + 1] : 0) - data.offset;
    if (!shown.has(code)) continue;
    const x = (i / 4) % picture.width, y = Math.floor(i / 4 / picture.width);
    const rgb = code === -1 ? Array(3).fill(stripes(x, y))
      : code === -2 ? Array(3).fill(checker(x, y)) : colours.get(code);
    for (let c = 0; c < 3; c++) pixels.data[i + c] = (1 - alpha) * pixels.data[i + c] + alpha * rgb[c];
  }}
  target.putImageData(pixels, 0, 0);
  document.querySelectorAll("#strip img").forEach((img, k) => img.classList.toggle("selected", k === current));
}}
const strip = document.getElementById("strip");
data.frames.forEach((frame, k) => {{
  const thumb = document.createElement("img"); thumb.src = frame.image; thumb.title = frame.name;
  thumb.onclick = () => {{ current = k; draw(); }}; strip.appendChild(thumb);
}});
const legend = document.getElementById("legend");
for (const entry of data.classes) {{
  const label = document.createElement("label");
  const box = document.createElement("input"); box.type = "checkbox"; box.checked = true; box.dataset.code = entry.code;
  box.onchange = () => {{ box.checked ? shown.add(entry.code) : shown.delete(entry.code); draw(); }};
  const swatch = document.createElement("span"); swatch.className = "swatch " + (entry.pattern || "");
  if (!entry.pattern) swatch.style.background = `rgb(${{entry.rgb.join(",")}})`;
  label.append(box, swatch, `${{entry.name}} (${{(100 * entry.share).toFixed(1)}}%)`);
  legend.appendChild(label);
}}
document.getElementById("opacity").oninput = draw;
draw();
</script></body></html>
"""
