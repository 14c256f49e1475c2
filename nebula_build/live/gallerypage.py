"""The gallery page itself: its HTML, style and the script that draws the cards.

The cards come as JSON (`gallery.page_json`) in a `<script type="application/json">`
element, which works from `file://`. The script builds the DOM of one page of cards
at a time, with `textContent` and attributes only (a prompt is text, never markup);
the text filter and the status chips run over every card, and a page turns with
the pager, or with n/p past the first or last card (see `reviewpage`). The page
shown, the filter and the chips survive the live page's reload after a round.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nebula_build.fsutil import SAFE_READ_FLAGS

#: cards built per page: enough to scroll through, few enough to build at once
PAGE_SIZE = 120

#: how long the page waits before it opens a failed event stream again, doubled after
#: each failure up to the longest: a stopped watch is not asked ten times a second
RECONNECT_FIRST_MS = 1000
RECONNECT_LONGEST_MS = 30000

LIVE_SCRIPT = f"""<script>
(() => {{
  const page = document.body.dataset;
  let wait = {RECONNECT_FIRST_MS};
  const connect = () => {{
    const source = new EventSource("/events");
    let heard = false;
    source.onmessage = (event) => {{
      heard = true;
      wait = {RECONNECT_FIRST_MS};
      document.body.classList.remove("reconnecting");
      const round = JSON.parse(event.data);
      // round 0 is a watch still building its first; another run's round is news
      const news = round.run !== page.run || round.number > Number(page.round || 0);
      if (round.number < 1 || !news) return;
      // a pick in flight reloads once it has its answer (see the review script)
      const wanted = new CustomEvent("nebula-build:round", {{ cancelable: true }});
      if (document.dispatchEvent(wanted)) location.reload();
    }};
    source.onerror = () => {{
      // a stream that ended after its round (the server's cap sends `retry:`) is
      // opened again by the browser; any other failure the browser may give up on
      // for good (a status but 200: a 403, a proxy's 502), so it is opened here
      if (heard && source.readyState === EventSource.CONNECTING) {{
        heard = false;
        return;
      }}
      source.close();
      document.body.classList.add("reconnecting");
      setTimeout(connect, wait);
      wait = Math.min(wait * 2, {RECONNECT_LONGEST_MS});
    }};
  }};
  connect();
}})();
</script>"""


GALLERY_SCRIPT = """<script>
(() => {
  const PAGE = Number(document.getElementById("cards").dataset.pageSize);
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const strings = data.strings;
  const all = data.cards;
  const main = document.getElementById("cards");
  const filter = document.getElementById("filter");
  const chips = [...document.querySelectorAll(".chip[data-status]")];
  const ranges = [...document.querySelectorAll(".pager .range")];
  const turns = [...document.querySelectorAll(".pager [data-turn]")];
  const VIEW = `nebula-build-view:${location.pathname}`;
  let haystack = null;
  let shown = all;
  let page = 0;

  const el = (tag, className, text) => {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  };

  const drawFigure = (card, [index, key, picked, href, command, seed]) => {
    const pinned = index < 0;  // an earlier generation pinned as the output
    const figure = el("figure", "draw" + (picked ? " picked" : "") + (href ? "" : " missing"));
    figure.dataset.index = index;
    const label = [el("span", "index", pinned ? "pinned" : `draw ${index}`)];
    if (picked) label.push(el("span", "badge", pinned ? "output" : "picked"));
    if (seed !== null && seed !== undefined) label.push(el("span", "seed", `seed ${seed}`));
    const caption = el("figcaption");
    if (!href) {
      figure.append(el("div", "shot", "not made yet"), caption);
      caption.append(...label);
      return figure;
    }
    figure.dataset.key = key;
    const live = document.body.classList.contains("live");
    const shot = pinned ? el("a", "shot") : el("button", "shot choose");
    if (pinned) {
      shot.href = href;
      shot.title = "the earlier generation pinned as the output: open it";
    } else {
      shot.type = "button";
      shot.title = `${live ? "pick" : "show the command to pick"} draw ${index}`;
    }
    const img = el("img");
    img.src = href;
    img.alt = pinned ? `${card.n}, pinned` : `draw ${index} of ${card.n}`;
    img.loading = "lazy";
    shot.append(img);
    caption.append(...label);
    figure.append(shot, caption);
    if (!live) {
      const copy = el("button", "copy", "copy");
      copy.type = "button";
      copy.title = "copy the command";
      caption.append(copy);
      figure.append(el("code", "command", command));
    }
    return figure;
  };

  const build = (card) => {
    const article = el("article", `card ${card.s}` + (card.c ? " changed" : "") +
      (card.a ? " transparent" : "") + (card.m ? " small" : "") + (card.w ? " has-draws" : ""));
    article.id = `image-${card.n}`;
    article.tabIndex = -1;
    article.dataset.name = card.n;
    if (card.w) {
      const draws = el("div", "draws");
      draws.setAttribute("role", "group");
      draws.setAttribute("aria-label", `${card.w.length} candidates of ${card.n}`);
      draws.style.setProperty("--count", card.w.length);
      draws.append(...card.w.map((draw) => drawFigure(card, draw)));
      article.append(draws);
    } else if (card.e) {
      const link = el("a", "thumb");
      link.href = card.h;
      const img = el("img");
      img.src = card.t || card.h;
      img.alt = card.p;
      img.loading = "lazy";
      img.decoding = "async";
      link.append(img);
      article.append(link);
    } else {
      const why = card.s === "failed" ? "no file: the last apply failed" : "not generated yet";
      article.append(el("div", "thumb missing", why));
    }
    const meta = el("div", "meta");
    const heading = el("h2", "", card.n);
    if (card.c) heading.append(el("span", "flag", "just changed"));
    meta.append(heading, el("p", `status ${card.s}`, strings[card.x]), el("p", "prompt", card.p));
    if (card.q) {
      const negative = el("p", "negative");
      negative.append(el("b", "", "not:"), " " + card.q);
      meta.append(negative);
    }
    if (card.k) {
      const checks = el("ul", "checks");
      checks.setAttribute("aria-label", "checks");
      for (const [text, ok] of card.k) {
        checks.append(el("li", ok ? "pass" : "fail", `${ok ? "✓" : "✗"} ${text}`));
      }
      meta.append(checks);
    }
    const details = el("dl");
    for (let i = 0; i < card.d.length; i += 2) {
      details.append(el("dt", "", strings[card.d[i]]), el("dd", "", strings[card.d[i + 1]]));
    }
    meta.append(details);
    article.append(meta);
    return article;
  };

  const pages = () => Math.max(1, Math.ceil(shown.length / PAGE));

  const draw = () => {
    page = Math.min(Math.max(0, page), pages() - 1);
    const start = page * PAGE;
    const slice = shown.slice(start, start + PAGE);
    const fragment = document.createDocumentFragment();
    fragment.append(...slice.map(build));
    // no cards and a round's error above: the error says why, not "no images"
    if (!slice.length && (all.length || !document.getElementById("round-error"))) {
      const text = all.length ? "No image matches the filter." : "No images declared.";
      fragment.append(el("p", "empty", text));
    }
    main.replaceChildren(fragment);
    const text = shown.length > PAGE
      ? `${(start + 1).toLocaleString("en")}–${(start + slice.length).toLocaleString("en")} ` +
        `of ${shown.length.toLocaleString("en")}`
      : "";
    for (const range of ranges) range.textContent = text;
    for (const button of turns) {
      const delta = Number(button.dataset.turn);
      button.disabled = delta < 0 ? page === 0 : page >= pages() - 1;
      button.closest(".pager").hidden = shown.length <= PAGE;
    }
    try {
      sessionStorage.setItem(VIEW, JSON.stringify({
        filter: filter.value, status: chips.filter(pressed).map((c) => c.dataset.status), page,
      }));
    } catch (error) {}
  };

  const pressed = (chip) => chip.getAttribute("aria-pressed") === "true";

  const select = () => {
    const words = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
    const statuses = new Set(chips.filter(pressed).map((c) => c.dataset.status));
    if (words.length && !haystack) haystack = all.map((c) => `${c.n} ${c.p}`.toLowerCase());
    shown = !words.length && !statuses.size ? all : all.filter((card, i) =>
      (!statuses.size || statuses.has(card.s)) && words.every((w) => haystack[i].includes(w)));
  };

  filter.addEventListener("input", () => {
    select();
    page = 0;
    draw();
  });
  for (const chip of chips) {
    chip.addEventListener("click", () => {
      chip.setAttribute("aria-pressed", String(!pressed(chip)));
      select();
      page = 0;
      draw();
    });
  }
  for (const button of turns) {
    button.addEventListener("click", () => {
      page += Number(button.dataset.turn);
      draw();
      if (button.closest("footer")) window.scrollTo(0, 0);
    });
  }

  window.nebulaGallery = {
    /** Show the next (1) or previous (-1) page; false when there is none. */
    turn(delta) {
      const next = page + delta;
      if (next < 0 || next >= pages()) return false;
      page = next;
      draw();
      return true;
    },
    /** Show the page that holds the image named `name`; false when it is filtered out. */
    reveal(name) {
      const at = shown.findIndex((card) => card.n === name);
      if (at < 0) return false;
      page = Math.floor(at / PAGE);
      draw();
      return true;
    },
  };

  try {
    const kept = JSON.parse(sessionStorage.getItem(VIEW) || "null");
    if (kept) {
      filter.value = kept.filter || "";
      const statuses = kept.status || [];
      for (const chip of chips) {
        chip.setAttribute("aria-pressed", String(statuses.includes(chip.dataset.status)));
      }
      select();
      page = kept.page || 0;
    }
  } catch (error) {}
  draw();
  /** Show the card a `#image-<name>` address names, on whichever page it is. */
  const showWanted = () => {
    let wanted;
    try {
      wanted = decodeURIComponent(location.hash.slice(1));
    } catch (error) {
      return; // not an address this page made (a malformed escape)
    }
    if (!wanted.startsWith("image-")) return;
    if (!document.getElementById(wanted)) nebulaGallery.reveal(wanted.slice("image-".length));
    const card = document.getElementById(wanted);
    if (card) card.scrollIntoView({ block: "start" });
  };
  showWanted();
  addEventListener("hashchange", showWanted);
})();
</script>"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="nebula-build gallery">
<title>{title}</title>
{token}
<style>
  :root {{ color-scheme: dark; --bg: #111318; --card: #1b1e26; --line: #2b303b;
          --text: #e7e9ee; --dim: #9aa3b2; --ok: #4cc38a; --pending: #e5b84b;
          --failed: #ef6461; --conflict: #c678dd; --accent: #6ea8fe; }}
  * {{ box-sizing: border-box; }}
  body {{ margin: 0; background: var(--bg); color: var(--text);
         font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }}
  header {{ position: sticky; top: 0; z-index: 1; display: flex; flex-wrap: wrap; gap: 12px;
           align-items: center; padding: 14px 24px; background: #111318ee;
           border-bottom: 1px solid var(--line); backdrop-filter: blur(6px); }}
  h1 {{ font-size: 16px; margin: 0 12px 0 0; }}
  input {{ flex: 1; min-width: 180px; max-width: 360px; padding: 7px 10px; border-radius: 8px;
          border: 1px solid var(--line); background: var(--card); color: var(--text); }}
  .chip {{ padding: 2px 8px; border-radius: 999px; background: var(--card);
          border: 1px solid var(--line); font: inherit; cursor: pointer; }}
  .chip[aria-pressed="true"] {{ border-color: currentColor; box-shadow: 0 0 0 1px currentColor; }}
  .pager {{ display: flex; gap: 8px; align-items: center; color: var(--dim); font-size: 13px; }}
  .pager button {{ padding: 2px 10px; border-radius: 8px; border: 1px solid var(--line);
                  background: var(--card); color: var(--text); font: inherit; cursor: pointer; }}
  .pager button:disabled {{ opacity: .4; cursor: default; }}
  .pager[hidden] {{ display: none; }}
  footer.pager {{ justify-content: center; padding: 0 24px 32px; }}
  .chip.ok {{ color: var(--ok); }} .chip.pending {{ color: var(--pending); }}
  .chip.failed {{ color: var(--failed); }} .chip.conflict {{ color: var(--conflict); }}
  .live-dot, .reconnecting-dot {{ display: none; color: var(--ok); }}
  body.live:not(.reconnecting) .live-dot {{ display: inline; }}
  body.live.reconnecting .reconnecting-dot {{ display: inline; color: var(--dim); }}
  .live-dot.failed {{ color: var(--failed); }}
  main {{ display: grid; gap: 18px; padding: 24px;
         grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); }}
  .card {{ background: var(--card); border: 1px solid var(--line); border-radius: 12px;
          overflow: hidden; display: flex; flex-direction: column; }}
  .card[hidden] {{ display: none; }}
  .card.changed {{ border-color: var(--accent); box-shadow: 0 0 0 2px var(--accent); }}
  .thumb {{ display: block; aspect-ratio: 4 / 3; overflow: hidden; background: #1e222b; }}
  .card.transparent .thumb:not(.missing), .card.transparent .draw .shot {{ background:
           repeating-conic-gradient(#c8ccd4 0 25%, #f4f5f7 0 50%) 50% / 16px 16px; }}
  .checks {{ list-style: none; margin: 0 0 6px; padding: 0; font-size: 12px; }}
  .checks .pass {{ color: var(--ok); }} .checks .fail {{ color: var(--failed); }}
  .thumb img {{ width: 100%; height: 100%; object-fit: contain; display: block; }}
  .card.small .thumb img {{ image-rendering: pixelated; }}
  .thumb.missing {{ display: grid; place-items: center; color: var(--dim); }}
  .meta {{ padding: 12px 14px 14px; }}
  h2 {{ font-size: 15px; margin: 0 0 4px; display: flex; gap: 8px; align-items: center; }}
  .flag {{ font-size: 11px; font-weight: 600; color: #0b1220; background: var(--accent);
          border-radius: 6px; padding: 1px 6px; }}
  .status {{ margin: 0 0 8px; font-size: 12px; }}
  .status.ok {{ color: var(--ok); }} .status.pending {{ color: var(--pending); }}
  .status.failed {{ color: var(--failed); }} .status.conflict {{ color: var(--conflict); }}
  .prompt {{ margin: 0 0 6px; }} .negative {{ margin: 0 0 6px; color: var(--dim); }}
  dl {{ display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 8px 0 0;
       font-size: 12px; color: var(--dim); }}
  dt {{ color: #6f7888; }} dd {{ margin: 0; overflow-wrap: anywhere; }}
  .empty {{ color: var(--dim); }}
  .round-error {{ margin: 24px 24px 0; padding: 12px 16px; border-radius: 12px;
                 border: 1px solid var(--failed); background: #2a1719; }}
  .round-error p {{ margin: 0 0 6px; }} .round-error b {{ color: var(--failed); }}
  .round-error ul {{ margin: 0; padding: 0; list-style: none;
                    font: 12px/1.5 ui-monospace, SFMono-Regular, Menlo, monospace; }}
  .round-error li {{ overflow-wrap: anywhere; white-space: pre-wrap; }}
  .round-error .more {{ color: var(--dim); }}
{review_style}
</style>
</head>
<body class="{live}" data-round="{round}" data-run="{run}">
<header>
  <h1>{title}</h1>
  <input id="filter" type="search" placeholder="Filter by name or prompt" autocomplete="off">
  {summary}
  {live_dot}
  <span class="reconnecting-dot" title="watch is not answering: the page updates once it does"
    >○ reconnecting…</span>
  {keys}
  <nav class="pager" aria-label="pages"><button type="button" data-turn="-1">‹</button>
    <span class="range" aria-live="polite"></span>
    <button type="button" data-turn="1">›</button></nav>
  <output id="note" aria-live="polite"></output>
</header>
{error}
<main id="cards" data-page-size="{page_size}"></main>
<footer class="pager"><button type="button" data-turn="-1">‹ previous</button>
  <span class="range"></span><button type="button" data-turn="1">next ›</button></footer>
<script type="application/json" id="gallery-data">{data}</script>
{gallery_script}
{review_script}
{script}
</body>
</html>
"""


#: what every page the gallery writes carries in its head; before it, the title's end
MARK = b'<meta name="generator" content="nebula-build gallery">'
_EARLIER_MARK = b" \xc2\xb7 nebula-build</title>"


def page_is_a_gallery(path: Path) -> bool:
    """Whether the file at `path` is a page `nebula-build gallery` wrote: a plain file
    whose head says so (never a link, never read past its head)."""
    try:
        fd = os.open(path, SAFE_READ_FLAGS)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        head = os.read(fd, 4096)
    except OSError:
        return False
    finally:
        os.close(fd)
    return MARK in head or _EARLIER_MARK in head
