// Small canvas plots for the playground (no build step, no library): heatmaps, lines, scatter, PCA.
"use strict";

const Plots = (() => {
  // Viridis-like ramp (5 stops), and a diverging one (blue - white - red) for scores.
  const SEQUENTIAL = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const DIVERGING = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 130], [178, 24, 43]];

  function ramp(stops, t) {
    t = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0));
    const x = t * (stops.length - 1), i = Math.min(stops.length - 2, Math.floor(x)), f = x - i;
    const c = stops[i].map((v, k) => Math.round(v + f * (stops[i + 1][k] - v)));
    return `rgb(${c[0]},${c[1]},${c[2]})`;
  }

  function finite(values) { return values.filter((v) => v !== null && Number.isFinite(v)); }

  /** Draw `rows` x `cols` of `matrix` (null = no value) into the plot area; returns the geometry for hit tests. */
  function heatmap(canvas, matrix, opts = {}) {
    const ctx = canvas.getContext("2d");
    const margin = { left: opts.left ?? 30, top: opts.top ?? 10, right: 60, bottom: opts.bottom ?? 24 };
    const rows = matrix.length, cols = rows ? matrix[0].length : 0;
    const flat = finite(matrix.flat());
    let lo = opts.min ?? Math.min(...flat), hi = opts.max ?? Math.max(...flat);
    if (opts.symmetric) { const m = Math.max(Math.abs(lo), Math.abs(hi)) || 1; lo = -m; hi = m; }
    if (!(hi > lo)) hi = lo + 1;
    const stops = opts.diverging ? DIVERGING : SEQUENTIAL;
    const w = (canvas.width - margin.left - margin.right) / Math.max(cols, 1);
    const h = (canvas.height - margin.top - margin.bottom) / Math.max(rows, 1);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = matrix[r][c];
        ctx.fillStyle = v === null || !Number.isFinite(v) ? "#ddd" : ramp(stops, (v - lo) / (hi - lo));
        ctx.fillRect(margin.left + c * w, margin.top + r * h, Math.ceil(w), Math.ceil(h));
      }
    }
    ctx.fillStyle = "#222";
    ctx.font = "10px sans-serif";
    if (opts.rowLabels) opts.rowLabels.forEach((t, r) => ctx.fillText(t, 4, margin.top + (r + 0.75) * h));
    if (opts.colLabels) {
      const every = Math.max(1, Math.ceil(12 / w));
      opts.colLabels.forEach((t, c) => { if (c % every === 0) ctx.fillText(t, margin.left + c * w, canvas.height - 8); });
    }
    // Colour bar with its range.
    const barX = canvas.width - margin.right + 12, barH = canvas.height - margin.top - margin.bottom;
    for (let i = 0; i < barH; i++) {
      ctx.fillStyle = ramp(stops, 1 - i / barH);
      ctx.fillRect(barX, margin.top + i, 12, 1);
    }
    ctx.fillStyle = "#222";
    ctx.fillText(fmt(hi), barX + 14, margin.top + 8);
    ctx.fillText(fmt(lo), barX + 14, margin.top + barH);
    return { margin, w, h, rows, cols };
  }

  /** The [row, col] under a mouse event, or null. */
  function cellAt(geometry, canvas, event) {
    const box = canvas.getBoundingClientRect();
    const x = (event.clientX - box.left) * (canvas.width / box.width) - geometry.margin.left;
    const y = (event.clientY - box.top) * (canvas.height / box.height) - geometry.margin.top;
    const c = Math.floor(x / geometry.w), r = Math.floor(y / geometry.h);
    return r >= 0 && c >= 0 && r < geometry.rows && c < geometry.cols ? [r, c] : null;
  }

  function outline(canvas, geometry, r, c, colour = "#000") {
    const ctx = canvas.getContext("2d");
    ctx.strokeStyle = colour;
    ctx.lineWidth = 1.5;
    ctx.strokeRect(geometry.margin.left + c * geometry.w + 0.5, geometry.margin.top + r * geometry.h + 0.5,
      geometry.w - 1, geometry.h - 1);
  }

  function axes(ctx, canvas, m, xr, yr) {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.strokeStyle = "#888";
    ctx.strokeRect(m, m / 2, canvas.width - 1.5 * m, canvas.height - 1.5 * m);
    ctx.fillStyle = "#222";
    ctx.font = "10px sans-serif";
    ctx.fillText(fmt(yr[1]), 2, m / 2 + 8);
    ctx.fillText(fmt(yr[0]), 2, canvas.height - m);
    ctx.fillText(fmt(xr[0]), m, canvas.height - 4);
    ctx.fillText(fmt(xr[1]), canvas.width - m, canvas.height - 4);
  }

  function scaler(canvas, m, xr, yr) {
    const sx = (x) => m + ((x - xr[0]) / (xr[1] - xr[0] || 1)) * (canvas.width - 1.5 * m);
    const sy = (y) => canvas.height - m - ((y - yr[0]) / (yr[1] - yr[0] || 1)) * (canvas.height - 1.5 * m);
    return [sx, sy];
  }

  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"];

  /** Lines: `series` = [{name, values}] against 0..n-1 (or `x`). */
  function lines(canvas, series, opts = {}) {
    const ctx = canvas.getContext("2d"), m = 34;
    const all = finite(series.flatMap((s) => s.values));
    const n = Math.max(...series.map((s) => s.values.length));
    const yr = [opts.min ?? Math.min(...all), opts.max ?? Math.max(...all)];
    if (!(yr[1] > yr[0])) yr[1] = yr[0] + 1;
    const xr = [opts.x0 ?? 0, (opts.x0 ?? 0) + Math.max(n - 1, 1)];
    axes(ctx, canvas, m, xr, yr);
    const [sx, sy] = scaler(canvas, m, xr, yr);
    series.forEach((s, k) => {
      ctx.strokeStyle = COLOURS[k % COLOURS.length];
      ctx.lineWidth = 2;
      ctx.beginPath();
      s.values.forEach((v, i) => {
        if (v === null || !Number.isFinite(v)) return;
        const x = sx(xr[0] + i), y = sy(v);
        i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y);
      });
      ctx.stroke();
      ctx.fillStyle = ctx.strokeStyle;
      ctx.fillText(s.name, m + 6 + 70 * k, m / 2 + 12);
    });
  }

  /** Scatter with labels: `points` = [[x, y]], `labels` = names. */
  function scatter(canvas, points, labels) {
    const ctx = canvas.getContext("2d"), m = 34;
    const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
    const pad = (lo, hi) => { const d = (hi - lo) * 0.15 || 1; return [lo - d, hi + d]; };
    const xr = pad(Math.min(...xs), Math.max(...xs)), yr = pad(Math.min(...ys), Math.max(...ys));
    axes(ctx, canvas, m, xr, yr);
    const [sx, sy] = scaler(canvas, m, xr, yr);
    points.forEach((p, i) => {
      ctx.fillStyle = COLOURS[i % COLOURS.length];
      ctx.beginPath();
      ctx.arc(sx(p[0]), sy(p[1]), 5, 0, 2 * Math.PI);
      ctx.fill();
      ctx.fillStyle = "#222";
      ctx.fillText(labels[i], sx(p[0]) + 7, sy(p[1]) - 5);
    });
  }

  /** The first two principal components of the rows of `X` (power iteration on the covariance). */
  function pca2(X) {
    const n = X.length, d = X[0].length;
    const mean = Array(d).fill(0);
    X.forEach((row) => row.forEach((v, j) => { mean[j] += v / n; }));
    const C = X.map((row) => row.map((v, j) => v - mean[j]));
    const total = C.reduce((s, row) => s + row.reduce((a, v) => a + v * v, 0), 0) || 1;
    const comps = [], explained = [];
    let R = C.map((row) => row.slice());
    for (let k = 0; k < 2; k++) {
      let v = Array.from({ length: d }, (_, j) => Math.sin(j + 1 + k)); // fixed start: the same map every run
      for (let it = 0; it < 200; it++) {
        const proj = R.map((row) => row.reduce((a, x, j) => a + x * v[j], 0));
        const next = Array(d).fill(0);
        R.forEach((row, i) => row.forEach((x, j) => { next[j] += x * proj[i]; }));
        const norm = Math.hypot(...next) || 1;
        v = next.map((x) => x / norm);
      }
      const scores = R.map((row) => row.reduce((a, x, j) => a + x * v[j], 0));
      explained.push(scores.reduce((a, s) => a + s * s, 0) / total);
      comps.push(scores);
      R = R.map((row, i) => row.map((x, j) => x - scores[i] * v[j])); // deflate
    }
    return { points: comps[0].map((x, i) => [x, comps[1][i]]), explained };
  }

  function cosine(a, b) {
    let ab = 0, aa = 0, bb = 0;
    a.forEach((x, i) => { ab += x * b[i]; aa += x * x; bb += b[i] * b[i]; });
    return ab / (Math.sqrt(aa * bb) || 1);
  }

  function fmt(v) { return Math.abs(v) >= 100 || v === 0 ? v.toFixed(0) : v.toPrecision(3); }

  return { heatmap, cellAt, outline, lines, scatter, pca2, cosine, ramp, fmt };
})();
