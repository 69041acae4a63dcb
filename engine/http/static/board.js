// The lifecycle board: columns from the workflow definition, cards from GET /features,
// kept current by polling and updating only the cards that changed (no re-render).
// Plain JavaScript, no build step. window.boardStats holds timings the browser tests read.
"use strict";

(() => {
  const POLL_MS = 2000;
  const FOLD_AFTER = 12; // a done column (launched) shows its newest cards; older ones fold
  const HIDDEN_POLL_MS = 15000;
  const REASONS = {
    sla_breached: "SLA breached",
    critical_risk: "Critical risk",
    high_risk: "High risk",
    blocked: "Blocked",
    target_slip: "Target slip",
    rework: "Rework",
  };
  const REASON_HELP = {
    sla_breached: "longer in this stage than its SLA",
    critical_risk: "an open critical risk (blocks the launch)",
    high_risk: "an open high-severity risk",
    blocked: "blocked",
    target_slip: "the target launch date has passed or is forecast to be missed",
    rework: "failed UAT two or more times",
  };
  const RISK_LINES = { "feature.at_risk": "at risk", "feature.risk_cleared": "no longer at risk" };
  const REJECTIONS = {
    invalid_transition: "the feature cannot move back this way",
    terminal: "the feature is cancelled and takes no more events",
    "gate:uat": "it must pass UAT first",
    "guard:critical_risk": "an open critical risk holds the launch",
    unknown_workflow: "no such workflow",
  };

  const stats = (window.boardStats = {
    features: 0,
    firstRenderMs: null, // navigation start -> first frame with every card
    firstApplyMs: null, // building the first board, script time
    firstFetchMs: null, // the first GET /features, every page, fetched and parsed
    pages: 0, // pages of GET /features the last poll read
    lastUpdateMs: null, // features answer received -> frame after the changed cards
    lastChanged: 0,
    updates: 0,
    polls: 0,
  });

  const $ = (id) => document.getElementById(id);
  const board = $("board");
  const dialog = $("detail");
  const view = {
    workflow: null,
    stages: [],
    slas: {},
    columns: new Map(), // stage -> {section, list, count, terminal, done, more}
    expanded: new Set(), // terminal stages the user opened (they start collapsed)
    unfolded: new Set(), // done stages showing every card, not only the newest
    cards: new Map(), // feature id -> {li, parts, f, sig, stage}
    products: new Set(),
    owners: new Set(),
    openId: null,
    opener: null,
    timer: null,
    first: true,
    pages: 0, // pages of GET /features the last poll read
  };
  const filters = { q: "", product: "", owner: "", risk: false };

  // --- helpers ---------------------------------------------------------------------------

  // Shared with board-deliveries.js (board-common.js): ages are measured on the engine's
  // clock, which each answer of api() records.
  const { api, el, engineNow, span, when } = window.lifecycleBoard;

  function label(stage) {
    const words = stage.replace(/_/g, " ");
    return stage === "uat" ? "UAT" : words.charAt(0).toUpperCase() + words.slice(1);
  }

  function slaText(seconds) {
    if (seconds % 86400 === 0) return `${seconds / 86400} days`;
    if (seconds % 3600 === 0) return `${seconds / 3600} h`;
    return span(seconds);
  }

  function longSpan(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    if (d) return `${d} day${d === 1 ? "" : "s"}${h ? ` ${h} h` : ""}`;
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${m} min` : `${m} min`;
  }

  const SHORT_DAY = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric", timeZone: "UTC" });
  const LONG_DAY = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", timeZone: "UTC",
  });

  function day(text) {
    if (!text) return "—";
    const t = new Date(text.length === 10 ? `${text}T00:00:00Z` : text);
    return t.toLocaleDateString(undefined, {
      year: "numeric", month: "short", day: "numeric", timeZone: "UTC",
    });
  }

  // "Nov 3" in the engine's current year, "Nov 3, 2025" before it.
  function shortDay(text) {
    const t = new Date(text);
    const thisYear = t.getUTCFullYear() === new Date(engineNow()).getUTCFullYear();
    return (thisYear ? SHORT_DAY : LONG_DAY).format(t);
  }

  function inStage(f) {
    return (engineNow() - Date.parse(f.entered_stage_at)) / 1000;
  }

  function badge(reason) {
    const b = el("span", `badge b-${reason}`, REASONS[reason] || reason);
    b.title = REASON_HELP[reason] || reason;
    return b;
  }

  function signature(f) {
    return `${f.version}|${f.stage}|${f.risk_reasons.join(",")}`;
  }

  // --- columns and cards -----------------------------------------------------------------

  function buildColumns(workflow) {
    board.replaceChildren();
    view.columns.clear();
    view.cards.clear();
    view.stages = workflow.stages.map((s) => s.name);
    view.slas = Object.fromEntries(workflow.stages.map((s) => [s.name, s.sla_seconds]));
    for (const stage of workflow.stages) {
      const section = el("section", "column");
      section.dataset.stage = stage.name;
      const head = el("div", "column-head");
      const h2 = el("h2");
      h2.id = `col-${stage.name}`;
      section.setAttribute("aria-labelledby", h2.id);
      const count = el("span", "count", "0");
      const name = el("span", "stage-name", label(stage.name));
      let toggle = null;
      if (stage.terminal) {
        // A final stage (cancelled) starts folded to a narrow strip: a click opens it.
        toggle = el("button", "col-toggle");
        toggle.type = "button";
        toggle.append(name, count);
        toggle.addEventListener("click", () => {
          if (view.expanded.has(stage.name)) view.expanded.delete(stage.name);
          else view.expanded.add(stage.name);
          refreshCounts();
        });
        h2.append(toggle);
      } else {
        h2.append(name, count);
      }
      head.append(h2);
      const notes = [];
      if (stage.sla_seconds) notes.push(`SLA ${slaText(stage.sla_seconds)}`);
      if (stage.gate) notes.push("gate");
      if (stage.terminal) notes.push("final");
      if (stage.done) notes.push("newest first");
      if (notes.length) head.append(el("p", "stage-note", notes.join(" · ")));
      const list = el("ol", "cards");
      list.setAttribute("aria-label", `${label(stage.name)} features`);
      section.append(head, list);
      let more = null;
      if (stage.done) {
        more = el("button", "more");
        more.type = "button";
        more.hidden = true;
        more.addEventListener("click", () => {
          if (view.unfolded.has(stage.name)) view.unfolded.delete(stage.name);
          else view.unfolded.add(stage.name);
          refreshCounts();
        });
        section.append(more);
      }
      board.append(section);
      view.columns.set(stage.name, {
        section, list, count, toggle, more, terminal: stage.terminal, done: stage.done,
      });
    }
  }

  function makeCard(f) {
    const li = el("li", "card");
    li.dataset.id = f.id;
    const btn = el("button", "card-btn");
    btn.type = "button";
    btn.setAttribute("aria-haspopup", "dialog");
    const top = el("span", "card-top");
    const fid = el("span", "fid", f.id);
    const age = el("span", "age");
    top.append(fid, age);
    const title = el("span", "card-title");
    const meta = el("span", "meta");
    const badges = el("span", "badges");
    btn.append(top, title, meta, badges);
    li.append(btn);
    const card = { li, btn, age, title, meta, badges, f, sig: "", stage: null, ageText: "" };
    fill(card, f);
    return card;
  }

  function fill(card, f) {
    card.f = f;
    card.sig = signature(f);
    card.li.dataset.stage = f.stage;
    card.title.textContent = f.title || "(untitled)";
    card.meta.textContent = [f.product, f.owner].filter(Boolean).join(" · ") || "—";
    card.badges.replaceChildren(...f.risk_reasons.map(badge));
    card.li.classList.toggle("at-risk", f.at_risk);
    card.search = `${f.id} ${f.title || ""}`.toLowerCase();
    setAge(card);
  }

  function setAge(card) {
    if (card.f.launched_at && view.columns.get(card.f.stage)?.done) {
      setLaunched(card);
      return;
    }
    if (card.lead) card.lead.hidden = true;
    const seconds = inStage(card.f);
    const text = span(seconds);
    if (text === card.ageText) return;
    card.ageText = text;
    card.age.textContent = text;
    const sla = view.slas[card.f.stage];
    const over = Boolean(sla) && card.f.risk_reasons.includes("sla_breached");
    card.age.classList.toggle("over", over);
    card.age.title = `In ${label(card.f.stage)} for ${longSpan(seconds)}` +
      (sla ? ` (SLA ${longSpan(sla)})` : "");
  }

  // A launched card: when it launched (this time: the column is newest first) and its lead
  // time (idea to first launch, as lifecycle_lead_time_seconds), not its age.
  function setLaunched(card) {
    const f = card.f;
    const text = shortDay(f.entered_stage_at);
    if (text === card.ageText) return;
    card.ageText = text;
    card.age.textContent = text;
    card.age.classList.remove("over");
    card.age.title = `Launched ${when(f.entered_stage_at)}` +
      (f.entered_stage_at !== f.launched_at ? ` (first launched ${when(f.launched_at)})` : "");
    if (!card.lead) {
      card.lead = el("span", "lead");
      card.title.after(card.lead);
    }
    const lead = (Date.parse(f.launched_at) - Date.parse(f.created_at)) / 1000;
    card.lead.textContent = `lead time ${span(lead)}`;
    card.lead.title = `${longSpan(lead)} from idea (${when(f.created_at)}) to launch`;
    card.lead.hidden = false;
  }

  function filtering() {
    return Boolean(filters.q || filters.product || filters.owner || filters.risk);
  }

  function matches(f) {
    if (filters.product && f.product !== filters.product) return false;
    if (filters.owner && f.owner !== filters.owner) return false;
    if (filters.risk && !f.at_risk) return false;
    if (filters.q) {
      const card = view.cards.get(f.id);
      const text = card ? card.search : `${f.id} ${f.title || ""}`.toLowerCase();
      if (!text.includes(filters.q)) return false;
    }
    return true;
  }

  function refreshCounts() {
    const counts = new Map(view.stages.map((s) => [s, 0]));
    let shown = 0;
    let risky = 0;
    for (const card of view.cards.values()) {
      if (card.f.at_risk) risky += 1;
      if (card.li.hidden) continue;
      shown += 1;
      counts.set(card.f.stage, (counts.get(card.f.stage) || 0) + 1);
    }
    for (const [stage, column] of view.columns) {
      const n = String(counts.get(stage) || 0);
      if (column.count.textContent !== n) column.count.textContent = n;
      column.count.setAttribute("aria-label", `${n} features`);
    }
    layOut(counts, shown);
    const total = view.cards.size;
    const filtered = shown !== total ? `${shown} shown of ` : "";
    const time = new Date(engineNow()).toLocaleString(undefined, {
      month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
    });
    $("summary").textContent =
      `${filtered}${total} features · ${risky} at risk · as of ${time}`;
  }

  // Every stage fits the width: a column with nothing to show folds to a narrow strip (when
  // anything is shown at all), a final stage (cancelled) too unless opened or filtered, and
  // a done stage (launched) shows its newest cards with the older ones folded.
  function layOut(counts, shown) {
    for (const [stage, column] of view.columns) {
      const n = counts.get(stage) || 0;
      const closed = column.terminal && !view.expanded.has(stage) && !filtering();
      const collapsed = (n === 0 && shown > 0) || closed;
      column.section.classList.toggle("collapsed", collapsed);
      if (column.toggle) column.toggle.setAttribute("aria-expanded", String(!closed));
      if (column.done) fold(stage, column);
    }
  }

  function fold(stage, column) {
    const open = view.unfolded.has(stage) || Boolean(filters.q);
    let visible = 0;
    for (const li of column.list.children) {
      const folded = !open && !li.hidden && visible >= FOLD_AFTER;
      if (!li.hidden) visible += 1;
      if (li.classList.contains("folded") !== folded) li.classList.toggle("folded", folded);
    }
    const older = visible - FOLD_AFTER;
    column.more.hidden = Boolean(filters.q) || older <= 0;
    column.more.textContent = view.unfolded.has(stage)
      ? "Show the newest only"
      : `Show ${older} older`;
  }

  // A search scrolls its first match into view, wherever its column or place in it.
  function showFirstMatch() {
    if (!filters.q) return;
    for (const column of view.columns.values()) {
      const li = [...column.list.children].find((node) => !node.hidden);
      if (li) {
        li.scrollIntoView({ block: "nearest", inline: "nearest" });
        return;
      }
    }
  }

  function applyFilters() {
    for (const card of view.cards.values()) {
      const hide = !matches(card.f);
      if (card.li.hidden !== hide) card.li.hidden = hide;
    }
    refreshCounts();
  }

  function addOption(select, set, value) {
    if (!value || set.has(value)) return false;
    set.add(value);
    const values = [...set].sort();
    const option = el("option", null, value);
    option.value = value;
    const before = values.indexOf(value) + 1; // after the "All" option
    select.insertBefore(option, select.options[before] || null);
    return true;
  }

  // Apply one GET /features answer: create, update, move and remove only what changed.
  function apply(features) {
    const t0 = performance.now();
    const first = view.first;
    const seen = new Set();
    const fresh = new Map(); // stage -> fragment (first render: in order, in one append)
    let changed = 0;
    const mine = features.filter((f) => f.workflow === view.workflow);
    if (first) mine.sort((a, b) => Date.parse(b.entered_stage_at) - Date.parse(a.entered_stage_at));
    for (const f of mine) {
      seen.add(f.id);
      addOption($("product"), view.products, f.product);
      addOption($("owner"), view.owners, f.owner);
      let card = view.cards.get(f.id);
      if (card === undefined) {
        card = makeCard(f);
        view.cards.set(f.id, card);
        card.li.hidden = !matches(f);
        place(card, f.stage, first ? fresh : null);
        if (!first) flash(card);
        changed += 1;
        continue;
      }
      if (card.sig !== signature(f)) {
        const moved = card.stage !== f.stage;
        fill(card, f);
        card.li.hidden = !matches(f);
        if (moved) {
          place(card, f.stage, null);
          flash(card);
        }
        changed += 1;
        if (view.openId === f.id) showDetail(f.id, false);
      } else {
        card.f = f;
        setAge(card);
      }
    }
    for (const [id, card] of view.cards) {
      if (!seen.has(id)) {
        card.li.remove();
        view.cards.delete(id);
        changed += 1;
      }
    }
    for (const [stage, fragment] of fresh) view.columns.get(stage)?.list.append(fragment);
    refreshCounts();
    stats.features = view.cards.size;
    stats.polls += 1;
    stats.pages = view.pages;
    const scriptMs = performance.now() - t0;
    if (first) {
      view.first = false;
      stats.firstApplyMs = scriptMs;
      afterPaint(() => { stats.firstRenderMs = performance.now(); });
    } else if (changed) {
      afterPaint(() => {
        stats.lastUpdateMs = performance.now() - t0;
        stats.lastChanged = changed;
        stats.updates += 1;
      });
    }
  }

  function place(card, stage, fragments) {
    card.stage = stage;
    const column = view.columns.get(stage);
    if (column === undefined) return; // a stage this workflow no longer has
    if (fragments) {
      if (!fragments.has(stage)) fragments.set(stage, document.createDocumentFragment());
      fragments.get(stage).append(card.li);
    } else {
      column.list.prepend(card.li);
    }
  }

  function flash(card) {
    card.li.classList.remove("fresh");
    void card.li.offsetWidth; // restart the animation
    card.li.classList.add("fresh");
  }

  function afterPaint(callback) {
    requestAnimationFrame(() => setTimeout(callback, 0));
  }

  // --- polling ---------------------------------------------------------------------------

  // Every feature, page after page (GET /features answers at most 500 at a time).
  async function allFeatures() {
    const features = [];
    let path = "/features?limit=1000";
    const t0 = performance.now();
    for (view.pages = 1; ; view.pages += 1) {
      const answer = await api(path);
      features.push(...answer.features);
      if (!answer.next) {
        if (stats.firstFetchMs === null) stats.firstFetchMs = performance.now() - t0;
        return features;
      }
      path = `/features?limit=1000&cursor=${encodeURIComponent(answer.next)}`;
    }
  }

  async function poll() {
    clearTimeout(view.timer);
    try {
      apply(await allFeatures());
      $("status").textContent = "";
    } catch (err) {
      $("status").textContent = `Cannot reach the engine (${err.message}); retrying…`;
    }
    view.timer = setTimeout(poll, document.hidden ? HIDDEN_POLL_MS : POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });

  // --- filters ---------------------------------------------------------------------------

  function readFilters() {
    filters.q = $("q").value.trim().toLowerCase();
    filters.product = $("product").value;
    filters.owner = $("owner").value;
    filters.risk = $("at-risk").checked;
    const params = new URLSearchParams();
    if ($("q").value.trim()) params.set("q", $("q").value.trim());
    if (filters.product) params.set("product", filters.product);
    if (filters.owner) params.set("owner", filters.owner);
    if (filters.risk) params.set("risk", "1");
    if (view.workflow && $("workflow-field").hidden === false) params.set("workflow", view.workflow);
    const query = params.toString();
    history.replaceState(null, "", query ? `?${query}${location.hash}` : location.pathname + location.hash);
    applyFilters();
    showFirstMatch();
  }

  function restoreFilters() {
    const params = new URLSearchParams(location.search);
    $("q").value = params.get("q") || "";
    for (const name of ["product", "owner"]) {
      const value = params.get(name);
      if (value) {
        addOption($(name), name === "product" ? view.products : view.owners, value);
        $(name).value = value;
      }
    }
    $("at-risk").checked = params.get("risk") === "1";
    filters.q = $("q").value.trim().toLowerCase();
    filters.product = $("product").value;
    filters.owner = $("owner").value;
    filters.risk = $("at-risk").checked;
  }

  $("filters").addEventListener("submit", (event) => event.preventDefault());
  $("q").addEventListener("input", readFilters);
  for (const id of ["product", "owner", "at-risk"]) $(id).addEventListener("change", readFilters);

  // --- the feature dialog ----------------------------------------------------------------

  board.addEventListener("click", (event) => {
    const btn = event.target.closest(".card-btn");
    if (!btn) return;
    openDetail(btn.closest(".card").dataset.id, btn);
  });

  $("detail-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });
  dialog.addEventListener("close", () => {
    const id = view.openId;
    view.openId = null;
    if (location.hash) history.replaceState(null, "", location.pathname + location.search);
    const card = id && view.cards.get(id);
    const target = card && card.li.isConnected && !card.li.hidden ? card.btn : view.opener;
    if (target && target.isConnected) target.focus();
  });

  function openDetail(id, opener) {
    view.openId = id;
    view.opener = opener || null;
    $("detail-title").textContent = id;
    $("detail-body").replaceChildren(el("p", "muted", "Loading…"));
    if (!dialog.open) dialog.showModal();
    $("detail-title").focus();
    history.replaceState(null, "", `${location.pathname}${location.search}#${encodeURIComponent(id)}`);
    showDetail(id, true);
  }

  async function showDetail(id, focus) {
    let feature;
    let history;
    try {
      const path = `/features/${encodeURIComponent(id)}`;
      [feature, history] = await Promise.all([api(path), api(`${path}/history`)]);
    } catch (err) {
      if (view.openId === id) {
        $("detail-body").replaceChildren(el("p", "status", `Cannot load ${id}: ${err.message}`));
      }
      return;
    }
    if (view.openId !== id) return;
    $("detail-title").textContent = feature.title ? feature.title : feature.id;
    $("detail-body").replaceChildren(...renderDetail(feature, history.entries));
    // Additions such as board-deliveries.js append their own sections to the dialog.
    const detail = { feature, entries: history.entries, body: $("detail-body") };
    document.dispatchEvent(new CustomEvent("board:detail", { detail }));
    if (focus) $("detail-title").focus();
  }

  function renderDetail(f, entries) {
    const nodes = [];
    const about = [f.id, f.product, f.owner, f.priority != null ? `priority ${f.priority}` : null];
    nodes.push(el("p", "subtitle", about.filter(Boolean).join(" · ")));
    nodes.push(why(f, entries));

    const facts = el("dl", "facts");
    const fact = (name, value) => {
      if (value === null || value === undefined) return;
      facts.append(el("dt", null, name));
      const dd = el("dd");
      if (value instanceof Node) dd.append(value);
      else dd.textContent = value;
      facts.append(dd);
    };
    const seconds = inStage(f);
    const sla = view.slas[f.stage];
    fact("Stage", label(f.stage));
    fact("In stage", `${longSpan(seconds)} since ${when(f.entered_stage_at)}` +
      (sla ? ` (SLA ${longSpan(sla)})` : ""));
    fact("Created", when(f.created_at));
    fact("Target launch", f.target_launch ? day(f.target_launch) : "none set");
    fact("Forecast", forecastText(f));
    if (f.launched_at) fact("Launched", when(f.launched_at));
    if (f.blocked) fact("Blocked", f.blocked_reason || "yes");
    if (f.uat_failures) fact("UAT failures", String(f.uat_failures));
    nodes.push(facts);

    nodes.push(el("h3", null, "Risk"));
    if (!f.risk_reasons.length && !f.open_risks.length) {
      nodes.push(el("p", "muted", "Not at risk, no open risks."));
    } else {
      if (f.risk_reasons.length) {
        const line = el("p", "badges");
        line.append(...f.risk_reasons.map(badge));
        nodes.push(line);
        nodes.push(el("p", null, `At risk: ${f.risk_reasons.map((r) => REASON_HELP[r] || r).join("; ")}.`));
      }
      if (f.open_risks.length) {
        const list = el("ul", "risks");
        for (const r of f.open_risks) {
          const li = el("li");
          li.append(el("span", `badge b-${r.severity === "critical" ? "critical_risk" : r.severity === "high" ? "high_risk" : "x"}`, r.severity));
          li.append(` ${r.title || r.risk_id} `, el("span", "muted", `(${r.risk_id}, raised ${when(r.raised_at)})`));
          list.append(li);
        }
        nodes.push(list);
      }
    }
    if (f.acceptance_criteria && f.acceptance_criteria.length) {
      nodes.push(el("h3", null, "Acceptance criteria"));
      const list = el("ul", "risks");
      for (const c of f.acceptance_criteria) list.append(el("li", null, c));
      nodes.push(list);
    }

    nodes.push(el("h3", null, `Timeline (${entries.length} events, newest first)`));
    const timeline = el("ol", "timeline");
    timeline.reversed = true;
    const newestFirst = entries
      .map((e, i) => [Date.parse(e.time), i, e])
      .sort((a, b) => b[0] - a[0] || b[1] - a[1]);
    for (const [, , e] of newestFirst) timeline.append(timelineItem(e));
    nodes.push(timeline);
    return nodes;
  }

  function forecastText(f) {
    const fc = f.forecast_launch;
    if (!fc || typeof fc !== "object") return "no forecast yet";
    const p50 = fc.p50 || fc.p50_date;
    const p85 = fc.p85 || fc.p85_date;
    let text;
    if (fc.waiting && fc.then_days) {
      // No date: nothing observed says when it moves on, only how long it takes from then.
      // Whole days from ten on: "65.7 days" is a precision no forecast has.
      const days = (n) => {
        const shown = n >= 10 ? Math.round(n) : n;
        return `${shown} day${shown === 1 ? "" : "s"}`;
      };
      text = fc.waiting === "unblock"
        ? "no launch date while blocked; once unblocked, "
        : "no launch date: longer in this stage than any feature seen to leave it; once it moves on, ";
      text += `50% within ${days(fc.then_days.p50)}, 85% within ${days(fc.then_days.p85)}`;
    } else {
      text = `50% by ${day(p50)}, 85% by ${day(p85)}`;
    }
    if (f.target_launch && p85) {  // beside the dates it judges, before what they rest on
      text += p85.slice(0, 10) > f.target_launch ? " — after the target" : " — within the target";
    }
    if (fc.confidence) text += `; ${confidenceText(fc)}`;
    return text;
  }

  // What a forecast's confidence rests on, in a PM's words (engine/report/status.py says
  // the same in the weekly report).
  function confidenceText(fc) {
    const n = fc.observations || 0;
    const seen = `${n.toLocaleString("en-US")} stay${n === 1 ? "" : "s"} of earlier features`;
    if (fc.waiting === "unblock") {
      return `low confidence: nobody can tell when a block ends; the days after it are based on ${seen}`;
    }
    if (fc.waiting === "exit") {
      return `low confidence: nobody can tell when it leaves this stage; the days after are based on ${seen}`;
    }
    if (fc.basis === "sla" || (!n && fc.confidence === "low")) {
      return "low confidence: too few earlier features to learn from, so the stage SLAs stand in";
    }
    if (fc.confidence === "high") return `high confidence: based on ${seen} in the stages ahead, 20 or more in each`;
    if (fc.basis === "mixed") return `${fc.confidence} confidence: based on ${seen}, and on the SLAs of stages with too few`;
    return `${fc.confidence} confidence: based on ${seen} in the stages ahead, fewer than 20 in some`;
  }

  function why(f, entries) {
    const box = el("p", "why");
    const last = [...entries].reverse().find(
      (e) => e.outcome === "applied" && e.to_stage === f.stage && e.from_stage !== e.to_stage,
    );
    let text = `In ${label(f.stage)} for ${longSpan(inStage(f))}`;
    if (last) {
      text += last.from_stage
        ? `: moved here from ${label(last.from_stage)} by ${last.type}`
        : `: created by ${last.type}`;
      text += ` on ${when(last.time)} (from ${last.source})`;
      if (last.skipped && last.skipped.length) {
        text += `, skipping ${last.skipped.map(label).join(", ")}`;
      }
    }
    const blockers = entries.filter(
      (e) => e.outcome === "rejected" && Date.parse(e.received_at) >= Date.parse(f.entered_stage_at),
    );
    text += ".";
    if (blockers.length) {
      const e = blockers[blockers.length - 1];
      text += ` Since then ${blockers.length} event${blockers.length === 1 ? " was" : "s were"} ` +
        `rejected, last ${e.type}: ${REJECTIONS[e.reason] || e.reason}.`;
    }
    box.textContent = text;
    return box;
  }

  function timelineItem(e) {
    const li = el("li");
    const moved = e.outcome === "applied" && e.from_stage !== e.to_stage;
    if (moved) li.classList.add("move");
    if (e.outcome === "rejected") li.classList.add("rejected");
    const head = el("div", "tl-head");
    const time = el("time", "tl-time", when(e.time));
    time.dateTime = e.time;
    head.append(time, el("span", "tl-type", e.type), el("span", `badge o-${e.outcome}`, e.outcome));
    li.append(head);
    const notes = [];
    if (moved) notes.push(e.from_stage ? `${label(e.from_stage)} → ${label(e.to_stage)}` : `created in ${label(e.to_stage)}`);
    if (e.skipped && e.skipped.length) notes.push(`skipped ${e.skipped.map(label).join(", ")}`);
    if (e.outcome === "rejected" && e.reason) notes.push(`rejected: ${REJECTIONS[e.reason] || e.reason} (${e.reason})`);
    else if (e.reason && RISK_LINES[e.type]) {
      // The engine's own lines: what changed, in words, the reason's name after.
      const help = REASON_HELP[e.reason] || e.reason;
      notes.push(`${RISK_LINES[e.type]}: ${help}${help === e.reason ? "" : ` (${e.reason})`}`);
    } else if (e.reason) notes.push(e.reason);
    notes.push(`from ${e.source}`);
    li.append(el("div", "tl-note", notes.join(" · ")));
    return li;
  }

  // --- start -----------------------------------------------------------------------------

  async function start() {
    try {
      const listing = await api("/workflows");
      const params = new URLSearchParams(location.search);
      const names = listing.workflows.map((w) => w.name);
      const wanted = params.get("workflow");
      const name = names.includes(wanted) ? wanted : listing.default;
      if (names.length > 1) {
        const select = $("workflow");
        for (const n of names) {
          const option = el("option", null, n);
          option.value = n;
          select.append(option);
        }
        select.value = name;
        $("workflow-field").hidden = false;
        select.addEventListener("change", async () => {
          await loadWorkflow(select.value);
          readFilters();
          poll();
        });
      }
      await loadWorkflow(name);
    } catch (err) {
      $("status").textContent = `Cannot load the workflow (${err.message}); reload to retry.`;
      return;
    }
    restoreFilters();
    await poll();
    showFirstMatch();
    const id = decodeURIComponent(location.hash.slice(1));
    if (id && view.cards.has(id)) openDetail(id, view.cards.get(id).btn);
  }

  async function loadWorkflow(name) {
    const workflow = await api(`/workflows/${encodeURIComponent(name)}`);
    view.workflow = workflow.name;
    view.first = true;
    buildColumns(workflow);
  }

  start();
})();
