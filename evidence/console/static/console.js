// Marker buttons seek the player to the marker's offset (no inline script: CSP).
document.addEventListener("DOMContentLoaded", () => {
  const player = document.getElementById("player");
  document.querySelectorAll("button.marker").forEach((b) => {
    b.addEventListener("click", () => {
      if (!player) return;
      player.currentTime = parseFloat(b.dataset.offset);
      player.play();
    });
  });
});
