// Tool deliveries on the board: which webhook deliveries (GitHub, GitLab, Jira, generic)
// moved a feature, and each connector's recent deliveries with what became of them.
// Beside board.js, sharing its helpers (board-common.js): it adds a section to the feature
// dialog when board.js announces one ("board:detail") and a dialog of its own behind the
// header's "Tool deliveries" link. Reads GET /hooks and GET /hooks/{connector}/deliveries.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let listing = null; // promise of GET /hooks

  // One copy of the helpers with board.js (board-common.js): times and ages on the engine's
  // clock, which every answer of api() records.
  const { api, el, when, ago } = window.lifecycleBoard;

  function connectors() {
    if (listing === null) {
      listing = api("/hooks").then((answer) => answer.connectors.map((c) => (
        { ...c, pattern: new RegExp(c.source_pattern) }
      )));
      listing.catch(() => { listing = null; }); // try again next time
    }
    return listing;
  }

  // The delivery a history line came from: its event id less the "#n" of a delivery that
  // produced several events.
  function deliveryId(eventId) {
    return eventId.replace(/#\d+$/, "");
  }

  // --- the feature dialog's section --------------------------------------------------------

  let rendered = 0; // the latest feature dialog rendered: an older answer is dropped

  document.addEventListener("board:detail", async (event) => {
    const { entries, body } = event.detail;
    const mine = ++rendered;
    let known;
    try {
      known = await connectors();
    } catch (err) {
      return; // the board works without it
    }
    if (mine !== rendered || !body.isConnected) return;
    body.querySelector(".deliveries-section")?.remove();
    const section = el("section", "deliveries-section");
    section.setAttribute("aria-label", "Tool deliveries");
    const lines = [];
    for (const e of entries) {
      const connector = known.find((c) => c.pattern.test(e.source));
      if (connector) lines.push({ e, connector });
    }
    lines.sort((a, b) => Date.parse(b.e.time) - Date.parse(a.e.time));
    section.append(el("h3", null, `Tool deliveries (${lines.length})`));
    if (!lines.length) {
      const p = el("p", "muted", "No tool delivery has reached this feature. Deliveries that named no feature are in ");
      p.append(openLink("the connectors' recent deliveries", known[0]?.name, null), ".");
      section.append(p);
    } else {
      const list = el("ul", "deliveries-moved");
      for (const { e, connector } of lines) {
        const li = el("li");
        li.dataset.delivery = deliveryId(e.event_id);
        li.dataset.connector = connector.name;
        const head = el("div", "tl-head");
        const time = el("time", "tl-time", when(e.time, true));
        time.dateTime = e.time;
        head.append(
          time, el("span", "dl-age muted", ago(e.time)), el("span", "tl-type", e.type),
          el("span", `badge o-${e.outcome}`, e.outcome),
        );
        const note = el("div", "tl-note");
        note.append(
          el("span", "dl-connector", connector.name), " delivery ",
          openLink(deliveryId(e.event_id), connector.name, deliveryId(e.event_id)),
          " · ", el("span", "dl-source", e.source),
        );
        li.append(head, note);
        list.append(li);
      }
      section.append(list);
    }
    const timeline = [...body.querySelectorAll("h3")].find((h) => h.textContent.startsWith("Timeline"));
    body.insertBefore(section, timeline || null);
  });

  function openLink(text, connector, delivery) {
    const a = el("a", "dl-open", text);
    a.href = connector ? `/hooks/${encodeURIComponent(connector)}/deliveries` : "/hooks";
    a.addEventListener("click", (event) => {
      event.preventDefault();
      openDeliveries(connector, delivery);
    });
    return a;
  }

  // --- the connectors' recent deliveries -------------------------------------------------

  const dialog = el("dialog", "detail deliveries-dialog");
  dialog.id = "deliveries";
  dialog.setAttribute("aria-labelledby", "deliveries-title");
  const head = el("div", "detail-head");
  const title = el("h2", null, "Tool deliveries");
  title.id = "deliveries-title";
  title.tabIndex = -1;
  const close = el("button", "close", "×");
  close.type = "button";
  close.setAttribute("aria-label", "Close");
  close.addEventListener("click", () => dialog.close());
  head.append(title, close);
  const pick = el("label", "deliveries-pick");
  const select = el("select");
  select.id = "deliveries-connector";
  pick.append(el("span", null, "Connector "), select);
  const refresh = el("button", "deliveries-refresh", "Refresh");
  refresh.type = "button";
  refresh.addEventListener("click", () => showDeliveries(select.value, null));
  pick.append(refresh);
  const about = el("p", "muted deliveries-about");
  const content = el("div", "deliveries-content");
  const dbody = el("div", "detail-body");
  dbody.append(pick, about, content);
  dialog.append(head, dbody);
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  select.addEventListener("change", () => showDeliveries(select.value, null));

  async function openDeliveries(name, highlight) {
    if (!dialog.isConnected) document.body.append(dialog);
    if (!dialog.open) dialog.showModal();
    title.focus();
    let known;
    try {
      known = await connectors();
    } catch (err) {
      content.replaceChildren(el("p", "status", `Cannot list the connectors: ${err.message}`));
      return;
    }
    select.replaceChildren(...known.map((c) => {
      const option = el("option", null, c.name === c.kind ? c.name : `${c.name} (${c.kind})`);
      option.value = c.name;
      return option;
    }));
    const chosen = known.find((c) => c.name === name) || known[0];
    if (!chosen) {
      content.replaceChildren(el("p", "muted", "This engine serves no connector."));
      return;
    }
    select.value = chosen.name;
    await showDeliveries(chosen.name, highlight);
  }

  async function showDeliveries(name, highlight) {
    content.replaceChildren(el("p", "muted", "Loading…"));
    let answer;
    try {
      answer = await api(`/hooks/${encodeURIComponent(name)}/deliveries`);
    } catch (err) {
      content.replaceChildren(el("p", "status", `Cannot load the deliveries: ${err.message}`));
      return;
    }
    if (select.value !== name) return;
    const rows = answer.deliveries;
    about.textContent = `The last ${rows.length} deliveries to POST /hooks/${name}, newest first, ` +
      "as the engines that received them keep them (since they started)." +
      (answer.unanswered && answer.unanswered.length
        ? ` Not shown: the deliveries of ${answer.unanswered.join(", ")}, which did not answer.`
        : "");
    if (!rows.length) {
      content.replaceChildren(el("p", "muted", "No delivery yet."));
      return;
    }
    const table = el("table", "deliveries-table");
    const thead = el("thead");
    const hr = el("tr");
    for (const h of ["Received", "Delivery", "Event", "Outcome", "What happened"]) hr.append(el("th", null, h));
    thead.append(hr);
    const tbody = el("tbody");
    let hit = null;
    for (const d of rows) {
      const tr = el("tr");
      tr.dataset.delivery = d.delivery;
      tr.dataset.outcome = d.outcome;
      const received = el("td");
      const time = el("time", "tl-time", when(d.received_at, true));
      time.dateTime = d.received_at;
      received.append(time, el("div", "dl-age muted", ago(d.received_at)));
      const outcome = el("td");
      outcome.append(el("span", `badge d-${d.outcome}`, d.outcome));
      tr.append(received, el("td", "dl-id", d.delivery), el("td", "tl-type", d.event || "—"), outcome, happened(d));
      if (highlight && d.delivery === highlight) {
        tr.classList.add("hit");
        hit = tr;
      }
      tbody.append(tr);
    }
    table.append(thead, tbody);
    const nodes = [table];
    if (highlight && !hit) {
      nodes.unshift(el("p", "muted", `Delivery ${highlight} is no longer among the last ${rows.length} kept.`));
    }
    content.replaceChildren(...nodes);
    if (hit) hit.scrollIntoView({ block: "nearest" });
  }

  function happened(d) {
    const td = el("td", "dl-what");
    if (d.events && d.events.length) {
      const list = el("ul", "dl-events");
      for (const e of d.events) {
        const li = el("li");
        li.append(el("span", "tl-type", e.type), ` ${e.subject || "—"} `,
          el("span", `badge o-${e.outcome}`, e.outcome));
        const more = [e.stage ? `now ${e.stage}` : null, e.reason].filter(Boolean).join(", ");
        if (more) li.append(el("span", "muted", ` ${more}`));
        list.append(li);
      }
      td.append(list);
    }
    const notes = [d.reason, ...(d.notes || [])].filter((n, i, all) => n && all.indexOf(n) === i);
    if (notes.length) td.append(el("div", "tl-note", notes.join("; ")));
    if (!td.childNodes.length) td.textContent = "—";
    return td;
  }

  const link = $("deliveries-link");
  if (link) {
    link.addEventListener("click", (event) => {
      event.preventDefault();
      openDeliveries(null, null);
    });
  }
})();
