// fluxlora dashboard: the runs (list) and one run's page, live from /api/events (Server-Sent Events).
// Every text from the cluster goes in through textContent, never as HTML.
"use strict";

const state = { runs: new Map(), problems: {}, synced: false, route: null, detail: null, chart: null, likenessChart: null, renderedOnce: false };

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG = "http://www.w3.org/2000/svg";

function fmtLoss(loss) {
  return typeof loss === "number" ? loss.toPrecision(4) : "–";
}

function runHref(run) {
  return `#/runs/${encodeURIComponent(run.namespace)}/${encodeURIComponent(run.name)}`;
}

function sparkline(curve) {
  if (!curve || curve.length < 2) return el("div", { class: "line no-curve", text: "no loss reported yet" });
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 300 46");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  const steps = curve.map((p) => p[0]);
  const losses = curve.map((p) => p[1]);
  const [x0, x1] = [Math.min(...steps), Math.max(...steps)];
  const [y0, y1] = [Math.min(...losses), Math.max(...losses)];
  const points = curve.map(([s, l]) => {
    const x = x1 > x0 ? ((s - x0) / (x1 - x0)) * 296 + 2 : 150;
    const y = y1 > y0 ? 44 - ((l - y0) / (y1 - y0)) * 42 : 23;
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  svg.append(line);
  svg.setAttribute("aria-label", `loss curve: ${curve.length} points, steps ${x0} to ${x1}`);
  return svg;
}

function progressBar(run) {
  const fill = el("div");
  fill.style.width = `${Math.max(0, Math.min(100, run.percent || 0))}%`;
  return el("div", { class: `bar phase-bar-${run.phase}`, role: "progressbar", "aria-valuenow": run.percent || 0 }, fill);
}

function facts(run) {
  return el(
    "div",
    { class: "facts" },
    el("span", { class: "progress-text" }, el("b", { text: run.progressText || "–" })),
    run.stage ? el("span", { class: "stage" }, el("b", { text: run.stage })) : null,
    el("span", {}, "loss ", el("b", { class: "loss", text: fmtLoss(run.loss) })),
    el("span", {}, "ETA ", el("b", { class: "eta", text: run.eta || "–" })),
    el("span", {}, "attempts ", el("b", { class: "attempts", text: run.attempts })),
    run.rate ? el("span", {}, el("b", { text: run.rate })) : null,
  );
}

function sampleStrip(run) {
  const latest = run.latestSamples;
  if (!latest) return el("div", { class: "line samples-none", text: run.latestSampleStep == null ? "no samples yet" : "" });
  return el(
    "div",
    { class: "strip", "data-step": latest.step },
    el("span", { class: "line" }, "samples at step ", el("b", { class: "sample-step", text: latest.step })),
    latest.cells.map((cell) =>
      el(
        "figure",
        {},
        el("img", { src: cell.url, alt: `step ${cell.step}, prompt ${cell.prompt}: ${cell.promptText}`, title: cell.promptText, loading: "lazy", "data-step": cell.step, "data-prompt": cell.prompt }),
      ),
    ),
  );
}

function warnings(run) {
  if (!run.warnings.length) return null;
  return el(
    "details",
    { class: "warn" },
    el("summary", { text: `${run.warnings.length} warning${run.warnings.length > 1 ? "s" : ""}` }),
    el("ul", {}, run.warnings.map((w) => el("li", { text: w }))),
  );
}

function resumeLine(run) {
  const where = run.resume && run.resume.checkpoint ? `${run.resume.checkpoint} (step ${run.resume.step})` : "none yet";
  return el("div", { class: "line resume" }, "resume checkpoint ", el("b", { text: where }));
}

function queueLine(run) {
  if (!run.queue) return null;
  return el("div", { class: "line queue" }, "Kueue ", el("b", { text: run.queue }));
}

function likenessLine(run) {
  if (!run.likeness) return null;
  return el("div", { class: `line likeness likeness-${run.likeness.state}` }, "likeness ", el("b", { text: run.likeness.text }));
}

// What a run's card and its page both show, in this order.
function statusLines(run) {
  return [
    progressBar(run),
    facts(run),
    queueLine(run),
    el("div", { class: "line gpu" }, "GPU ", el("b", { text: run.gpuText })),
    resumeLine(run),
    likenessLine(run),
    run.message ? el("div", { class: "message", text: run.message }) : null,
    warnings(run),
  ];
}

function card(run) {
  return el(
    "article",
    { class: "card", "data-key": run.key, "data-phase": run.phase },
    el(
      "h2",
      {},
      el("a", { href: runHref(run), text: run.name }),
      el("span", { class: "ns", text: `${run.namespace} · ${run.profile || ""}` }),
      el("span", { class: `phase phase-${run.phase}`, text: run.phase }),
    ),
    ...statusLines(run),
    sparkline(run.curve),
    sampleStrip(run),
  );
}

// ------------------------------------------------------------------------------------ the list

function renderCount() {
  const n = state.runs.size;
  document.getElementById("scope").textContent = `${n} run${n === 1 ? "" : "s"}`;
}

function renderList() {
  const list = document.getElementById("list");
  const runs = [...state.runs.values()].sort((a, b) => a.key.localeCompare(b.key));
  renderCount();
  list.replaceChildren(...(runs.length ? runs.map(card) : [el("p", { class: "empty", text: state.synced ? "No FluxLoraRuns yet." : "Loading runs…" })]));
}

function updateCard(run) {
  renderCount();
  const list = document.getElementById("list");
  const old = list.querySelector(`article[data-key="${CSS.escape(run.key)}"]`);
  if (old) old.replaceWith(card(run));
  else renderList();
}

function removeCard(key) {
  const old = document.querySelector(`article[data-key="${CSS.escape(key)}"]`);
  if (old) old.remove();
  renderCount();
}

function renderProblems() {
  const box = document.getElementById("problems");
  const entries = Object.entries(state.problems);
  box.hidden = entries.length === 0;
  box.replaceChildren(...entries.map(([source, text]) => el("div", { text: `${source}: ${text}` })));
}

// ------------------------------------------------------------------------------------ a run's page

function lossChart(container, curve) {
  container.replaceChildren();
  if (!curve || curve.length === 0) {
    container.append(el("p", { class: "line", text: "No loss reported yet." }));
    return;
  }
  const width = Math.max(300, Math.min(900, container.clientWidth || 440));
  const data = [curve.map((p) => p[0]), curve.map((p) => p[1])];
  state.chart = new uPlot(
    {
      width,
      height: 240,
      scales: { x: { time: false } },
      series: [{ label: "step" }, { label: "loss", stroke: "#2f6fdf", width: 2, value: (u, v) => (v == null ? "–" : v.toPrecision(4)) }],
      axes: [{ label: "global step" }, { label: "loss (avr_loss)" }],
    },
    data,
    container,
  );
}

function destroyCharts() {
  for (const key of ["chart", "likenessChart"]) {
    if (state[key]) {
      state[key].destroy();
      state[key] = null;
    }
  }
}

// The likeness by step (a gap where a step's samples hold no face), the threshold, and the best checkpoint marked.
function likenessChart(container, run) {
  container.replaceChildren();
  const curve = run.likenessCurve || [];
  if (!run.likeness) {
    container.append(el("p", { class: "line", text: "Likeness is not scored for this run (spec.evaluation)." }));
    return;
  }
  if (!curve.length) {
    container.append(el("p", { class: "line likeness-none", text: run.likeness.text }));
    return;
  }
  const best = run.likeness.best;
  const threshold = run.likeness.threshold;
  const steps = curve.map((p) => p[0]);
  const data = [
    steps,
    curve.map((p) => p[1]),
    curve.map((p) => (best && p[0] === best.step ? p[1] : null)),
    steps.map(() => (typeof threshold === "number" ? threshold : null)),
  ];
  const width = Math.max(300, Math.min(900, container.clientWidth || 440));
  // Legend values: "no face" only for a step whose samples had none (the cursor on it), never 0.
  const fmt = (u, v, sidx, idx) => (idx == null ? "–" : v == null ? "no face" : v.toFixed(3));
  const noFace = curve.filter((p) => p[1] == null).map((p) => p[0]);
  const markNoFace = (u) => {
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#9aa5b1";
    ctx.fillStyle = "#5d6875";
    ctx.setLineDash([3, 3]);
    ctx.font = `${Math.round(11 * devicePixelRatio)}px system-ui, sans-serif`;
    ctx.textAlign = "center";
    for (const step of noFace) {
      const x = Math.round(u.valToPos(step, "x", true));
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
      ctx.fillText("no face", x, u.bbox.top + Math.round(14 * devicePixelRatio));
    }
    ctx.restore();
  };
  state.likenessChart = new uPlot(
    {
      width,
      height: 240,
      scales: { x: { time: false }, y: { range: [0, 1] } },
      series: [
        { label: "step" },
        { label: "likeness", stroke: "#8a3ffc", width: 2, points: { show: true, size: 7, fill: "#8a3ffc" }, spanGaps: false, value: fmt },
        { label: "best", stroke: "#d03030", width: 0, points: { show: true, size: 14, fill: "#d03030", stroke: "#fff", width: 2 }, paths: () => null, value: (u, v) => (v == null ? "–" : v.toFixed(3)) },
        { label: "threshold", stroke: "#9aa5b1", width: 1, dash: [6, 4], points: { show: false }, value: (u, v) => (v == null ? "–" : v.toFixed(2)) },
      ],
      axes: [{ label: "global step" }, { label: "likeness (1 − face distance)" }],
      hooks: { draw: [markNoFace] },
    },
    data,
    container,
  );
}

function likenessTable(run) {
  const rows = run.likenessRows || [];
  if (!rows.length) return null;
  return el(
    "table",
    { class: "likeness-table" },
    el("thead", {}, el("tr", {}, ["step", "likeness", "faces", "passed", ""].map((c) => el("th", { text: c })))),
    el(
      "tbody",
      {},
      rows.map((r) =>
        el(
          "tr",
          { class: r.best ? "best" : r.noFace ? "no-face" : null, "data-step": r.step },
          el("td", { text: r.step }),
          el("td", { class: "value", text: r.likeness }),
          el("td", { text: r.faces }),
          el("td", { text: r.passed }),
          el("td", { class: "mark", text: r.best ? "★ best" : "" }),
        ),
      ),
    ),
  );
}

function bestLine(run) {
  const best = run.likeness && run.likeness.best;
  if (!best) return null;
  return el("p", { class: "line best-checkpoint" }, "best checkpoint ", el("b", { text: best.file || best.checkpoint }), ` (step ${best.step}, from ${best.checkpoint})`);
}

function sampleGrid(samples) {
  if (!samples.steps.length) return el("p", { class: "line", text: "No sample images yet." });
  const byKey = new Map(samples.cells.map((c) => [`${c.step}/${c.prompt}`, c]));
  const head = el("tr", {}, el("th", { text: "prompt \\ step" }), samples.steps.map((s) => el("th", { class: "step", "data-step": s, text: `step ${s}` })));
  const rows = samples.prompts.map((prompt, i) =>
    el(
      "tr",
      { "data-prompt": i },
      el("th", { class: "prompt", text: `${i}: ${prompt}` }),
      samples.steps.map((s) => {
        const cell = byKey.get(`${s}/${i}`);
        if (!cell) return el("td", { class: "missing", text: "–" });
        return el(
          "td",
          {},
          el(
            "figure",
            {},
            el("img", { src: cell.url, alt: `step ${s}, prompt ${i}: ${prompt}`, title: `${cell.image} (${cell.size})`, loading: "lazy", "data-step": s, "data-prompt": i }),
          ),
        );
      }),
    ),
  );
  const note = samples.droppedSteps ? el("p", { class: "line", text: `${samples.droppedSteps} older steps are not shown (kept within the size bound); their images are on the output claim.` }) : null;
  return el("div", {}, el("table", { class: "grid" }, el("thead", {}, head), el("tbody", {}, rows)), note);
}

function reproList(run) {
  const repro = run.repro || {};
  const rows = [
    ["config hash", repro.configHash],
    ["dataset hash", repro.datasetHash],
    ["trainer image", repro.image],
    ["engine commit", repro.engineCommit],
    ["command of the last attempt", repro.command],
  ].filter(([, v]) => v);
  if (!rows.length) return el("p", { class: "line", text: "No reproducibility record yet (the trainer writes it when it starts)." });
  return el("dl", { class: "repro" }, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })]));
}

function publishList(run) {
  const publish = run.publish;
  if (!publish) return null;
  const head = el("p", { class: "line", id: "publish-state", text: `${publish.state} · ${publish.uri}${publish.message ? ` · ${publish.message}` : ""}` });
  const objects = el("ul", { class: "published" }, publish.objects.map((uri) => el("li", {}, el("code", { text: uri }))));
  return el("div", {}, el("h3", { text: "Published" }), el("div", { class: "panel" }, head, objects));
}

function table(name, columns, rows) {
  return el(
    "table",
    { class: name },
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { text: c })))),
    el("tbody", {}, rows.map((r) => el("tr", {}, columns.map((c) => el("td", { text: r[c] == null ? "" : r[c] }))))),
  );
}

function renderRun(run) {
  const page = document.getElementById("run");
  const chart = el("div", { class: "chart", id: "loss-chart" });
  const likeness = el("div", { class: "chart", id: "likeness-chart" });
  page.replaceChildren(
    el("p", {}, el("a", { href: "#/", text: "← all runs" })),
    el("h1", { "data-key": run.key }, el("span", { text: run.name }), el("span", { class: "ns", text: `${run.namespace} · ${run.profile || ""}` }), el("span", { class: `phase phase-${run.phase}`, text: run.phase })),
    el(
      "div",
      { class: "panel" },
      ...statusLines(run),
    ),
    el(
      "div",
      { class: "charts" },
      el("section", {}, el("h3", { text: "Loss" }), el("div", { class: "panel" }, chart)),
      el("section", {}, el("h3", { text: "Likeness" }), el("div", { class: "panel" }, likeness, bestLine(run), likenessTable(run))),
    ),
    el("h3", { text: "Samples (prompt × step)" }),
    el("div", { class: "panel samples" }, sampleGrid(run.samples)),
    el("h3", { text: "Command" }),
    el("div", { class: "panel" }, run.command ? el("pre", { class: "command", text: run.command }) : el("p", { class: "line", text: "Not rendered yet." })),
    el("h3", { text: "Reproducibility record" }),
    el("div", { class: "panel" }, reproList(run)),
    ...[publishList(run)].filter(Boolean),
    el("h3", { text: "Attempts" }),
    el("div", { class: "panel" }, table("attempts", ["number", "jobName", "result", "reason", "message", "preemptedBy", "resumedFrom", "resumedStep", "startTime", "admittedTime", "endTime"], run.attemptList)),
    el("h3", { text: "Conditions" }),
    el("div", { class: "panel" }, table("conditions", ["type", "status", "reason", "message", "lastTransitionTime"], run.conditions)),
  );
  destroyCharts();
  lossChart(chart, run.curve);
  likenessChart(likeness, run);
}

let refetchTimer = null;

async function loadRun(namespace, name) {
  const response = await fetch(`/api/runs/${encodeURIComponent(namespace)}/${encodeURIComponent(name)}`);
  const page = document.getElementById("run");
  if (!response.ok) {
    page.replaceChildren(el("p", {}, el("a", { href: "#/", text: "← all runs" })), el("p", { text: `No run ${namespace}/${name} (it may have been deleted).` }));
    return;
  }
  state.detail = await response.json();
  renderRun(state.detail);
  document.body.dataset.runReady = state.detail.key;
}

function route() {
  const match = location.hash.match(/^#\/runs\/([^/]+)\/([^/]+)$/);
  const list = document.getElementById("list");
  const page = document.getElementById("run");
  if (match) {
    state.route = { namespace: decodeURIComponent(match[1]), name: decodeURIComponent(match[2]) };
    list.hidden = true;
    page.hidden = false;
    delete document.body.dataset.runReady;
    loadRun(state.route.namespace, state.route.name);
  } else {
    state.route = null;
    destroyCharts();
    page.hidden = true;
    list.hidden = false;
    renderList();
  }
}

function onRunChanged(run) {
  state.runs.set(run.key, run);
  if (!state.route) updateCard(run);
  else if (`${state.route.namespace}/${state.route.name}` === run.key) {
    clearTimeout(refetchTimer);
    refetchTimer = setTimeout(() => loadRun(state.route.namespace, state.route.name), 250);
  }
}

// ------------------------------------------------------------------------------------ live updates

function connect() {
  const status = document.getElementById("connection");
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => {
    status.textContent = "live";
    status.className = "connection live";
  });
  source.addEventListener("error", () => {
    status.textContent = "reconnecting…";
    status.className = "connection down";
  });
  source.addEventListener("snapshot", (event) => {
    const data = JSON.parse(event.data);
    state.runs = new Map(data.runs.map((r) => [r.key, r]));
    state.problems = data.problems || {};
    state.synced = data.synced;
    renderProblems();
    if (!state.route) renderList();
    else onRunChanged(state.runs.get(`${state.route.namespace}/${state.route.name}`) || { key: "" });
    if (!state.renderedOnce) {
      state.renderedOnce = true;
      window.fluxloraListRenderedAt = performance.now();
      document.body.dataset.ready = "1";
    }
  });
  source.addEventListener("run", (event) => onRunChanged(JSON.parse(event.data)));
  source.addEventListener("delete", (event) => {
    const { key } = JSON.parse(event.data);
    state.runs.delete(key);
    if (!state.route) removeCard(key);
  });
  source.addEventListener("problems", (event) => {
    state.problems = JSON.parse(event.data).problems || {};
    renderProblems();
  });
}

window.addEventListener("hashchange", route);
route();
connect();
