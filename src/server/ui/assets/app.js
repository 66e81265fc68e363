// chaff's admin UI: one page, hash routes, no framework and nothing fetched
// from elsewhere. Every text from a message (subjects, addresses, symbol
// options) goes into the page as a text node, never as markup.
"use strict";

const ACTIONS = ["reject", "soft reject", "rewrite subject", "add header", "greylist", "no action"];
const ACTION_COLOURS = {
  "reject": "#b3261e", "soft reject": "#c26a00", "rewrite subject": "#a16207",
  "add header": "#7a4fc2", "greylist": "#6b7280", "no action": "#2e7d32",
};
const session = { csrf: null, privilege: null };
const main = document.getElementById("main");

// el("tag", {attr: value}, child, …): children are nodes or text.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function show(...nodes) {
  main.replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined));
}

function actionBadge(action) {
  return el("span", { class: "badge a-" + String(action).replace(/ /g, "-") }, action);
}

function fmt(number, digits = 2) {
  return typeof number === "number" && isFinite(number) ? number.toFixed(digits) : "–";
}

function bytes(n) {
  if (typeof n !== "number") return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function ago(secs) {
  if (typeof secs !== "number") return "never";
  if (secs < 120) return secs + " s";
  if (secs < 7200) return Math.round(secs / 60) + " min";
  if (secs < 172800) return Math.round(secs / 3600) + " h";
  return Math.round(secs / 86400) + " days";
}

function when(unix) {
  return new Date(unix * 1000).toLocaleString();
}

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Every request: same origin, the session cookie, and on changes the CSRF
// token. A 401 sends the browser to the login form.
async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: options.headers || {}, credentials: "same-origin" };
  if (init.method !== "GET") {
    init.headers["X-CSRF-Token"] = session.csrf || "";
    init.body = options.body;
  }
  const response = await fetch(path, init);
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  if (response.status === 401 && !options.noRedirect) {
    session.csrf = null;
    location.hash = "#/login";
  }
  if (!response.ok) throw new ApiError(response.status, (data && data.error) || response.statusText);
  return data;
}

function statusLine() {
  return el("div", { class: "status", role: "status", "aria-live": "polite" });
}

function say(line, text, ok) {
  line.className = "status " + (ok ? "success" : "error");
  line.textContent = text;
}

// ---- login -------------------------------------------------------------

function loginPage() {
  const error = el("p", { id: "login-error", class: "error", role: "alert" });
  const password = el("input", { id: "password", type: "password", name: "password", autocomplete: "current-password", required: true });
  const form = el("form", { class: "panel login", id: "login-form" },
    el("h1", {}, "Log in to chaff"),
    el("label", {}, "Password", password),
    el("div", { class: "actions" }, el("button", { id: "login-button", type: "submit" }, "Log in")),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const reply = await api("/ui/login", {
        method: "POST", noRedirect: true,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ password: password.value }),
      });
      session.csrf = reply.csrf;
      session.privilege = reply.privilege;
      password.value = "";
      location.hash = "#/";
      route();
    } catch (e) {
      error.textContent = e.status === 429 ? e.message : "Wrong password.";
      password.select();
    }
  });
  show(form);
  password.focus();
}

// ---- dashboard ---------------------------------------------------------

function card(label, value, id) {
  return el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, value));
}

// Messages per action per minute, stacked, the last hour.
function chart(perMinute) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  const width = 720, height = 220, left = 44, bottom = 26, top = 10, right = 8;
  const totals = perMinute.map((m) => ACTIONS.reduce((sum, a) => sum + (m.actions[a] || 0), 0));
  const peak = Math.max(1, ...totals);
  const scale = niceCeiling(peak);
  const plotW = width - left - right, plotH = height - top - bottom;
  const barW = plotW / Math.max(1, perMinute.length);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": "chart-title" });
  const title = svg("title", { id: "chart-title" });
  title.textContent = "Messages per minute by action, last hour; peak " + peak + " a minute";
  root.append(title);
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    root.append(svg("line", { x1: left, x2: width - right, y1: y, y2: y, stroke: "#e3e6eb" }));
    const label = svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#5b6475" });
    label.textContent = String(Math.round((scale * i) / 4));
    root.append(label);
  }
  perMinute.forEach((minute, i) => {
    let y = top + plotH;
    for (const action of ACTIONS) {
      const n = minute.actions[action] || 0;
      if (!n) continue;
      const h = (plotH * n) / scale;
      y -= h;
      const rect = svg("rect", { x: left + i * barW + 0.5, y, width: Math.max(1, barW - 1), height: h, fill: ACTION_COLOURS[action] });
      const tip = svg("title", {});
      tip.textContent = `${new Date(minute.minute * 1000).toLocaleTimeString()}: ${n} ${action}`;
      rect.append(tip);
      root.append(rect);
    }
    if ((i % 10 === 0 && i < perMinute.length - 6) || i === perMinute.length - 1) {
      const last = i === perMinute.length - 1;
      const label = svg("text", { x: last ? width - right : left + i * barW + barW / 2, y: height - 8, "text-anchor": last ? "end" : "middle", "font-size": 11, fill: "#5b6475" });
      label.textContent = new Date(minute.minute * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      root.append(label);
    }
  });
  const legend = el("div", { class: "legend" },
    ACTIONS.map((a) => el("span", { style: null, "data-colour": a }, a)));
  legend.querySelectorAll("span").forEach((span) => span.style.setProperty("--c", ACTION_COLOURS[span.dataset.colour]));
  return el("div", { class: "panel chart" }, el("h2", {}, "Messages per minute, last hour"), root, legend);
}

// The chart's top: four whole, round ticks that reach the peak.
function niceCeiling(n) {
  const tick = Math.max(1, n / 4);
  const power = Math.pow(10, Math.floor(Math.log10(tick)));
  for (const step of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) {
    const candidate = step * power;
    if (candidate >= tick && Number.isInteger(candidate)) return 4 * candidate;
  }
  return 40 * power;
}

async function dashboardPage() {
  const d = await api("/ui/api/dashboard");
  const model = d.model || {};
  const latency = d.latency_ms;
  const cards = el("div", { class: "cards" },
    card("Scanned since start", d.scanned, "scanned"),
    card("Last minute", d.throughput_last_minute + " msg"),
    card("Latency p50 / p90 / p99", latency ? `${fmt(latency.p50, 1)} / ${fmt(latency.p90, 1)} / ${fmt(latency.p99, 1)} ms` : "–"),
    card("Learned spam / ham", `${model.spam_learns ?? "–"} / ${model.ham_learns ?? "–"}`, "learned-counts"),
    card("Model", `${bytes(model.model_bytes)}, trained ${model.age_secs == null ? "never" : ago(model.age_secs) + " ago"}`),
    card("Rejected", d.actions["reject"] ?? 0),
    card("Rate-limited / greylisted", `${d.ratelimited} / ${d.greylisted}`),
    d.redis ? card("Redis", d.redis.up ? "up" : `down (${d.redis.failures} failures)`) : null,
    card("DNS checks", !d.dns ? "off" : d.dns.up
      ? "resolver up" + (d.dns.nameservers.length ? ` (${d.dns.nameservers.join(", ")})` : "")
      : `resolver down (${d.dns.failed_fast} messages failed fast)`),
  );
  show(el("h1", {}, "Dashboard"), cards, chart(d.per_minute));
}

// ---- history -----------------------------------------------------------

const historyFilter = { text: "", action: "", min: "", max: "", symbol: "" };

function matches(row, f) {
  if (f.action && row.action !== f.action) return false;
  if (f.min !== "" && row.score < Number(f.min)) return false;
  if (f.max !== "" && row.score > Number(f.max)) return false;
  if (f.symbol) {
    const wanted = f.symbol.toUpperCase();
    if (!Object.keys(row.symbols).some((s) => s.includes(wanted))) return false;
  }
  if (f.text) {
    const t = f.text.toLowerCase();
    const hay = [row.subject, row.sender_smtp, (row.rcpt_smtp || []).join(" "), row.ip, row["message-id"]].join("\n").toLowerCase();
    if (!hay.includes(t)) return false;
  }
  return true;
}

// Rows on one page of the history: the filters search every entry, the
// table shows this many at a time, so a full history (10,000 entries)
// lays out as fast as an empty one.
const PAGE_ROWS = 100;
let historyOffset = 0;

async function historyPage() {
  const started = performance.now();
  const data = await api("/ui/api/history");
  const rows = data.rows;
  const tbody = el("tbody", { id: "history-body" });
  const count = el("p", { class: "muted", id: "history-count" });
  const previous = el("button", { type: "button", class: "secondary", id: "history-previous" }, "← Newer");
  const next = el("button", { type: "button", class: "secondary", id: "history-next" }, "Older →");
  const render = () => {
    const shown = rows.filter((r) => matches(r, historyFilter));
    if (historyOffset >= shown.length) historyOffset = Math.max(0, Math.floor((shown.length - 1) / PAGE_ROWS) * PAGE_ROWS);
    const page = shown.slice(historyOffset, historyOffset + PAGE_ROWS);
    const fragment = document.createDocumentFragment();
    for (const row of page) {
      const open = () => { location.hash = "#/message/" + row.id; };
      fragment.append(el("tr", {
        class: "history-row", tabindex: 0, dataset: { id: row.id },
        onclick: open, onkeydown: (e) => { if (e.key === "Enter") open(); },
      },
        el("td", { class: "num wide" }, new Date(row.unix_time * 1000).toLocaleTimeString()),
        el("td", {}, actionBadge(row.action)),
        el("td", { class: "num" }, fmt(row.score)),
        el("td", { class: "subject" }, row.subject || "(no subject)"),
        el("td", { class: "sender" }, row.sender_smtp),
        el("td", { class: "wide" }, (row.rcpt_smtp || []).join(", ")),
        el("td", { class: "wide" }, row.ip)));
    }
    tbody.replaceChildren(fragment);
    const range = shown.length ? ` Showing ${historyOffset + 1}–${historyOffset + page.length}.` : "";
    count.textContent = `${shown.length} of ${rows.length} scans (the history keeps ${data.size}).${range}`;
    previous.disabled = historyOffset === 0;
    next.disabled = historyOffset + PAGE_ROWS >= shown.length;
  };
  previous.addEventListener("click", () => { historyOffset = Math.max(0, historyOffset - PAGE_ROWS); render(); });
  next.addEventListener("click", () => { historyOffset += PAGE_ROWS; render(); });
  const refilter = () => { historyOffset = 0; render(); };
  const field = (name, label, attrs) => {
    const input = el("input", Object.assign({ id: "filter-" + name, value: historyFilter[name] }, attrs));
    input.addEventListener("input", () => { historyFilter[name] = input.value; refilter(); });
    return el("label", {}, label, input);
  };
  const action = el("select", { id: "filter-action" }, el("option", { value: "" }, "any"), ACTIONS.map((a) => el("option", { value: a }, a)));
  action.value = historyFilter.action;
  action.addEventListener("change", () => { historyFilter.action = action.value; refilter(); });
  const filters = el("form", { class: "filters panel", role: "search", onsubmit: (e) => e.preventDefault() },
    field("text", "Subject, sender, recipient, IP", { type: "search" }),
    el("label", {}, "Action", action),
    field("min", "Score from", { type: "number", step: "any" }),
    field("max", "Score to", { type: "number", step: "any" }),
    field("symbol", "Symbol", { type: "search" }));
  const table = el("table", { id: "history-table", class: "fixed" },
    el("colgroup", {}, el("col", { class: "c-time wide" }), el("col", { class: "c-action" }), el("col", { class: "c-score" }),
      el("col", { class: "c-subject" }), el("col", { class: "c-sender" }), el("col", { class: "c-rcpt wide" }), el("col", { class: "c-ip wide" })),
    el("thead", {}, el("tr", {},
      el("th", { class: "num wide" }, "Time"), el("th", {}, "Action"), el("th", { class: "num" }, "Score"),
      el("th", {}, "Subject"), el("th", {}, "Sender"), el("th", { class: "wide" }, "Recipients"), el("th", { class: "wide" }, "IP"))),
    tbody);
  render();
  show(el("h1", {}, "History"), filters, count, el("div", { class: "panel" }, table),
    el("div", { class: "actions" }, previous, next));
  // For tools/ui-history-time: the request and the table, then the first
  // frame painted after it, in ms (the latter since navigation began).
  main.dataset.renderMs = String(Math.round(performance.now() - started));
  requestAnimationFrame(() => setTimeout(() => { main.dataset.paintedAt = String(Math.round(performance.now())); }));
}

// ---- one message -------------------------------------------------------

function symbolsTable(symbols, options, id) {
  const names = Object.keys(symbols).sort((a, b) => Math.abs(symbols[b]) - Math.abs(symbols[a]) || a.localeCompare(b));
  return el("table", { id },
    el("thead", {}, el("tr", {}, el("th", {}, "Symbol"), el("th", { class: "num" }, "Weight"), el("th", {}, "Options"))),
    el("tbody", {}, names.map((name) => el("tr", { dataset: { symbol: name } },
      el("td", {}, name), el("td", { class: "num" }, fmt(symbols[name])),
      el("td", { class: "options" }, ((options || {})[name] || []).join(", "))))));
}

function explanationPanel(x) {
  if (!x) return el("p", { class: "muted" }, "No explanation: the message is no longer kept.");
  return el("div", { class: "grid2" },
    el("div", { class: "panel" },
      el("h2", {}, "What the classifier weighed"),
      el("p", { class: "muted" }, `log-odds ${fmt(x.log_odds)}, bias ${fmt(x.bias_points)} points`),
      el("table", { id: "features-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Feature"), el("th", { class: "num" }, "Points"))),
        el("tbody", {}, x.features.map((f) => el("tr", {}, el("td", {}, f.text), el("td", { class: "num" }, fmt(f.points))))))),
    el("div", { class: "panel" },
      el("h2", {}, "Rules: configured and fitted weight"),
      el("table", { id: "rules-table" },
        el("thead", {}, el("tr", {}, el("th", {}, "Rule"), el("th", { class: "num" }, "Configured"), el("th", { class: "num" }, "Fitted"))),
        el("tbody", {}, x.rules.map((r) => el("tr", {}, el("td", {}, r.name + (r.pinned ? " (pinned)" : "")),
          el("td", { class: "num" }, fmt(r.configured)), el("td", { class: "num" }, fmt(r.fitted))))))));
}

async function messagePage(id) {
  const data = await api("/ui/api/message?id=" + encodeURIComponent(id));
  const e = data.entry;
  const status = statusLine();
  status.id = "action-status";
  const learn = (cls) => async (event) => {
    event.target.disabled = true;
    try {
      const r = await api(`/ui/api/learn?id=${e.id}&class=${cls}`, { method: "POST" });
      say(status, r.already_learned ? `Already learned as ${cls}.` : `Learned as ${cls}.`, true);
    } catch (err) { say(status, err.message, false); }
    event.target.disabled = false;
  };
  const flag = el("input", { id: "fuzzy-flag", type: "number", min: 1, value: 1 });
  const weight = el("input", { id: "fuzzy-weight", type: "number", min: 1, value: 10 });
  const report = async (event) => {
    event.target.disabled = true;
    try {
      await api(`/ui/api/fuzzy?id=${e.id}&flag=${Number(flag.value)}&weight=${Number(weight.value)}`, { method: "POST" });
      say(status, `Reported to fuzzy list ${flag.value}.`, true);
    } catch (err) { say(status, err.message, false); }
    event.target.disabled = false;
  };
  const canWrite = session.privilege === "write";
  const buttons = canWrite && data.kept ? el("div", { class: "actions" },
    el("button", { id: "learn-spam", type: "button", onclick: learn("spam") }, "Learn as spam"),
    el("button", { id: "learn-ham", type: "button", onclick: learn("ham") }, "Learn as ham"),
    el("label", {}, "Fuzzy list ", flag), el("label", {}, "weight ", weight),
    el("button", { id: "fuzzy-report", type: "button", class: "secondary", onclick: report }, "Report to fuzzy list"))
    : el("p", { class: "muted" }, data.kept ? "Learning needs the enable password." : "The message is no longer kept, so it cannot be learned from here.");
  show(
    el("p", {}, el("a", { href: "#/history" }, "← History")),
    el("h1", { id: "message-subject" }, e.subject || "(no subject)"),
    el("div", { class: "panel" }, el("dl", { class: "kv" },
      el("dt", {}, "Action"), el("dd", {}, actionBadge(e.action)),
      el("dt", {}, "Score"), el("dd", { id: "message-score" }, `${fmt(e.score)} (required ${fmt(e.required_score)})`),
      el("dt", {}, "Sender"), el("dd", {}, e.sender_smtp || "–"),
      el("dt", {}, "Recipients"), el("dd", {}, (e.rcpt_smtp || []).join(", ") || "–"),
      el("dt", {}, "Client IP"), el("dd", {}, e.ip || "–"),
      el("dt", {}, "Message-ID"), el("dd", {}, e["message-id"] || "–"),
      el("dt", {}, "Profile"), el("dd", {}, e.profile || "–"),
      el("dt", {}, "Scanned"), el("dd", {}, `${when(e.unix_time)}, ${fmt(e.time_real * 1000, 1)} ms, ${bytes(e.size)}`))),
    buttons, status,
    el("div", { class: "panel" }, el("h2", {}, "Symbols"), symbolsTable(e.symbols, e.options, "symbols-table")),
    explanationPanel(data.explanation));
}

// ---- scan --------------------------------------------------------------

function scanPage() {
  const message = el("textarea", { id: "scan-message", "aria-label": "Message", placeholder: "Paste a whole message, headers and body" });
  const file = el("input", { id: "scan-file", type: "file" });
  file.addEventListener("change", async () => { if (file.files[0]) message.value = await file.files[0].text(); });
  const fields = { from: "MAIL FROM", rcpt: "RCPT TO", ip: "Client IP", helo: "HELO", user: "Authenticated user" };
  const inputs = {};
  const status = statusLine();
  const result = el("div", { id: "scan-result" });
  const form = el("form", { class: "panel" },
    el("label", {}, "Message", message), el("label", {}, "…or a file", file),
    el("div", { class: "filters" }, Object.entries(fields).map(([name, label]) => {
      inputs[name] = el("input", { id: "scan-" + name });
      return el("label", {}, label, inputs[name]);
    })),
    el("div", { class: "actions" }, el("button", { id: "scan-button", type: "submit" }, "Scan")), status);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = Object.entries(inputs).filter(([, i]) => i.value.trim()).map(([n, i]) => `${n}=${encodeURIComponent(i.value.trim())}`).join("&");
    try {
      const r = await api("/ui/api/scan" + (query ? "?" + query : ""), { method: "POST", body: message.value });
      const v = r.verdict;
      const symbols = {}, options = {};
      for (const [name, s] of Object.entries(v.symbols || {})) { symbols[name] = s.score; if (s.options) options[name] = s.options; }
      say(status, "", true);
      result.replaceChildren(
        el("div", { class: "panel" }, el("dl", { class: "kv" },
          el("dt", {}, "Action"), el("dd", {}, actionBadge(v.action)),
          el("dt", {}, "Score"), el("dd", {}, `${fmt(v.score)} (required ${fmt(v.required_score)})`))),
        el("div", { class: "panel" }, el("h2", {}, "Symbols"), symbolsTable(symbols, options, "scan-symbols")),
        explanationPanel(r.explanation));
    } catch (err) { say(status, err.message, false); }
  });
  show(el("h1", {}, "Scan a message"), form, result);
}

// ---- learn -------------------------------------------------------------

function learnPage() {
  if (session.privilege !== "write") {
    show(el("h1", {}, "Learn"), el("p", { class: "muted" }, "Learning needs the enable password."));
    return;
  }
  const files = el("input", { id: "learn-files", type: "file", multiple: true });
  const cls = el("select", { id: "learn-class" }, el("option", { value: "spam" }, "spam"), el("option", { value: "ham" }, "ham"));
  const progress = el("progress", { id: "learn-progress", max: 1, value: 0 });
  const status = statusLine();
  status.id = "learn-status";
  const log = el("ul", { id: "learn-log" });
  const form = el("form", { class: "panel" },
    el("label", {}, "Messages or mbox files", files), el("label", {}, "Learn as", cls),
    el("div", { class: "actions" }, el("button", { type: "submit", id: "learn-button" }, "Learn")),
    el("label", {}, "Progress", progress), status, log);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const list = Array.from(files.files);
    progress.max = Math.max(1, list.length);
    progress.value = 0;
    let learned = 0, known = 0, refused = 0, counts = null;
    log.replaceChildren();
    for (const f of list) {
      try {
        const r = await api(`/ui/api/learnfile?class=${cls.value}`, { method: "POST", body: await f.arrayBuffer() });
        learned += r.learned; known += r.already_learned; refused += r.refused.length; counts = r.counts;
        log.append(el("li", {}, `${f.name}: ${r.learned} learned, ${r.already_learned} already known` + (r.refused.length ? `, refused: ${r.refused.join("; ")}` : "")));
      } catch (err) {
        refused++;
        log.append(el("li", { class: "error" }, `${f.name}: ${err.message}`));
      }
      progress.value += 1;
    }
    say(status, `${learned} learned, ${known} already known, ${refused} refused.` +
      (counts ? ` The model now holds ${counts.spam} spam and ${counts.ham} ham.` : ""), refused === 0);
  });
  show(el("h1", {}, "Learn"), form);
}

// ---- lists -------------------------------------------------------------

async function listsPage() {
  const data = await api("/ui/api/lists");
  const canWrite = session.privilege === "write";
  const panels = data.lists.map((list) => {
    const text = el("textarea", { id: "list-" + list.name, "aria-label": list.name + " entries", readonly: !canWrite });
    text.value = list.text;
    const status = statusLine();
    const save = async (event) => {
      event.target.disabled = true;
      try {
        await api("/ui/api/lists?name=" + encodeURIComponent(list.name), { method: "POST", body: text.value });
        say(status, "Saved and reloaded.", true);
      } catch (err) { say(status, err.message, false); }
      event.target.disabled = false;
    };
    const what = list.action ? `forces ${list.action}` : `weight ${fmt(list.weight)}`;
    return el("section", { class: "panel" },
      el("h2", {}, list.name),
      el("p", { class: "muted" }, `${list.type === "map" ? "map of " + list.kind : "URL list"}, ${what}; ${list.file}`),
      list.description ? el("p", {}, list.description) : null,
      text,
      canWrite ? el("div", { class: "actions" }, el("button", { type: "button", dataset: { list: list.name }, onclick: save }, "Save")) : null,
      status);
  });
  show(el("h1", {}, "Lists"),
    panels.length ? panels : el("p", { class: "muted" }, "No maps or URL lists are configured (see rules/README.md, [[map]])."));
}

// ---- symbols and configuration ----------------------------------------

async function symbolsPage() {
  const data = await api("/ui/api/symbols");
  const search = el("input", { id: "symbol-filter", type: "search" });
  const tbody = el("tbody");
  const render = () => {
    const q = search.value.toLowerCase();
    tbody.replaceChildren(...data.symbols
      .filter((s) => !q || s.symbol.toLowerCase().includes(q) || (s.description || "").toLowerCase().includes(q))
      .map((s) => el("tr", {}, el("td", {}, s.symbol), el("td", { class: "wide" }, s.group || ""),
        el("td", {}, s.description || ""), el("td", { class: "num" }, fmt(s.weight)),
        el("td", { class: "num" }, s.fitted == null ? "–" : fmt(s.fitted)),
        el("td", { class: "num" }, s.hits), el("td", { class: "num" }, s.rate == null ? "–" : (100 * s.rate).toFixed(1) + "%"))));
  };
  search.addEventListener("input", render);
  render();
  show(el("h1", {}, "Symbols"), el("form", { class: "filters panel", role: "search", onsubmit: (e) => e.preventDefault() }, el("label", {}, "Find a symbol", search)),
    el("div", { class: "panel" }, el("table", {},
      el("thead", {}, el("tr", {}, el("th", {}, "Symbol"), el("th", { class: "wide" }, "Group"), el("th", {}, "Description"),
        el("th", { class: "num" }, "Weight"), el("th", { class: "num" }, "Fitted"), el("th", { class: "num" }, "Hits"), el("th", { class: "num" }, "Rate"))),
      tbody)));
}

async function configPage() {
  const c = await api("/ui/api/config");
  const kv = (pairs) => el("dl", { class: "kv" }, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  show(el("h1", {}, "Configuration"),
    el("div", { class: "grid2" },
      el("div", { class: "panel" }, el("h2", {}, "Actions"), kv(Object.entries(c.actions).map(([k, v]) => [k, v == null ? "off" : fmt(v)]))),
      el("div", { class: "panel" }, el("h2", {}, "Model"), kv([
        ["format", c.model.format_version], ["learned spam / ham", `${c.model.spam_learns} / ${c.model.ham_learns}`],
        ["tokens", c.model.tokens], ["model", bytes(c.model.model_bytes)], ["journal", bytes(c.model.journal_bytes)],
        ["samples", c.model.samples], ["trained", c.model.trained_at ? when(c.model.trained_at) : "never"],
        ["fuzzy hashes", c.fuzzy.hashes], ["policy entries", c.policy ? c.policy.entries : "–"]])),
      el("div", { class: "panel" }, el("h2", {}, "Rules"), el("p", {}, `${c.rules.loaded} loaded, ${c.rules.skipped.reduce((n, s) => n + s.count, 0)} skipped`),
        c.rules.skipped.length ? el("table", {}, el("tbody", {}, c.rules.skipped.map((s) => el("tr", {}, el("td", {}, s.kind), el("td", {}, s.reason), el("td", { class: "num" }, s.count))))) : null)),
    el("div", { class: "panel" }, el("h2", {}, c.file ? "Configuration file " + c.file : "No configuration file: the defaults below are in force"),
      c.file ? el("pre", { id: "config-text" }, c.text) : null,
      el("details", {}, el("summary", {}, "Built-in defaults"), el("pre", {}, c.defaults))));
}

// ---- routing -----------------------------------------------------------

const routes = [
  [/^#?\/?$/, dashboardPage], [/^#\/history$/, historyPage], [/^#\/message\/(\d+)$/, messagePage],
  [/^#\/scan$/, scanPage], [/^#\/learn$/, learnPage], [/^#\/lists$/, listsPage],
  [/^#\/symbols$/, symbolsPage], [/^#\/config$/, configPage],
];

async function route() {
  const hash = location.hash || "#/";
  if (hash === "#/login" || !session.csrf) {
    if (!session.csrf) {
      try {
        const who = await api("/ui/api/session", { noRedirect: true });
        if (who.csrf) { session.csrf = who.csrf; session.privilege = who.privilege; }
      } catch (_) { /* shown as the login form */ }
    }
    if (!session.csrf) { chrome(false); loginPage(); return; }
    if (hash === "#/login") { location.hash = "#/"; return; }
  }
  chrome(true);
  for (const [pattern, page] of routes) {
    const m = hash.match(pattern);
    if (m) {
      try { await page(...m.slice(1)); } catch (e) {
        if (e.status !== 401) show(el("h1", {}, "Something went wrong"), el("p", { class: "error", role: "alert" }, e.message));
      }
      main.focus({ preventScroll: true });
      return;
    }
  }
  show(el("h1", {}, "Not found"), el("p", {}, el("a", { href: "#/" }, "Dashboard")));
}

function chrome(loggedIn) {
  document.getElementById("nav").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  document.getElementById("who").textContent = loggedIn ? (session.privilege === "write" ? "admin" : "read-only") : "";
  const hash = location.hash || "#/";
  document.querySelectorAll("#nav a").forEach((a) => {
    const target = a.getAttribute("href");
    const current = target === "#/" ? hash === "#/" : hash.startsWith(target) || (target === "#/history" && hash.startsWith("#/message/"));
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  });
}

document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/ui/logout", { method: "POST", noRedirect: true }); } catch (_) { /* logged out either way */ }
  session.csrf = null; session.privilege = null;
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
