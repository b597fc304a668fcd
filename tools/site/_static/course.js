// The course website's one script: a figure in a cell's output opens at full size when clicked (on a
// phone a two-panel figure is too small to read in the column).
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("div.cell_output img").forEach((img) => {
    img.title = img.title || "Open the figure at full size";
    img.addEventListener("click", () => window.open(img.src, "_blank"));
  });
});

// Search results: Sphinx previews each hit with the text of the page's main element, which holds the
// theme's buttons ("Light", "Dark", "System Settings") and the formulas' TeX source. Preview the article
// alone, each formula as plain symbols.
const GREEK = {alpha: "α", beta: "β", gamma: "γ", delta: "δ", epsilon: "ε", lambda: "λ", mu: "μ", sigma: "σ",
  Sigma: "Σ", Phi: "Φ", pi: "π", theta: "θ", pm: "±", times: "×", cdot: "·", le: "≤", ge: "≥", approx: "≈",
  infty: "∞", sum: "Σ", to: "→", ell: "ℓ", lceil: "⌈", rceil: "⌉", lfloor: "⌊", rfloor: "⌋", log: "log"};
function plainTeX(tex) {
  return tex
    .trim()
    .replace(/^\\[([]|\\[)\]]$/g, "")
    .replace(/\\q?quad\b/g, " ")
    .replace(/\\(mathrm|mathbf|mathit|text|operatorname|tfrac|frac|sqrt|big|Big|left|right|textstyle)\b/g, " ")
    .replace(/\\([A-Za-z]+)/g, (m, name) => GREEK[name] || name)
    .replace(/[{}$]|\\[!,;:]/g, "")
    .replace(/\s+/g, " ")
    .trim();
}
document.addEventListener("DOMContentLoaded", () => {
  if (typeof Search === "undefined" || !Search.htmlToText) return;  // a top-level const of searchtools.js
  const toText = Search.htmlToText;
  Search.htmlToText = (htmlString, anchor) => {
    const doc = new DOMParser().parseFromString(htmlString, "text/html");
    doc.querySelectorAll(".math").forEach((m) => m.replaceWith(plainTeX(m.textContent)));
    doc.querySelectorAll(".bd-header-article, .prev-next-area, .bd-footer-article, .onlyprint, .cell_input")
      .forEach((e) => e.remove());
    return toText(doc.documentElement.outerHTML, anchor);
  };
});
