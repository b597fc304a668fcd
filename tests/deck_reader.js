// What an audience would see wrong in a reveal.js deck of the course (tools/build_slides.py), checked in
// the browser by tests/test_site.py (deck_problems). Called with the most words one slide may show.
(maxWords) => {
  const H = Reveal.getConfig().height;
  const slides = [...document.querySelectorAll('.reveal .slides > section')];
  const out = {slides: slides.length, figures: 0, problems: []};
  slides.forEach((s, i) => {
    Reveal.slide(i);
    const name = `slide ${i + 1} "${(s.querySelector('h1, h2') || {innerText: ''}).innerText.slice(0, 50)}"`;
    const shown = [...s.children].filter(c => c.tagName !== 'ASIDE');
    const bottom = Math.max(0, ...shown.map(c => c.offsetTop + c.offsetHeight));
    if (bottom > H) out.problems.push(`${name}: its content is ${bottom} px tall on a ${H} px slide`);
    const visible = s.cloneNode(true);
    visible.querySelectorAll('aside, mjx-container, script').forEach(e => e.remove());
    const words = visible.innerText.split(/\s+/).filter(Boolean).length;
    if (words > maxWords) out.problems.push(`${name}: ${words} words on one slide (at most ${maxWords}: the rest belongs in the notes)`);
    const raw = visible.innerText.match(/\\[(\[]|\$|\*\*/);
    if (raw) out.problems.push(`${name}: "${raw[0]}" shown as text (untypeset math or Markdown)`);
    const notes = s.querySelector('aside.notes');
    if (!notes || !notes.textContent.trim()) out.problems.push(`${name}: no speaker notes`);
    for (const img of s.querySelectorAll('img')) {
      if (!(img.complete && img.naturalWidth > 0)) out.problems.push(`${name}: image ${img.getAttribute('src')} did not load`);
      else out.figures += 1;
    }
  });
  Reveal.slide(0);
  return out;
}
