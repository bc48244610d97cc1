// A before/after slider: the original is clipped over the result; the range input moves the edge.
export function showComparison(root, beforeUrl, afterUrl) {
  const before = root.querySelector("#before");
  const after = root.querySelector("#after");
  const clip = root.querySelector("#before-clip");
  const slider = root.querySelector("#slider");
  before.src = beforeUrl;
  after.src = afterUrl;
  const fit = () => { before.style.width = `${after.clientWidth}px`; before.style.height = `${after.clientHeight}px`; };
  after.onload = fit;
  window.onresize = fit; // one listener, for the comparison shown now
  const move = () => { clip.style.width = `${slider.value}%`; };
  slider.oninput = move;
  move();
}
