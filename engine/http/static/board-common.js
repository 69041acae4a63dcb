// What the board's scripts share, in one copy: asking the engine (api), making elements
// (el), and showing times and ages on the engine's clock. Every answer of the engine carries
// its clock in the Lifecycle-Now header; ages are measured on it, as the engine's SLAs, risks
// and forecasts are (during the demo it runs a simulated day per second, far behind this
// browser's clock). Loaded before board.js and board-deliveries.js, which read
// window.lifecycleBoard.
"use strict";

window.lifecycleBoard = (() => {
  let engineClock = null; // the engine's clock at its last answer (ms since the epoch)

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${path} answered ${response.status}`);
    const now = Date.parse(response.headers.get("Lifecycle-Now") || "");
    if (!Number.isNaN(now)) engineClock = now;
    return response.json();
  }

  // The engine's clock as of its last answer (this browser's until the first one).
  function engineNow() {
    return engineClock === null ? Date.now() : engineClock;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // "5w 3d", "2d 4h", "3h 12m", "7m": a span of seconds as a card's age shows it.
  function span(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    if (d >= 14) return `${Math.floor(d / 7)}w ${d % 7}d`;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    return `${m}m`;
  }

  // How long ago a time was, on the engine's clock: "3h 12m ago".
  function ago(text) {
    if (!text) return "";
    return `${span((engineNow() - Date.parse(text)) / 1000)} ago`;
  }

  // Formatters made once: a toLocaleString per card costs more than the card (2,000 cards).
  const WHEN = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
  const WHEN_SECONDS = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    second: "2-digit",
  });

  // A time in this browser's zone, to the minute (to the second with seconds = true).
  function when(text, seconds = false) {
    if (!text) return "—";
    return (seconds ? WHEN_SECONDS : WHEN).format(new Date(text));
  }

  return { api, engineNow, el, span, ago, when };
})();
