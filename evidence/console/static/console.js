// Sichtung: the console's few scripts. Every page works without them (forms post, the
// preview has a "show" button, areas can be typed); they add playback, drawing, and
// guards against a second click. No inline script anywhere (CSP: script-src 'self').
"use strict";

const de = () => document.documentElement.lang !== "en";
const clock = (s) => {
  const t = Math.max(0, Math.round(s * 10));
  const text = `${Math.floor(t / 600)}:${String(Math.floor(t / 10) % 60).padStart(2, "0")}.${t % 10}`;
  return de() ? text.replace(".", ",") : text;
};

// A form sent once: its buttons are disabled until the next page (no double hold, no
// second deletion request while the first is on its way).
document.addEventListener("submit", (ev) => {
  const form = ev.target;
  if (form.method.toLowerCase() !== "post") return;
  setTimeout(() => form.querySelectorAll("button[type=submit], button:not([type])").forEach((b) => {
    b.disabled = true;
    b.setAttribute("aria-busy", "true");
  }), 0);
});

document.addEventListener("DOMContentLoaded", () => {
  const printButton = document.getElementById("print");
  if (printButton) {
    printButton.hidden = false;
    printButton.addEventListener("click", () => window.print());
  }
});

// Redaction preview: the slider shows the frame at its time at once (the form works without it).
document.addEventListener("DOMContentLoaded", () => {
  const scrub = document.getElementById("scrub");
  const img = document.getElementById("preview");
  if (!scrub || !img) return;
  const out = document.getElementById("scrub-value");
  scrub.addEventListener("input", () => {
    out.textContent = clock(parseFloat(scrub.value));
    img.src = img.dataset.base + "?t=" + encodeURIComponent(scrub.value);
  });
});

// Playback: hls.js plays the recording segment by segment (each decrypted on demand by the
// console), attached only when the user asks to play — opening a page fetches no footage.
// A player error never freezes silently: it is said in words, with a way out (reload at
// this time, or export the MP4). Marker buttons seek to the marker and play on.
document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  if (!player) return;
  const box = document.getElementById("player-error");
  const play = document.getElementById("play");
  let attached = null;
  let failed = false;
  const fail = (what) => {
    if (failed) return;
    failed = true;
    const at = player.currentTime || 0;
    document.getElementById("player-error-text").textContent =
      box.dataset.text.replace("{at}", clock(at)).replace("{what}", what);
    const reload = document.getElementById("player-reload");
    reload.href = `${location.pathname}?t=${at.toFixed(1)}`;
    box.hidden = false;
    player.pause();
  };
  const attach = () => {
    if (attached) return attached;
    attached = new Promise((ready) => {
      const src = player.dataset.src;
      if (window.Hls && window.Hls.isSupported()) {
        const hls = new window.Hls({ enableWorker: false, maxBufferLength: 30, maxMaxBufferLength: 60,
                                     backBufferLength: 30 });
        let recovered = 0;
        hls.on(window.Hls.Events.MANIFEST_PARSED, () => ready());
        hls.on(window.Hls.Events.ERROR, (_, data) => {
          if (!data.fatal) return;
          if (data.type === window.Hls.ErrorTypes.MEDIA_ERROR && recovered < 1) {
            recovered += 1;
            hls.recoverMediaError();        // once: a decoder hiccup
            return;
          }
          const network = data.type === window.Hls.ErrorTypes.NETWORK_ERROR;
          fail(box.dataset[network ? "network" : "media"] || data.details);
        });
        hls.loadSource(src);
        hls.attachMedia(player);
      } else {
        player.src = src;  // a browser that plays HLS itself
        ready();
      }
    });
    return attached;
  };
  player.addEventListener("error", () => fail(box.dataset.media));
  const start = (at) => attach().then(() => {
    if (at > 0) player.currentTime = at;
    return player.play();
  }).catch(() => {});
  play.addEventListener("click", () => {
    play.hidden = true;
    start(parseFloat(player.dataset.start || "0"));
    player.focus();
  });
  player.addEventListener("play", () => { attach(); play.hidden = true; });
  document.querySelectorAll("button.marker").forEach((b) => {
    b.addEventListener("click", () => {
      play.hidden = true;
      start(parseFloat(b.dataset.offset));
    });
  });
  if (parseFloat(player.dataset.start || "0") > 0) {  // reloaded at a time: ready there
    attach().then(() => { player.currentTime = parseFloat(player.dataset.start); });
  }
});

// Drawing areas to mask (or false detections) on a picture of the recording. The drawn box
// fills the next free row of the typed form, which stays the way to adjust it (and the way
// for a keyboard). Coordinates are the video's pixels.
document.addEventListener("DOMContentLoaded", () => {
  const section = document.getElementById("drawing");
  if (!section) return;
  section.hidden = false;
  const img = document.getElementById("draw-frame");
  const canvas = document.getElementById("draw-canvas");
  const slider = document.getElementById("draw-t");
  const out = document.getElementById("draw-t-value");
  const W = parseFloat(section.dataset.width), H = parseFloat(section.dataset.height);
  const duration = parseFloat(section.dataset.duration);
  const ctx = canvas.getContext("2d");
  const field = (prefix, k) => document.getElementById(`${prefix}_${k}`);
  const rows = () => Array.from(document.querySelectorAll("tr.region")).map((r) => r.dataset.prefix);
  const val = (prefix, k) => parseFloat((field(prefix, k).value || "").replace(",", "."));
  const filled = (prefix) => ["x0", "y0", "x1", "y1"].every((k) => !Number.isNaN(val(prefix, k)));
  const now = () => parseFloat(slider.value) || 0;
  const redraw = (drag) => {
    ctx.clearRect(0, 0, W, H);
    ctx.lineWidth = Math.max(2, W / 320);
    rows().forEach((prefix) => {
      if (!filled(prefix)) return;
      const from = val(prefix, "from"), to = val(prefix, "to");
      const visible = Number.isNaN(from) || Number.isNaN(to) || (from <= now() + 1e-6 && now() <= to + 1e-6);
      ctx.setLineDash(visible ? [] : [6, 6]);
      ctx.strokeStyle = prefix.startsWith("ignore") ? "#ffd34d" : "#3d9bff";
      const x0 = val(prefix, "x0"), y0 = val(prefix, "y0");
      ctx.strokeRect(x0, y0, val(prefix, "x1") - x0, val(prefix, "y1") - y0);
      ctx.fillStyle = ctx.strokeStyle;
      ctx.font = `${Math.round(H / 22)}px sans-serif`;
      ctx.fillText(prefix.replace(/^box(\d+)$/, (_, n) => String(+n + 1)).replace(/^ignore(\d+)$/, (_, n) => `× ${+n + 1}`), x0 + 4, y0 + H / 20);
    });
    if (drag) {
      ctx.setLineDash([]);
      ctx.strokeStyle = "#ffffff";
      ctx.strokeRect(drag.x0, drag.y0, drag.x1 - drag.x0, drag.y1 - drag.y0);
    }
  };
  const show = () => {
    out.textContent = clock(now());
    img.src = `${section.dataset.frame}?t=${now().toFixed(1)}`;
    redraw(null);
  };
  slider.addEventListener("input", show);
  document.getElementById("redact-form").addEventListener("input", () => redraw(null));
  const point = (ev) => {
    const r = canvas.getBoundingClientRect();
    return { x: Math.max(0, Math.min(W, (ev.clientX - r.left) * W / r.width)),
             y: Math.max(0, Math.min(H, (ev.clientY - r.top) * H / r.height)) };
  };
  let start = null;
  canvas.addEventListener("pointerdown", (ev) => {
    start = point(ev);
    canvas.setPointerCapture(ev.pointerId);
  });
  canvas.addEventListener("pointermove", (ev) => {
    if (!start) return;
    const p = point(ev);
    redraw({ x0: Math.min(start.x, p.x), y0: Math.min(start.y, p.y), x1: Math.max(start.x, p.x), y1: Math.max(start.y, p.y) });
  });
  canvas.addEventListener("pointerup", (ev) => {
    if (!start) return;
    const p = point(ev);
    const box = [Math.min(start.x, p.x), Math.min(start.y, p.y), Math.max(start.x, p.x), Math.max(start.y, p.y)];
    start = null;
    if (box[2] - box[0] < 4 || box[3] - box[1] < 4) { redraw(null); return; }
    const kind = document.querySelector("input[name=draw-kind]:checked").value;
    const prefix = rows().find((r) => r.startsWith(kind) && !filled(r) && !field(r, "from").value);
    if (!prefix) { redraw(null); return; }
    field(prefix, "from").value = now().toFixed(1);
    field(prefix, "to").value = duration.toFixed(1);
    ["x0", "y0", "x1", "y1"].forEach((k, i) => { field(prefix, k).value = String(Math.round(box[i])); });
    field(prefix, "from").dispatchEvent(new Event("change", { bubbles: true }));
    redraw(null);
  });
  show();
});
