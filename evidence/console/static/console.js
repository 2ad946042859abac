// Redaction preview: the slider shows the frame at its time at once (the form works without it).
document.addEventListener("DOMContentLoaded", () => {
  const scrub = document.getElementById("scrub");
  const img = document.getElementById("preview");
  if (!scrub || !img) return;
  const out = document.getElementById("scrub-value");
  scrub.addEventListener("input", () => {
    out.textContent = parseFloat(scrub.value).toFixed(1);
    img.src = img.dataset.base + "?t=" + encodeURIComponent(scrub.value);
  });
});
// Playback: hls.js plays the recording segment by segment (each decrypted on demand by the
// console), attached only when the user asks to play — opening a page fetches no footage.
// Marker buttons seek to the marker's offset. No inline script (CSP).
document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  if (!player) return;
  let attached = null;
  const attach = () => {
    if (attached) return attached;
    attached = new Promise((ready) => {
      const src = player.dataset.src;
      if (window.Hls && window.Hls.isSupported()) {
        const hls = new window.Hls({ enableWorker: false, maxBufferLength: 30, maxMaxBufferLength: 60,
                                     backBufferLength: 30 });
        hls.on(window.Hls.Events.MANIFEST_PARSED, () => ready());
        hls.loadSource(src);
        hls.attachMedia(player);
      } else {
        player.src = src;  // a browser that plays HLS itself
        ready();
      }
    });
    return attached;
  };
  const play = document.getElementById("play");
  play.addEventListener("click", () => {
    attach().then(() => player.play());
    play.hidden = true;
  });
  player.addEventListener("play", () => { attach(); play.hidden = true; });
  document.querySelectorAll("button.marker").forEach((b) => {
    b.addEventListener("click", () => {
      play.hidden = true;
      attach().then(() => {
        player.currentTime = parseFloat(b.dataset.offset);
        player.play();
      });
    });
  });
});
