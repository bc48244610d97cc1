import { withKey } from "./api.js";

// Shows its work and takes corrections: what restore-photo repaired (damage-mask.png, white =
// repaired) tinted over the before/after view, and a brush to paint damage it missed. The painting
// is kept twice: tinted on screen, and white on black at the photo's own size, which is what is sent.
const TINT = [235, 25, 25, 150]; // red, about 60% opaque, where the mask is white
const STROKE = "#00c8ff"; // the on-screen brush; its canvas is drawn half transparent (style.css)

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("The damage mask could not be loaded."));
    image.src = url;
  });
}

// Draws the grey mask at `url` into `canvas` as a red tint, transparent where nothing was repaired.
export async function drawDamageOverlay(canvas, url) {
  const image = await loadImage(url);
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(image, 0, 0);
  const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const d = pixels.data;
  for (let i = 0; i < d.length; i += 4) {
    const repaired = d[i] > 127;
    d[i] = TINT[0]; d[i + 1] = TINT[1]; d[i + 2] = TINT[2]; d[i + 3] = repaired ? TINT[3] : 0;
  }
  ctx.putImageData(pixels, 0, 0);
}

// A brush on `visible` (a canvas laid over the photo). Sizes are in screen pixels; strokes land in
// photo pixels. `onChange(painted)` says whether there is anything to send.
export class Painter {
  constructor(visible, onChange) {
    this.visible = visible;
    this.mask = document.createElement("canvas");
    this.onChange = onChange;
    this.brush = 12;
    this.last = null;
    this.painted = false;
    visible.addEventListener("pointerdown", (e) => this.down(e));
    visible.addEventListener("pointermove", (e) => this.move(e));
    for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) {
      visible.addEventListener(end, () => { this.last = null; });
    }
  }

  // A fresh, empty painting at the photo's natural size.
  reset(width, height) {
    for (const canvas of [this.visible, this.mask]) { canvas.width = width; canvas.height = height; }
    this.clear();
  }

  clear() {
    const { width, height } = this.mask;
    this.visible.getContext("2d").clearRect(0, 0, width, height);
    const ctx = this.mask.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    this.setPainted(false);
  }

  // The painted mask as a PNG: white = repair here, black elsewhere, at the photo's size.
  toBlob() { return new Promise((resolve) => this.mask.toBlob(resolve, "image/png")); }

  point(event) {
    const box = this.visible.getBoundingClientRect();
    const scale = this.visible.width / box.width;
    return { x: (event.clientX - box.left) * scale, y: (event.clientY - box.top) * scale, scale };
  }

  down(event) {
    event.preventDefault();
    this.visible.setPointerCapture(event.pointerId);
    this.last = this.point(event);
    this.stroke(this.last, this.last);
  }

  move(event) {
    if (!this.last) return;
    const next = this.point(event);
    this.stroke(this.last, next);
    this.last = next;
  }

  stroke(from, to) {
    for (const [canvas, colour] of [[this.visible, STROKE], [this.mask, "#fff"]]) {
      const ctx = canvas.getContext("2d");
      ctx.strokeStyle = colour;
      ctx.lineWidth = this.brush * to.scale;
      ctx.lineCap = "round";
      ctx.lineJoin = "round";
      ctx.beginPath();
      ctx.moveTo(from.x, from.y);
      ctx.lineTo(to.x, to.y);
      ctx.stroke();
    }
    this.setPainted(true);
  }

  setPainted(painted) {
    if (painted === this.painted) return;
    this.painted = painted;
    this.onChange(painted);
  }
}

const $ = (id) => document.getElementById(id);

// The result's overlay toggle and painting panel (index.html). `onRun(maskBlob)` resubmits the photo;
// `onError(problem)` reports a failure.
export class Corrections {
  constructor({ onRun, onError }) {
    this.result = null;
    this.onError = onError;
    this.painter = new Painter($("paint-canvas"), (painted) => { $("paint-run").disabled = !painted; });
    $("show-damage").addEventListener("change", () => this.toggleOverlay());
    $("paint-toggle").addEventListener("click", () => this.openPainting($("paint").hidden));
    $("brush-size").addEventListener("input", () => { this.painter.brush = Number($("brush-size").value); });
    $("paint-clear").addEventListener("click", () => this.painter.clear());
    $("paint-run").addEventListener("click", async () => {
      $("paint-run").disabled = true;
      await onRun(await this.painter.toBlob());
      $("paint-run").disabled = !this.painter.painted;
    });
  }

  // restore-photo results carry damageMaskUrl (null when no repair ran). `photoUrl` is the photo the
  // job was made from, or null when this page no longer has it (painting is then not offered).
  show(result, photoUrl) {
    this.result = result;
    this.photoUrl = photoUrl;
    const takesMask = "damageMaskUrl" in result;
    $("result-tools").hidden = !takesMask;
    $("show-damage-label").hidden = !result.damageMaskUrl;
    $("show-damage").checked = false;
    $("damage-overlay").hidden = true;
    $("paint-toggle").hidden = !photoUrl;
    $("paint-unavailable").hidden = Boolean(photoUrl);
    this.openPainting(false);
  }

  async toggleOverlay() {
    const overlay = $("damage-overlay");
    if (!$("show-damage").checked) { overlay.hidden = true; return; }
    try {
      await drawDamageOverlay(overlay, withKey(this.result.damageMaskUrl));
      overlay.hidden = !$("show-damage").checked;
    } catch (problem) {
      $("show-damage").checked = false;
      this.onError(problem);
    }
  }

  openPainting(open) {
    $("paint").hidden = !open;
    $("paint-toggle").setAttribute("aria-expanded", String(open));
    if (!open) return;
    const photo = $("paint-photo");
    // A photo the browser cannot show (HEIC, RAW…): paint on the result's preview, same shape.
    photo.onerror = () => { photo.onerror = null; photo.src = withKey(this.result.previewUrl); };
    photo.src = this.photoUrl;
    this.painter.brush = Number($("brush-size").value);
    this.painter.reset(this.result.width, this.result.height); // the photo's natural size
    $("paint").scrollIntoView({ block: "start" });
  }
}
