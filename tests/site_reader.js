// What a reader would see wrong on a rendered page of the course website, checked in the browser by
// tests/test_site.py (reader_problems). Called with the checks to run (some kinds of `out` below) and the
// height in px above which one cell's output must scroll in a box of its own. Thresholds: WCAG AA
// contrast, 4.5:1 (3:1 for large text).
([checks, tall]) => {
  const run = kind => checks.includes(kind);
  const W = document.documentElement.clientWidth;
  const main = document.querySelector('main') || document.body;
  const shown = e => e.checkVisibility({opacityProperty: true, visibilityProperty: true}) &&
      e.getBoundingClientRect().width > 0;
  const out = {debris: [], grading: [], overflow: [], clipped: [], contrast: [], alt: [], tall: []};
  if (run('debris')) {
    // TeX and Markdown debris in the rendered prose (code, typeset math and scripts left out)
    const prose = main.cloneNode(true);
    prose.querySelectorAll('pre, code, mjx-container, script, style, .cell_input').forEach(e => e.remove());
    const text = prose.textContent;
    for (const [what, re] of [['a stray $', /\$/g], ['**', /\*\*/g], ['\\( or \\[', /\\[(\[]/g],
                              ['a TeX command', /\\(frac|mathrm|text|sigma|alpha|times|cdot)\b/g]]) {
      const m = text.match(re);
      if (m) { const i = text.search(re); out.debris.push(`${m.length} × ${what}: "…${text.slice(Math.max(0, i - 40), i + 20).replace(/\s+/g, ' ')}…"`); }
  }
  }
  if (run('grading')) {
    // grading cells: otter's markers, test configs, hidden tests, the Colab install code, shown as code
    for (const e of main.querySelectorAll('pre')) {
      if (!shown(e)) continue;
      const m = e.textContent.match(/# (BEGIN|END) (SOLUTION|QUESTION|TESTS)|BEGIN TEST CONFIG|# HIDDEN|# ASSIGNMENT CONFIG|google\.colab/);
      if (m) out.grading.push(`"${m[0]}" in a visible code block`);
  }
  }
  if (run('overflow')) {
    // nothing wider than the viewport (a table or code block may scroll inside its own box)
    const scrolls = e => { for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; } return false; };
    if (document.documentElement.scrollWidth > W + 1) {
      const wide = [...document.body.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > W + 1 &&
          shown(e) && !scrolls(e) && getComputedStyle(e).position !== 'fixed').slice(0, 3);
      out.overflow.push(`page is ${document.documentElement.scrollWidth} px wide in a ${W} px viewport: ` +
          wide.map(e => `<${e.tagName.toLowerCase()} class="${e.className}"> "${e.textContent.trim().slice(0, 40)}"`).join(', '));
  }
  }
  if (run('clipped')) {
    // code (cell inputs and code blocks, not outputs) shown whole, without a sideways scroll
    for (const e of main.querySelectorAll('div.highlight pre')) {
      if (e.closest('.cell_output') || !shown(e)) continue;
      if (e.scrollWidth > e.clientWidth + 1) out.clipped.push(`a code block needs ${e.scrollWidth} px in ${e.clientWidth}: "${e.textContent.trim().slice(0, 50)}"`);
  }
  }
  if (run('contrast')) {
    // contrast of every visible piece of text against what lies behind it
    const rgba = c => { const m = c.match(/rgba?\(([^)]+)\)/); if (!m) return null;
      const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; };
    const over = (t, b) => [0, 1, 2].map(i => t[i] * t[3] + b[i] * (1 - t[3])).concat([1]);
    const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
      return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]); };
    const cache = new Map();  // what lies behind an element: its parent's answer is reused
    const behind = e => {
      if (!e) return [255, 255, 255, 1];  // the canvas
      if (cache.has(e)) return cache.get(e);
      const b = rgba(getComputedStyle(e).backgroundColor);
      const r = b && b[3] >= 1 ? b : b && b[3] > 0 ? over(b, behind(e.parentElement)) : behind(e.parentElement);
      cache.set(e, r);
      return r;
    };
    for (const e of document.body.querySelectorAll('*')) {
      const own = [...e.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim()).map(n => n.textContent.trim()).join(' ');
      if (!own || !shown(e)) continue;
      const st = getComputedStyle(e), fg0 = rgba(st.color); if (!fg0) continue;
      const bg = behind(e), fg = over(fg0, bg);
      const ratio = (Math.max(lum(fg), lum(bg)) + 0.05) / (Math.min(lum(fg), lum(bg)) + 0.05);
      const size = parseFloat(st.fontSize), large = size >= 24 || (parseInt(st.fontWeight) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5)) out.contrast.push(`"${own.slice(0, 30)}" ${ratio.toFixed(2)}:1 (${st.color} on rgb(${bg.slice(0, 3).map(Math.round)}))`);
  }
  }
  if (run('alt')) {
    // figures: alt text that says what the figure shows, not a file name
    for (const img of main.querySelectorAll('.cell_output img')) {
      const alt = (img.getAttribute('alt') || '').trim();
      if (alt.split(/\s+/).length < 3 || /\.(png|svg|jpe?g)$|^[0-9a-f]{16,}/i.test(alt)) out.alt.push(`${img.getAttribute('src')}: alt "${alt}"`);
  }
  }
  if (run('tall')) {
    // a long output scrolls in a box of its own height
    for (const o of main.querySelectorAll('.cell_output')) {
      const h = o.getBoundingClientRect().height;
      if (h > tall) out.tall.push(`an output ${Math.round(h)} px tall: "${o.textContent.trim().slice(0, 50)}"`);
  }
  }
  return out;
}
