// The furrytag gallery page. Data arrive as script files (data/meta.js, data/chunk-*.js)
// calling FT.setMeta and FT.addChunk; every element is built with textContent and DOM
// properties, never from HTML text, so paths and tags are always shown as text.
"use strict";
(function () {
  const FT = (window.FT = window.FT || {});
  FT.timing = { firstRender: null, ready: null, lastApply: null };

  // Fields of a record (see page.py).
  const PATH = 0, URL_ = 1, THUMB = 2, STATUS = 3, KEPT = 4, KEPT_S = 5, RATING = 6;
  const RATING_S = 7, SCORES = 8, NOTE = 9, LOWER = 10;
  const RATING_NAMES = ["safe", "questionable", "explicit"];
  const STATUS_NAMES = ["ok", "missing", "unreadable"];
  const PAGE_SIZE = 120;
  const FREQ_SHORT = 40;
  const FAILURES_SHOWN = 1000;

  let META = null;
  const RECS = [];
  const TAG_INDEX = new Map();
  let TAGS_LOWER = [];
  let review = Object.create(null);
  let storageKey = "";
  let view = [];
  let shownSlice = "";
  let current = -1;
  let chunksLoaded = 0;

  const state = {
    q: "", allOf: [], noneOf: [], head: "", rating: "", status: "",
    rangeTag: "", rangeMin: 0, rangeMax: 1, sort: "input", sortTag: "", page: 0, freqAll: false,
  };

  const $ = (selector, root) => (root || document).querySelector(selector);
  const $$ = (selector, root) => Array.from((root || document).querySelectorAll(selector));

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node[key] = value;
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  FT.setMeta = function (meta) { META = meta; };
  FT.addChunk = function (rows) { for (const row of rows) RECS.push(row); chunksLoaded += 1; };

  function loadScript(src) {
    return new Promise(function (resolve, reject) {
      const script = el("script", { src: src });
      script.onload = resolve;
      script.onerror = function () { reject(new Error("cannot load " + src + "; rebuild the gallery")); };
      document.head.append(script);
    });
  }

  async function start() {
    try {
      await loadScript("data/meta.js");
      setup();
      for (let i = 0; i < META.chunks; i++) {
        await loadScript("data/chunk-" + String(i).padStart(5, "0") + ".js");
        apply();
        if (i === 0) FT.timing.firstRender = performance.now();
      }
      if (!META.chunks) { apply(); FT.timing.firstRender = performance.now(); }
      FT.timing.ready = performance.now();
      document.body.dataset.state = "ready";
    } catch (error) {
      $("#counts").textContent = String(error.message || error);
      document.body.dataset.state = "failed";
    }
  }

  // ---- names and scores ----
  const norm = (name) => name.trim().toLowerCase().replace(/\s+/g, "_");
  const tagId = (name) => (TAG_INDEX.has(name) ? TAG_INDEX.get(name) : -2);
  const headOf = (t) => META.heads[META.tagHeads[t]];

  function scoreOf(r, t) {
    if (t < 0) return 0;
    if (r[SCORES] && r[SCORES][t] >= 0) return r[SCORES][t] / 1000;
    const k = r[KEPT].indexOf(t);
    if (k < 0) return 0;
    return r[KEPT_S][k] >= 0 ? r[KEPT_S][k] / 1000 : 1;
  }

  function lowerPath(r) {
    if (r[LOWER] === undefined) r[LOWER] = r[PATH].toLowerCase();
    return r[LOWER];
  }

  function absolutePath(path) {
    if (path.startsWith("/")) return path;
    return META.base.replace(/\/+$/, "") + "/" + path;
  }

  // ---- review, kept in localStorage ----
  function loadReview() {
    // A store without a prototype: a path may be named "constructor" or "__proto__".
    review = Object.create(null);
    try { Object.assign(review, JSON.parse(localStorage.getItem(storageKey) || "{}")); }
    catch (error) { $("#review-state").textContent = "the saved review could not be read: " + error.message; }
  }
  function saveReview() {
    try { localStorage.setItem(storageKey, JSON.stringify(review)); }
    catch (error) { $("#review-state").textContent = "cannot save the review in this browser: " + error.message; }
    $("#review-count").textContent = Object.keys(review).length + " reviewed";
  }
  function reviewOf(r, create) {
    let entry = review[r[PATH]];
    if (!entry && create) entry = review[r[PATH]] = { wrong: [], added: [], rating: "" };
    return entry;
  }
  function effectiveTags(r) {
    const entry = reviewOf(r, false);
    const names = r[KEPT].map((t) => META.tags[t]);
    if (!entry) return names;
    const kept = names.filter((name) => !entry.wrong.includes(name));
    return Array.from(new Set(kept.concat(entry.added)));
  }

  function csvField(value) {
    return /[",\r\n]/.test(value) ? '"' + value.replace(/"/g, '""') + '"' : value;
  }

  function exportLabels() {
    const lines = ["path,tags,rating"];
    for (const r of RECS) {
      const entry = reviewOf(r, false);
      if (!entry) continue;
      let rating = "";
      if (META.hasRating) rating = entry.rating || (r[RATING] >= 0 ? RATING_NAMES[r[RATING]][0] : "");
      // Tags outside the model's vocabulary (a caption's trigger words) are no labels.
      const tags = effectiveTags(r).filter((name) => headOf(TAG_INDEX.get(name)) !== "other");
      lines.push([csvField(absolutePath(r[PATH])), csvField(tags.join(" ")), rating].join(","));
    }
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "reviewed.csv" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 10000);
  }

  // ---- filtering and sorting ----
  function compiled() {
    const q = state.q.trim().toLowerCase();
    return {
      q: q,
      qTag: q.replace(/\s+/g, "_"),
      all: state.allOf.map(tagId),
      none: state.noneOf.map(tagId),
      head: state.head === "" ? -1 : Number(state.head),
      rating: state.rating === "" ? null : Number(state.rating),
      status: state.status,
      range: state.rangeTag && (state.rangeMin > 0 || state.rangeMax < 1)
        ? { tag: tagId(norm(state.rangeTag)), min: state.rangeMin, max: state.rangeMax } : null,
    };
  }

  function matches(r, f) {
    if (f.status) {
      if (f.status === "reviewed" || f.status === "unreviewed") {
        if ((f.status === "reviewed") !== (r[PATH] in review)) return false;
      } else if (STATUS_NAMES[r[STATUS]] !== f.status) return false;
    }
    if (f.rating !== null && r[RATING] !== f.rating) return false;
    const kept = r[KEPT];
    if (f.head >= 0 && !kept.some((t) => META.tagHeads[t] === f.head)) return false;
    for (const t of f.all) if (!kept.includes(t)) return false;
    for (const t of f.none) if (kept.includes(t)) return false;
    if (f.range) {
      const s = scoreOf(r, f.range.tag);
      if (s < f.range.min || s > f.range.max) return false;
    }
    if (f.q && !lowerPath(r).includes(f.q) && !kept.some((t) => TAGS_LOWER[t].includes(f.qTag))) {
      return false;
    }
    return true;
  }

  function sortView(indices) {
    const mode = state.sort;
    if (mode === "input") return indices;
    let key;
    if (mode === "path") {
      return indices.sort((a, b) => (RECS[a][PATH] < RECS[b][PATH] ? -1 : RECS[a][PATH] > RECS[b][PATH] ? 1 : a - b));
    } else if (mode === "tag-desc" || mode === "tag-asc") {
      const t = tagId(norm(state.sortTag));
      const sign = mode === "tag-desc" ? -1 : 1;
      key = (r) => sign * scoreOf(r, t);
    } else if (mode === "rating-desc") {
      key = (r) => -r[RATING_S];
    } else {
      key = (r) => -r[KEPT].length;
    }
    const keys = new Float64Array(RECS.length);
    for (const i of indices) keys[i] = key(RECS[i]);
    return indices.sort((a, b) => keys[a] - keys[b] || a - b);
  }

  function apply(resetPage) {
    const started = performance.now();
    if (resetPage) state.page = 0;
    const f = compiled();
    const found = [];
    for (let i = 0; i < RECS.length; i++) if (matches(RECS[i], f)) found.push(i);
    view = sortView(found);
    const pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
    state.page = Math.min(state.page, pages - 1);
    renderCounts();
    renderGrid();
    renderFrequencies();
    FT.timing.lastApply = performance.now() - started;
  }
  FT.apply = apply;

  // ---- rendering ----
  function renderCounts() {
    const total = META.total;
    let text = view.length.toLocaleString("en") + " of " + RECS.length.toLocaleString("en") + " images match";
    if (RECS.length < total) text += " (loading " + RECS.length.toLocaleString("en") + " of " + total.toLocaleString("en") + ")";
    if (META.failures.length) text += "; " + META.failures.length + " failed in the run (listed below)";
    $("#counts").textContent = text;
    const pages = Math.max(1, Math.ceil(view.length / PAGE_SIZE));
    for (const pager of $$(".pager")) {
      $(".page", pager).textContent = "page " + (state.page + 1) + " of " + pages;
      $(".prev", pager).disabled = state.page === 0;
      $(".next", pager).disabled = state.page >= pages - 1;
    }
  }

  function ratingBadge(r) {
    if (r[RATING] < 0) return null;
    return el("span", { class: "rating r" + r[RATING], text: RATING_NAMES[r[RATING]] });
  }

  function tagGroups(r) {
    const byHead = new Map();
    for (const t of r[KEPT]) {
      const head = META.tagHeads[t];
      if (!byHead.has(head)) byHead.set(head, []);
      byHead.get(head).push(META.tags[t]);
    }
    const groups = [];
    for (let h = 0; h < META.heads.length; h++) {
      if (!byHead.has(h)) continue;
      const group = el("div", { class: "group" }, el("span", { class: "head", text: META.heads[h] }));
      for (const name of byHead.get(h)) group.append(el("span", { class: "tag", text: name }));
      groups.push(group);
    }
    return groups;
  }

  function card(i, position) {
    const r = RECS[i];
    const thumb = el("div", { class: "thumb" });
    if (r[THUMB]) {
      thumb.append(el("img", { src: "thumbs/" + r[THUMB], alt: "", loading: "lazy", decoding: "async" }));
    } else {
      const label = r[STATUS] === 1 ? "missing" : r[STATUS] === 2 ? "unreadable" : "no image";
      thumb.append(el("div", { class: "placeholder", text: label, title: r[NOTE] || "" }));
    }
    const body = el("div", { class: "body" }, el("div", { class: "path", text: r[PATH], title: r[PATH] }));
    const badges = el("div", null, ratingBadge(r));
    if (r[PATH] in review) badges.append(" ", el("span", { class: "reviewed", text: "✓ reviewed" }));
    if (r[NOTE] && r[STATUS] === 0) badges.append(" ", el("span", { class: "muted", text: r[NOTE] }));
    body.append(badges, ...tagGroups(r));
    return el("div", { class: "card", tabIndex: 0, dataset: { position: position } }, thumb, body);
  }

  function renderGrid(force) {
    const start = state.page * PAGE_SIZE;
    const slice = view.slice(start, start + PAGE_SIZE);
    const signature = state.page + ":" + slice.join(",");
    if (!force && signature === shownSlice) return;
    shownSlice = signature;
    $("#grid").replaceChildren(...slice.map((i, k) => card(i, start + k)));
  }

  function renderFrequencies() {
    const counts = new Int32Array(META.tags.length);
    for (const i of view) for (const t of RECS[i][KEPT]) counts[t] += 1;
    const order = [];
    for (let t = 0; t < counts.length; t++) if (counts[t]) order.push(t);
    order.sort((a, b) => counts[b] - counts[a] || (META.tags[a] < META.tags[b] ? -1 : 1));
    const shown = state.freqAll ? order : order.slice(0, FREQ_SHORT);
    $("#freq tbody").replaceChildren(...shown.map((t) => el("tr", { dataset: { tag: META.tags[t] }, title: "show only images with this tag" },
      el("td", { text: META.tags[t] }), el("td", { class: "muted", text: headOf(t) }), el("td", { text: String(counts[t]) }))));
    const more = $("#freq-more");
    more.hidden = order.length <= FREQ_SHORT;
    more.textContent = state.freqAll ? "show fewer" : "show all " + order.length;
  }

  function renderFailures() {
    const section = $("#failures");
    section.hidden = META.failures.length === 0;
    const shown = META.failures.slice(0, FAILURES_SHOWN);
    const rows = shown.map((f) => el("tr", null, el("td", { text: f[0] }), el("td", { text: f[1] })));
    if (META.failures.length > shown.length) {
      const more = (META.failures.length - shown.length).toLocaleString("en");
      rows.push(el("tr", null, el("td", { class: "muted", colSpan: 2, text: "… and " + more + " more: see the run's failure report" })));
    }
    $("tbody", section).replaceChildren(...rows);
  }

  // ---- detail view ----
  function openDetail(position) {
    if (position < 0 || position >= view.length) return;
    current = position;
    $("#detail").hidden = false;
    renderDetail();
  }

  function closeDetail() {
    $("#detail").hidden = true;
    $("#detail-img").removeAttribute("src");
    current = -1;
    renderGrid(true);
  }

  function renderDetail() {
    const r = RECS[view[current]];
    const entry = reviewOf(r, false);
    $("#detail-path").textContent = r[PATH];
    $("#detail-prev").disabled = current === 0;
    $("#detail-next").disabled = current >= view.length - 1;
    const img = $("#detail-img");
    const note = $("#detail-note");
    note.textContent = "";
    if (r[URL_] && r[STATUS] === 0) {
      img.hidden = false;
      img.onerror = function () { img.hidden = true; note.textContent = "the image cannot be shown here"; };
      img.src = r[URL_];
    } else {
      img.hidden = true;
      img.removeAttribute("src");
      note.textContent = STATUS_NAMES[r[STATUS]] + (r[NOTE] ? ": " + r[NOTE] : "");
    }
    let rating = "Rating: " + (r[RATING] >= 0 ? RATING_NAMES[r[RATING]] : "none");
    if (r[RATING_S] >= 0) rating += " (score " + (r[RATING_S] / 1000).toFixed(3) + ")";
    if (META.ratingCuts) rating += "; cuts " + META.ratingCuts.map((c) => c.toFixed(3)).join(", ");
    $("#detail-rating").textContent = rating;
    $("#detail-thresholds").textContent = META.thresholds
      ? "Thresholds: " + (META.thresholdsFrom || "as used by the run") + " (the black mark on each bar); a tag is kept when its score is above it."
      : "Thresholds were not recorded with these results; give furrytag gallery --thresholds FILE (or --threshold) to show them.";
    $("#review-rating").value = entry ? entry.rating : "";
    $("#review-state").textContent = entry ? "reviewed" : "not reviewed";
    $("#added").replaceChildren(...(entry ? entry.added : []).map((name) =>
      el("span", { class: "chip" }, "+ " + name, el("button", { type: "button", text: "×", title: "remove", onclick: function () { removeAdded(name); } }))));
    renderScores(r, entry);
  }

  function scoreRow(r, t, entry) {
    const name = META.tags[t];
    const kept = r[KEPT].includes(t);
    const wrong = kept && entry && entry.wrong.includes(name);
    const added = entry && entry.added.includes(name);
    const score = scoreOf(r, t);
    const known = META.hasScores || (kept && r[KEPT_S][r[KEPT].indexOf(t)] >= 0);
    const bar = el("div", { class: "bar" }, el("div", { class: "fill", style: "width:" + (100 * score).toFixed(1) + "%" }));
    if (META.thresholds && META.thresholds[t] >= 0) {
      bar.append(el("div", { class: "mark", style: "left:" + (META.thresholds[t] / 10).toFixed(1) + "%", title: "threshold " + (META.thresholds[t] / 1000).toFixed(3) }));
    }
    const button = kept
      ? el("button", { type: "button", text: "✗", title: wrong ? "the tag is right after all" : "mark this tag wrong", onclick: function () { toggleWrong(name); } })
      : el("button", { type: "button", text: "+", title: "add this tag", onclick: function () { addTag(name); } });
    const classes = "score" + (kept ? " kept" : "") + (wrong ? " wrong" : "") + (added ? " added" : "");
    return el("div", { class: classes, dataset: { tag: name } }, button, el("span", { class: "name", text: name }), bar,
      el("span", { class: "value", text: known ? score.toFixed(3) : "" }));
  }

  function renderScores(r, entry) {
    const box = $("#detail-scores");
    const rows = [];
    if (!META.hasScores) {
      rows.push(el("p", { class: "muted", text: "Only the kept tags' scores are in these results; tag with --all-scores to see every tag's score." }));
    }
    for (let h = 0; h < META.heads.length; h++) {
      let tags = [];
      for (let t = 0; t < META.tags.length; t++) {
        if (META.tagHeads[t] !== h) continue;
        if (META.hasScores || r[KEPT].includes(t) || (entry && entry.added.includes(META.tags[t]))) tags.push(t);
      }
      if (!tags.length) continue;
      tags = tags.sort((a, b) => scoreOf(r, b) - scoreOf(r, a) || a - b);
      rows.push(el("div", { class: "score-head", text: META.heads[h] }));
      for (const t of tags) rows.push(scoreRow(r, t, entry));
    }
    box.replaceChildren(...rows);
  }

  function changed() {
    saveReview();
    renderDetail();
  }

  function toggleWrong(name) {
    const r = RECS[view[current]];
    const entry = reviewOf(r, true);
    entry.wrong = entry.wrong.includes(name) ? entry.wrong.filter((n) => n !== name) : entry.wrong.concat([name]);
    changed();
  }

  function addTag(name) {
    const r = RECS[view[current]];
    const tag = norm(name);
    if (!TAG_INDEX.has(tag) || headOf(TAG_INDEX.get(tag)) === "other") {
      $("#review-state").textContent = "“" + name + "” is not in the model's vocabulary";
      return false;
    }
    const entry = reviewOf(r, true);
    if (r[KEPT].includes(TAG_INDEX.get(tag))) entry.wrong = entry.wrong.filter((n) => n !== tag);
    else if (!entry.added.includes(tag)) entry.added.push(tag);
    changed();
    return true;
  }

  function removeAdded(name) {
    const r = RECS[view[current]];
    const entry = reviewOf(r, true);
    entry.added = entry.added.filter((n) => n !== name);
    changed();
  }

  // ---- controls ----
  function picker(id, list) {
    const root = $("#" + id);
    const chips = $(".chips", root);
    const input = $("input", root);
    function draw() {
      chips.replaceChildren(...list.map((name, k) => el("span", { class: "chip" }, name,
        el("button", { type: "button", text: "×", title: "remove", onclick: function () { list.splice(k, 1); draw(); apply(true); } }))));
    }
    input.addEventListener("change", function () {
      for (const part of input.value.split(/[,\s]+/)) {
        const name = norm(part);
        if (name && !list.includes(name)) list.push(name);
      }
      input.value = "";
      draw();
      apply(true);
    });
    return draw;
  }

  function setup() {
    storageKey = "furrytag-review:" + META.id;
    META.tags.forEach(function (name, t) { if (!TAG_INDEX.has(name)) TAG_INDEX.set(name, t); });
    TAGS_LOWER = META.tags.map((name) => name.toLowerCase());
    loadReview();
    $("#review-count").textContent = Object.keys(review).length + " reviewed";
    const source = "Results: " + META.source + (META.model ? " · model " + META.model : "") + " · " + META.total + " images";
    $("#source").textContent = source;
    document.title = "furrytag gallery: " + META.source;
    $("#vocab").replaceChildren(...META.tags.map((name, t) => el("option", { value: name, label: headOf(t) })));
    $("#head").append(...META.heads.map((head, h) => el("option", { value: String(h), text: head })));
    if (!META.hasRating) { $("#rating").disabled = true; $("#review-rating").disabled = true; }
    renderFailures();

    const drawAll = picker("all-of", state.allOf);
    const drawNone = picker("none-of", state.noneOf);
    $("#search").addEventListener("input", function (e) { state.q = e.target.value; apply(true); });
    for (const [id, key] of [["head", "head"], ["rating", "rating"], ["status", "status"], ["sort", "sort"]]) {
      $("#" + id).addEventListener("change", function (e) { state[key] = e.target.value; apply(true); });
    }
    $("#sort-tag").addEventListener("change", function (e) {
      state.sortTag = e.target.value;
      if (state.sort !== "tag-desc" && state.sort !== "tag-asc") { state.sort = "tag-desc"; $("#sort").value = "tag-desc"; }
      apply(true);
    });
    $("#range-tag").addEventListener("change", function (e) { state.rangeTag = e.target.value; apply(true); });
    $("#range-min").addEventListener("change", function (e) { state.rangeMin = Number(e.target.value) || 0; apply(true); });
    $("#range-max").addEventListener("change", function (e) { state.rangeMax = e.target.value === "" ? 1 : Number(e.target.value); apply(true); });
    $("#reset").addEventListener("click", function () {
      Object.assign(state, { q: "", head: "", rating: "", status: "", rangeTag: "", rangeMin: 0, rangeMax: 1, sort: "input", sortTag: "" });
      state.allOf.length = 0;
      state.noneOf.length = 0;
      for (const id of ["search", "range-tag", "sort-tag"]) $("#" + id).value = "";
      for (const id of ["head", "rating", "status"]) $("#" + id).value = "";
      $("#sort").value = "input";
      $("#range-min").value = "0";
      $("#range-max").value = "1";
      drawAll();
      drawNone();
      apply(true);
    });
    $("#freq tbody").addEventListener("click", function (e) {
      const row = e.target.closest("tr");
      if (!row || state.allOf.includes(row.dataset.tag)) return;
      state.allOf.push(row.dataset.tag);
      drawAll();
      apply(true);
    });
    $("#freq-more").addEventListener("click", function () { state.freqAll = !state.freqAll; renderFrequencies(); });
    for (const pager of $$(".pager")) {
      $(".prev", pager).addEventListener("click", function () { state.page -= 1; apply(); window.scrollTo(0, 0); });
      $(".next", pager).addEventListener("click", function () { state.page += 1; apply(); window.scrollTo(0, 0); });
    }
    $("#grid").addEventListener("click", function (e) {
      const c = e.target.closest(".card");
      if (c) openDetail(Number(c.dataset.position));
    });
    $("#grid").addEventListener("keydown", function (e) {
      const c = e.target.closest(".card");
      if (c && e.key === "Enter") openDetail(Number(c.dataset.position));
    });
    $("#detail-close").addEventListener("click", closeDetail);
    $("#detail-prev").addEventListener("click", function () { openDetail(current - 1); });
    $("#detail-next").addEventListener("click", function () { openDetail(current + 1); });
    $("#detail").addEventListener("click", function (e) { if (e.target.id === "detail") closeDetail(); });
    document.addEventListener("keydown", function (e) {
      if (current < 0) return;
      if (e.key === "Escape") closeDetail();
      else if (e.target.matches("input, select")) return;
      else if (e.key === "ArrowLeft") openDetail(current - 1);
      else if (e.key === "ArrowRight") openDetail(current + 1);
    });
    const addInput = $("#add-tag");
    function addFromInput() { if (addInput.value.trim() && addTag(addInput.value)) addInput.value = ""; }
    $("#add-tag-button").addEventListener("click", addFromInput);
    addInput.addEventListener("keydown", function (e) { if (e.key === "Enter") addFromInput(); });
    $("#review-rating").addEventListener("change", function (e) {
      const r = RECS[view[current]];
      reviewOf(r, true).rating = e.target.value;
      changed();
    });
    $("#mark-reviewed").addEventListener("click", function () { const r = RECS[view[current]]; reviewOf(r, true); changed(); });
    $("#unreview").addEventListener("click", function () { const r = RECS[view[current]]; delete review[r[PATH]]; changed(); });
    $("#export").addEventListener("click", exportLabels);
    $("#clear-review").addEventListener("click", function () {
      if (window.confirm("Forget the review of every image in this gallery?")) { review = Object.create(null); saveReview(); apply(); renderGrid(true); }
    });
  }

  start();
})();
