"""The gallery page's review part: how an image's candidates look, and the script that
picks one (a click, or a key) on the live page and shows its `pick` command offline.

Live, a pick is a POST of JSON to `/pick` carrying the run's token from the page's
`<meta name="nebula-build-token">`; the server answers once the watcher has made the
draw the output, and the page reloads on the round that follows, as after any round.
"""

from __future__ import annotations

REVIEW_STYLE = """
  header .keys { margin: 0; color: var(--dim); font-size: 12px; }
  kbd { display: inline-block; min-width: 18px; padding: 0 5px; margin-right: 3px;
        border: 1px solid var(--line); border-bottom-width: 2px; border-radius: 5px;
        background: var(--card); color: var(--text); font: 11px/16px ui-monospace, monospace;
        text-align: center; }
  #note { flex-basis: 100%; min-height: 0; font-size: 13px; color: var(--ok); }
  #note:empty { display: none; }
  #note.bad { color: var(--failed); }
  .card:focus { outline: none; }
  .card.focused { border-color: var(--accent); box-shadow: 0 0 0 2px var(--accent); }
  @media (min-width: 640px) { .card.has-draws { grid-column: span 2; } }
  .draws { display: grid; gap: 10px; padding: 12px 12px 0;
           grid-template-columns: repeat(auto-fit, minmax(120px, 1fr)); }
  .draw { margin: 0; min-width: 0; }
  .draw .shot { position: relative; display: grid; place-items: center; width: 100%;
                aspect-ratio: 4 / 3;
                padding: 0; overflow: hidden; border: 2px solid var(--line); border-radius: 8px;
                color: var(--dim); font: inherit; font-size: 12px; background: #1e222b; }
  .draw .choose { cursor: pointer; }
  .draw .choose:hover, .draw .choose:focus-visible { border-color: var(--accent); outline: none; }
  .draw .shot img { position: absolute; inset: 0; width: 100%; height: 100%;
                    object-fit: contain; display: block; }
  .card.small .draw .shot img { image-rendering: pixelated; }
  .draw.missing .shot { border-style: dashed; }
  .draw.chosen .shot { border-color: var(--accent); }
  .draw.picked .shot { border-color: var(--ok); box-shadow: 0 0 0 2px var(--ok); }
  .draw.busy .shot { opacity: .55; }
  .draw figcaption { display: flex; flex-wrap: wrap; gap: 4px 6px; align-items: center;
                     margin-top: 5px; white-space: nowrap;
                     font-size: 12px; color: var(--dim); }
  .draw.picked figcaption { color: var(--text); font-weight: 600; }
  .draw figcaption .seed { color: var(--dim); font-weight: 400; }
  .badge { font-size: 11px; font-weight: 600; color: #0b1220; background: var(--ok);
           border-radius: 6px; padding: 0 6px; }
  .command { display: block; margin-top: 3px; user-select: all; color: var(--text);
             font: 11px/1.35 ui-monospace, monospace; }
  .copy { margin-left: auto; padding: 0 6px; border: 1px solid var(--line); border-radius: 5px;
          background: var(--bg); color: var(--dim); font-size: 11px; cursor: pointer; }
  .copy:hover { color: var(--text); border-color: var(--accent); }
"""

REVIEW_SCRIPT = """<script>
(() => {
  const live = document.body.classList.contains("live");
  const token = document.querySelector('meta[name="nebula-build-token"]')?.content || "";
  const note = document.getElementById("note");
  const say = (text, bad = false) => {
    note.textContent = text;
    note.classList.toggle("bad", bad);
  };
  const remember = (text) => {
    try { sessionStorage.setItem("nebula-build-note", text); } catch (error) {}
  };
  const visibleCards = () => [...document.querySelectorAll(".card:not([hidden])")];
  const pickable = (card) =>
    [...card.querySelectorAll(".draw")].filter((draw) => draw.querySelector(".choose"));
  let focused = null;
  let picking = 0;
  let reloadWanted = false;
  document.addEventListener("nebula-build:round", (event) => {
    if (picking) {
      event.preventDefault();
      reloadWanted = true;
    }
  });

  const focusCard = (card) => {
    if (!card) return;
    focused?.classList.remove("focused");
    focused = card;
    card.classList.add("focused");
    card.focus({ preventScroll: true });
    card.scrollIntoView({ block: "nearest" });
    history.replaceState(null, "", "#" + card.id);
  };

  const copy = async (code) => {
    getSelection().selectAllChildren(code);
    try {
      await navigator.clipboard.writeText(code.textContent);
    } catch (error) {
      document.execCommand("copy");
    }
    say(`copied: ${code.textContent}`);
  };

  const choose = async (draw) => {
    const card = draw.closest(".card");
    focusCard(card);
    for (const other of card.querySelectorAll(".draw")) {
      other.classList.toggle("chosen", other === draw);
    }
    const image = card.dataset.name;
    const index = Number(draw.dataset.index);
    if (!live) {
      const code = draw.querySelector("code");
      getSelection().selectAllChildren(code);
      say(`${code.textContent}: run it in the project to make draw ${index} the output`);
      return;
    }
    if (draw.classList.contains("picked")) {
      say(`${image}: draw ${index} is the output already`);
      return;
    }
    draw.classList.add("busy");
    say(`${image}: picking draw ${index}…`);
    picking += 1;
    try {
      const response = await fetch("/pick", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ image, index, key: draw.dataset.key, token }),
      });
      const answer = await response.json();
      say(answer.message, !answer.ok);
      if (answer.ok) remember(answer.message);
    } catch (error) {
      say(`${image}: the pick did not reach nebula-build (${error.message})`, true);
    } finally {
      draw.classList.remove("busy");
      picking -= 1;
      if (!picking && reloadWanted) location.reload();
    }
  };

  document.addEventListener("click", (event) => {
    const shot = event.target.closest(".draw .choose");
    if (shot) {
      choose(shot.closest(".draw"));
      return;
    }
    const button = event.target.closest(".copy");
    if (button) copy(button.closest(".draw").querySelector("code"));
  });

  const stepImage = (delta) => {
    let cards = visibleCards();
    const at = cards.indexOf(focused);
    let next = at < 0 ? 0 : at + delta;
    // past the page's first or last card: the previous or next page of the gallery
    if ((next < 0 || next >= cards.length) && window.nebulaGallery?.turn(delta)) {
      cards = visibleCards();
      next = delta > 0 ? 0 : cards.length - 1;
    }
    focusCard(cards[Math.min(cards.length - 1, Math.max(0, next))]);
  };

  const stepDraw = (delta) => {
    const card = (focused?.isConnected && focused) ||
      visibleCards().find((c) => pickable(c).length);
    if (!card) return;
    const draws = pickable(card);
    if (!draws.length) {
      say(`${card.dataset.name}: no candidates to step through`);
      return;
    }
    const current = card.querySelector(".draw.chosen") || card.querySelector(".draw.picked");
    const at = draws.indexOf(current);
    choose(draws[at < 0 ? 0 : (at + delta + draws.length) % draws.length]);
  };

  const keys = {
    n: () => stepImage(1), ArrowDown: () => stepImage(1),
    p: () => stepImage(-1), ArrowUp: () => stepImage(-1),
    j: () => stepDraw(1), ArrowRight: () => stepDraw(1),
    k: () => stepDraw(-1), ArrowLeft: () => stepDraw(-1),
  };
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, textarea, select")) return;
    const action = keys[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  });

  const restored = location.hash && document.getElementById(location.hash.slice(1));
  if (restored?.classList.contains("card")) focusCard(restored);
  try {
    const kept = sessionStorage.getItem("nebula-build-note");
    if (kept) {
      say(kept);
      sessionStorage.removeItem("nebula-build-note");
    }
  } catch (error) {}
})();
</script>"""
