// The playground: every panel calls the service's public HTTP API (same origin) and draws the answer.
"use strict";

const $ = (id) => document.getElementById(id);
const AA = "ACDEFGHIKLMNPQRSTVWY";

// ------------------------------------------------------------------ API

class ApiError extends Error {
  constructor(status, body) {
    // The API's own sentence, verbatim; a body that is not the project's JSON error as text.
    super(body && typeof body.detail === "string" ? body.detail : JSON.stringify(body));
    this.status = status;
    this.code = body && body.error;
  }
}

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

/** `fetch` + the key; JSON answers parsed; an error answer raises ApiError with its `detail`. */
async function api(method, path, { json, form, raw } = {}) {
  const init = { method, headers: headers(json !== undefined ? { "Content-Type": "application/json" } : {}) };
  if (json !== undefined) init.body = JSON.stringify(json);
  if (form !== undefined) init.body = form;
  const response = await fetch(path, init);
  if (!response.ok) {
    const text = await response.text();
    let body;
    try { body = JSON.parse(text); } catch { body = { detail: `${response.status} ${response.statusText}: ${text}` }; }
    throw new ApiError(response.status, body);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

/** Run `work` for a panel: busy state on its button, the API's error in its alert line. */
async function guarded(panel, work) {
  const error = $(`${panel}-error`), button = $(`${panel}-run`);
  error.textContent = "";
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await work();
  } catch (exc) {
    error.textContent = exc.message;
    if (exc.code) error.dataset.code = exc.code;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function download(name, content, type) {
  const blob = content instanceof Blob ? content : new Blob([content], { type });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

/** FASTA (">id" lines) or one sequence per line -> [{id, sequence}]; ids default to seq1, seq2, ... */
function parseRecords(text) {
  const out = [];
  let current = null;
  text.split(/\r?\n/).forEach((line) => {
    line = line.trim();
    if (!line) return;
    if (line.startsWith(">")) {
      current = { id: line.slice(1).trim().split(/\s+/)[0] || `seq${out.length + 1}`, sequence: "" };
      out.push(current);
    } else if (current && !current.sequence) {
      current.sequence = line;
    } else if (current && text.trimStart().startsWith(">")) {
      current.sequence += line;
    } else {
      out.push({ id: `seq${out.length + 1}`, sequence: line });
    }
  });
  return out;
}

// ------------------------------------------------------------------ tabs (arrow keys move, as WAI-ARIA tabs)

const tabs = [...document.querySelectorAll('[role="tab"]')];

function selectTab(tab, focus = true) {
  tabs.forEach((t) => {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  });
  if (focus) tab.focus();
  history.replaceState(null, "", `#${tab.id.slice(4)}`);
}

tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (e) => {
    const step = { ArrowRight: 1, ArrowLeft: -1 }[e.key];
    if (step) selectTab(tabs[(i + step + tabs.length) % tabs.length]);
    if (e.key === "Home") selectTab(tabs[0]);
    if (e.key === "End") selectTab(tabs[tabs.length - 1]);
  });
});

// ------------------------------------------------------------------ models

async function loadModels() {
  let models = [];
  try {
    models = (await api("GET", "/v1/models")).models;
    document.querySelectorAll(".error").forEach((e) => { e.textContent = ""; }); // e.g. a missing key, now given
  } catch (exc) {
    document.querySelectorAll(".error").forEach((e) => { e.textContent = exc.message; });
    return;
  }
  // Served models (weights found) first; the rest can still be asked for and answer with the API's reason.
  models.sort((a, b) => Number(b.weights_available) - Number(a.weights_available) || a.name.localeCompare(b.name));
  document.querySelectorAll("select[data-verb]").forEach((select) => {
    const verb = select.dataset.verb, kind = select.dataset.input;
    select.replaceChildren();
    models.filter((m) => (verb === "any" || m.verbs.includes(verb)) && (!kind || m.input_kind === kind))
      .forEach((m) => select.append(new Option(m.weights_available ? m.name : `${m.name} (no weights)`, m.name)));
  });
}

// ------------------------------------------------------------------ fold

const PLDDT_BINS = [[90, "#0053d6"], [70, "#65cbf3"], [50, "#ffdb13"], [-Infinity, "#ff7d45"]];
const plddtColour = (b) => PLDDT_BINS.find(([lo]) => b > lo)[1];
let viewer = null, lastFold = null;

/** Plain text is one sequence (line breaks dropped, ":" joins chains); FASTA records are chains. */
function foldSequence() {
  const text = $("fold-input").value;
  if (!text.trimStart().startsWith(">")) return text.replace(/\s+/g, "");
  return parseRecords(text).map((r) => r.sequence).join(":");
}

$("fold-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("fold", async () => {
    const model = $("fold-model").value, sequence = foldSequence();
    const answer = await api("POST", `/v1/models/${encodeURIComponent(model)}/fold`, { json: { sequence, format: "pdb" } });
    lastFold = { model, sequence, answer };
    $("fold-result").hidden = false;
    $("fold-ptm").textContent = answer.ptm === null || answer.ptm === undefined ? "n/a" : answer.ptm.toFixed(3);
    $("fold-plddt-mean").textContent = answer.mean_plddt !== undefined ? Number(answer.mean_plddt).toFixed(1) : "";
    if (!viewer) viewer = $3Dmol.createViewer($("fold-viewer"), { backgroundColor: "white" });
    viewer.clear();
    viewer.addModel(answer.pdb, "pdb");
    // pLDDT is in the B-factor column; AlphaFold's four confidence colours.
    const colorfunc = (atom) => plddtColour(atom.b);
    viewer.setStyle({}, { cartoon: { colorfunc }, stick: { radius: 0.15, colorfunc } });
    viewer.zoomTo();
    viewer.render();
    drawPae(answer.pae);
    Plots.lines($("fold-plddt"), [{ name: "pLDDT", values: answer.plddt }], { min: 0, max: 100 });
    $("fold-result").dataset.done = String(Date.now());
  });
});

let paeGeometry = null;
function drawPae(pae) {
  const canvas = $("fold-pae");
  if (!pae) { paeGeometry = null; canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height); return; }
  paeGeometry = Plots.heatmap(canvas, pae, { min: 0, left: 24, bottom: 14 });
  canvas.onmousemove = (e) => {
    const cell = Plots.cellAt(paeGeometry, canvas, e);
    $("fold-pae-hover").textContent = cell ? `residue ${cell[0] + 1} vs ${cell[1] + 1}: ${pae[cell[0]][cell[1]].toFixed(2)} Å` : "";
  };
}

$("fold-pdb").addEventListener("click", () => {
  if (lastFold) download(`${lastFold.model}.pdb`, lastFold.answer.pdb, "chemical/x-pdb");
});
$("fold-mmcif").addEventListener("click", () => guarded("fold", async () => {
  if (!lastFold) return;
  // Ask again for the bare mmCIF file: the JSON answer carried the format asked for only.
  const response = await api("POST", `/v1/models/${encodeURIComponent(lastFold.model)}/fold`,
    { json: { sequence: lastFold.sequence, format: "mmcif" }, raw: true });
  const body = await response.json();
  download(`${lastFold.model}.cif`, body.mmcif ?? body.pdb, "chemical/x-mmcif");
}));

// ------------------------------------------------------------------ embed

$("embed-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("embed", async () => {
    const model = $("embed-model").value, records = parseRecords($("embed-input").value);
    const answer = await api("POST", `/v1/models/${encodeURIComponent(model)}/embed`,
      { json: { sequences: records, pooling: "mean" } });
    const X = answer.embeddings, ids = answer.ids;
    $("embed-result").hidden = false;
    if (X.length >= 2) {
      const { points, explained } = Plots.pca2(X);
      Plots.scatter($("embed-map"), points, ids);
      $("embed-variance").textContent = `PC1 ${(100 * explained[0]).toFixed(0)}%, PC2 ${(100 * explained[1]).toFixed(0)}% of variance`;
    }
    const body = $("embed-neighbours").tBodies[0];
    body.replaceChildren();
    ids.forEach((id, i) => {
      let best = -1, sim = -Infinity;
      X.forEach((y, j) => { if (j !== i) { const s = Plots.cosine(X[i], y); if (s > sim) { sim = s; best = j; } } });
      const row = body.insertRow();
      row.insertCell().textContent = id;
      row.insertCell().textContent = best >= 0 ? ids[best] : "";
      row.insertCell().textContent = best >= 0 ? sim.toFixed(4) : "";
    });
    $("embed-result").dataset.done = String(Date.now());
  });
});

// ------------------------------------------------------------------ score (deep mutational scan)

let scan = null;

$("score-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("score", async () => {
    const model = $("score-model").value;
    const text = $("score-input").value;
    // FASTA: its first record; plain text: one sequence, line breaks dropped.
    const records = text.trimStart().startsWith(">") ? parseRecords(text) : [{ id: "seq1", sequence: text.replace(/\s+/g, "") }];
    const wt = records.length ? records[0].sequence.toUpperCase() : "";
    const mutations = [];
    [...wt].forEach((w, i) => { for (const a of AA) if (a !== w) mutations.push(`${w}${i + 1}${a}`); });
    const answer = await api("POST", `/v1/models/${encodeURIComponent(model)}/score`,
      { json: { sequences: [{ id: records[0]?.id ?? "wt", sequence: wt }], method: "masked_marginals", mutations } });
    const byName = new Map(answer.mutations.map((m, k) => [m, answer.scores[k]]));
    // Rows: the 20 residues; columns: positions. The wild type scores 0 (no change).
    const matrix = [...AA].map((a) => [...wt].map((w, i) => (a === w ? 0 : byName.get(`${w}${i + 1}${a}`) ?? null)));
    scan = { wt, matrix, answer, cursor: [0, 0] };
    $("score-result").hidden = false;
    drawScan();
    $("score-result").dataset.done = String(Date.now());
  });
});

function drawScan() {
  const canvas = $("score-heatmap");
  scan.geometry = Plots.heatmap(canvas, scan.matrix, {
    diverging: true, symmetric: true, rowLabels: [...AA], colLabels: [...scan.wt].map((w, i) => `${w}${i + 1}`),
  });
  [...scan.wt].forEach((w, i) => Plots.outline(canvas, scan.geometry, AA.indexOf(w), i, "#555"));
  if (document.activeElement === canvas) Plots.outline(canvas, scan.geometry, ...scan.cursor, "#000");
}

function describeCell(r, c) {
  const w = scan.wt[c], a = AA[r], v = scan.matrix[r][c];
  return a === w ? `${w}${c + 1} (wild type)` : `${w}${c + 1}${a}: ${v === null ? "no score" : v.toFixed(4)}`;
}

const heat = $("score-heatmap");
heat.addEventListener("mousemove", (e) => {
  if (!scan) return;
  const cell = Plots.cellAt(scan.geometry, heat, e), tip = $("tooltip");
  if (!cell) { tip.hidden = true; return; }
  const text = describeCell(...cell);
  $("score-hover").textContent = text;
  tip.textContent = text;
  tip.style.left = `${e.pageX + 12}px`;
  tip.style.top = `${e.pageY + 12}px`;
  tip.hidden = false;
});
heat.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
heat.addEventListener("keydown", (e) => {
  if (!scan) return;
  const moves = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[e.key];
  if (!moves) return;
  e.preventDefault();
  const [r, c] = scan.cursor;
  scan.cursor = [Math.min(19, Math.max(0, r + moves[0])), Math.min(scan.wt.length - 1, Math.max(0, c + moves[1]))];
  drawScan();
  $("score-hover").textContent = describeCell(...scan.cursor);
});
heat.addEventListener("focus", () => { if (scan) { drawScan(); $("score-hover").textContent = describeCell(...scan.cursor); } });

$("score-csv").addEventListener("click", () => {
  if (!scan) return;
  const lines = ["mutation,score", ...scan.answer.mutations.map((m, k) => `${m},${scan.answer.scores[k] ?? ""}`)];
  download(`${scan.answer.model}-scan.csv`, lines.join("\n") + "\n", "text/csv");
});

// ------------------------------------------------------------------ generate

let molecules = [];
const DEPICT_BATCH = 16;

$("generate-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("generate", async () => {
    const model = $("generate-model").value, seed = $("generate-input").value.trim();
    const body = { sequences: [seed], num_molecules: Number($("generate-n").value),
      scaled_radius: Number($("generate-radius").value), seed: Number($("generate-seed").value) };
    const guided = $("generate-guided").checked;
    if (guided) {
      Object.assign(body, { algorithm: "cma-es", property: $("generate-property").value,
        iterations: Number($("generate-iterations").value), particles: Number($("generate-particles").value),
        min_similarity: Number($("generate-similarity").value) });
      delete body.scaled_radius;
    }
    const answer = await api("POST", `/v1/models/${encodeURIComponent(model)}/generate`, { json: body });
    const item = answer.generated[0];
    const stats = Object.entries(item.stats || {}).map(([k, v]) => `${k} ${v}`).join(", ");
    $("generate-stats").textContent = `${item.generated.length} molecules${stats ? ` (${stats})` : ""}`;
    molecules = [];
    if (item.generated.length) {
      const all = item.generated.map((s, k) => ({ id: `m${k + 1}`, sequence: s }));
      for (let start = 0; start < all.length; start += DEPICT_BATCH) { // within the server's max_sequences
        const drawn = await api("POST", "/v1/chem/depict", { json: { sequences: all.slice(start, start + DEPICT_BATCH), reference: seed } });
        molecules.push(...drawn.molecules);
      }
    }
    $("generate-result").hidden = false;
    drawGrid();
    const trace = item.trace || {};
    $("generate-trace-figure").hidden = !(guided && trace.best);
    if (guided && trace.best) {
      Plots.lines($("generate-trace"), [{ name: "best", values: trace.best }, { name: "mean", values: trace.mean || [] }]);
    }
    $("generate-result").dataset.done = String(Date.now());
  });
});

function drawGrid() {
  const key = $("generate-sort").value;
  const sorted = [...molecules].sort((a, b) => (b[key] ?? -Infinity) - (a[key] ?? -Infinity));
  const grid = $("generate-grid");
  grid.replaceChildren();
  sorted.forEach((m) => {
    const card = document.createElement("figure");
    card.className = "molecule";
    card.tabIndex = 0;
    const img = document.createElement("img");
    img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(m.svg)}`;
    img.alt = m.smiles;
    const caption = document.createElement("figcaption");
    caption.textContent = `${m.smiles} · QED ${m.qed.toFixed(2)} · logP ${m.logp.toFixed(2)}` +
      (m.similarity === null ? "" : ` · sim ${m.similarity.toFixed(2)}`);
    card.append(img, caption);
    grid.append(card);
  });
}
$("generate-sort").addEventListener("change", drawGrid);

// ------------------------------------------------------------------ jobs (POST /v1/jobs, poll, download)

const polling = new Map();

function jobRow(job) {
  const body = $("jobs-table").tBodies[0];
  let row = body.querySelector(`tr[data-id="${CSS.escape(job.id)}"]`);
  if (!row) {
    row = body.insertRow(0);
    row.dataset.id = job.id;
    for (let k = 0; k < 6; k++) row.insertCell();
  }
  row.dataset.state = job.state;
  const [id, verb, model, state, progress, actions] = row.cells;
  id.textContent = job.id;
  verb.textContent = job.verb;
  model.textContent = job.model;
  state.textContent = job.state + (job.error ? `: ${job.error}` : "");
  const bar = document.createElement("progress");
  bar.max = 1;
  bar.value = job.progress ?? 0;
  progress.replaceChildren(bar, ` ${job.n_done ?? 0}/${job.n_total ?? "?"}` + (job.n_failed ? ` (${job.n_failed} failed)` : ""));
  actions.replaceChildren();
  const button = (label, fn) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.addEventListener("click", () => guarded("jobs", fn));
    actions.append(b);
  };
  if (job.state === "done") {
    button("Download results", async () => {
      const response = await api("GET", `/v1/jobs/${encodeURIComponent(job.id)}/results`, { raw: true });
      download(filename(response, `${job.id}-results`), await response.blob());
    });
  }
  if (job.n_failed) {
    button("Download errors", async () => {
      const response = await api("GET", `/v1/jobs/${encodeURIComponent(job.id)}/errors`, { raw: true });
      download(`${job.id}-errors.csv`, await response.blob());
    });
  }
  if (job.state === "queued" || job.state === "running") {
    button("Cancel", async () => jobRow(await api("POST", `/v1/jobs/${encodeURIComponent(job.id)}/cancel`)));
  } else {
    button("Delete", async () => { await api("DELETE", `/v1/jobs/${encodeURIComponent(job.id)}`); row.remove(); });
  }
  return row;
}

function filename(response, fallback) {
  const match = /filename="?([^";]+)"?/.exec(response.headers.get("Content-Disposition") || "");
  return match ? match[1] : fallback;
}

function watch(id) {
  if (polling.has(id)) return;
  const tick = async () => {
    try {
      const job = await api("GET", `/v1/jobs/${encodeURIComponent(id)}`);
      jobRow(job);
      if (job.state === "queued" || job.state === "running") { polling.set(id, setTimeout(tick, 500)); return; }
    } catch (exc) {
      $("jobs-error").textContent = exc.message;
    }
    polling.delete(id);
  };
  polling.set(id, setTimeout(tick, 0));
}

$("jobs-form").addEventListener("submit", (e) => {
  e.preventDefault();
  guarded("jobs", async () => {
    let options;
    try { options = JSON.parse($("jobs-options").value || "{}"); } catch (exc) { throw new Error(`options: not JSON (${exc.message})`); }
    const request = { verb: $("jobs-verb").value, model: $("jobs-model").value, options };
    if ($("jobs-format").value) request.output_format = $("jobs-format").value;
    const file = $("jobs-file").files[0];
    const form = new FormData();
    form.append("request", JSON.stringify(request));
    if (file) form.append("file", file, file.name);
    const job = await api("POST", "/v1/jobs", { form });
    jobRow(job);
    watch(job.id);
  });
});

async function refreshJobs() {
  try {
    const listing = await api("GET", "/v1/jobs?limit=50");
    listing.jobs.slice().reverse().forEach((job) => {
      jobRow(job);
      if (job.state === "queued" || job.state === "running") watch(job.id);
    });
  } catch (exc) {
    if (exc.status !== 404) $("jobs-error").textContent = exc.message; // 404: this server has no jobs API
  }
}
$("jobs-refresh").addEventListener("click", refreshJobs);
$("jobs-verb").addEventListener("change", () => { $("jobs-model").dataset.verb = $("jobs-verb").value; loadModels(); });

// ------------------------------------------------------------------ start

$("api-key").value = sessionStorage.getItem("bionemo-lite-key") || "";
$("api-key").addEventListener("change", () => { sessionStorage.setItem("bionemo-lite-key", $("api-key").value); loadModels(); });
const initial = tabs.find((t) => t.id === `tab-${location.hash.slice(1)}`) || tabs[0];
selectTab(initial, false);
loadModels().then(() => { document.body.dataset.ready = "true"; refreshJobs(); });
