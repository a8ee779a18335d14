// The report's charts: Vega-Lite specs over runs' records, rendered to static SVG by Vega headless
// (no browser, no network). One function per chart; each returns undefined when it has no data.
import * as vega from "vega";
import { compile, type TopLevelSpec } from "vega-lite";
import { iterationTimes, type RunHistory } from "../../storage/record.js";

/** A published figure to draw beside a run's held-out curve (the preset's paper). */
export interface PaperFigure {
  metric: "loss" | "accuracy";
  value: number;
  ci95?: number;
  label: string;
}

/** Points per series at most: longer runs are averaged in equal buckets of iterations (SVG stays small). */
export const MAX_POINTS = 2_000;

const WIDTH = 640;
const HEIGHT = 220;

/** Render a Vega-Lite spec to an SVG string. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

type Row = Record<string, string | number>;

/** Average `rows` (sorted by iteration) in buckets so that at most MAX_POINTS remain; fields averaged are `fields`. */
function downsample(rows: Row[], fields: string[]): Row[] {
  if (rows.length <= MAX_POINTS) return rows;
  const size = Math.ceil(rows.length / MAX_POINTS);
  const out: Row[] = [];
  for (let i = 0; i < rows.length; i += size) {
    const b = rows.slice(i, i + size);
    const r: Row = { ...b[0]! };
    for (const f of fields) r[f] = b.reduce((s, x) => s + Number(x[f]), 0) / b.length;
    out.push(r);
  }
  return out;
}

const multi = (hs: readonly RunHistory[]): boolean => hs.length > 1;
const axisX = { field: "iteration", type: "quantitative", title: "iteration", axis: { format: "d", tickMinStep: 1 } } as const;
const legend = { orient: "top", labelLimit: 400 } as const;

/** Training loss or accuracy on the meta-batch, before and after adaptation, one line each per run. */
export async function trainingChart(hs: readonly RunHistory[], metric: "loss" | "accuracy"): Promise<string | undefined> {
  const rows: Row[] = [];
  for (const h of hs) {
    for (const [phase, field] of [["before adaptation", metric === "loss" ? "preLoss" : "preAccuracy"], ["after adaptation", metric === "loss" ? "postLoss" : "postAccuracy"]] as const) {
      const series = h.iterations.filter((r) => Number.isFinite(r[field])).map((r) => ({ run: h.runId, phase, iteration: r.iteration, value: r[field]! }));
      rows.push(...downsample(series, ["value"]));
    }
  }
  if (rows.length === 0) return undefined;
  return renderSvg({
    width: WIDTH,
    height: HEIGHT,
    title: `training ${metric} on the meta-batch (query set)`,
    data: { values: rows },
    mark: { type: "line", strokeWidth: 1.5 },
    encoding: {
      x: axisX,
      y: { field: "value", type: "quantitative", title: metric, scale: metric === "loss" ? { type: "log" } : { zero: false } },
      // A colour per run, a dash per phase: one line per (run, phase), as many points as iterations.
      color: { field: "run", type: "nominal", title: null, legend: multi(hs) ? legend : null },
      strokeDash: { field: "phase", type: "nominal", title: null, legend, sort: ["after adaptation", "before adaptation"] },
    },
  });
}

/** Held-out evaluations: mean with its 95% CI band per run, and the paper's figure as a rule. */
export async function evaluationChart(hs: readonly RunHistory[], metric: "loss" | "accuracy", paper?: PaperFigure): Promise<string | undefined> {
  const rows: Row[] = [];
  for (const h of hs) {
    for (const e of h.evaluations) {
      const m = metric === "loss" ? e.loss : e.accuracy;
      if (m) rows.push({ run: h.runId, iteration: e.iteration, mean: m.mean, lo: m.mean - m.ci95, hi: m.mean + m.ci95 });
    }
  }
  if (rows.length === 0) return undefined;
  const color = { field: "run", type: "nominal", title: null, legend: multi(hs) ? legend : null } as const;
  const y = { type: "quantitative", title: `held-out ${metric} (95% CI)`, scale: { zero: false } } as const;
  const rule = paper && paper.metric === metric ? [{ data: { values: [{ v: paper.value, label: paper.label }] }, layer: [
    { mark: { type: "rule", strokeDash: [4, 3], color: "#888" }, encoding: { y: { field: "v", type: "quantitative" } } },
    { mark: { type: "text", align: "left", dx: 4, dy: -6, color: "#555" }, encoding: { y: { field: "v", type: "quantitative" }, x: { value: 0 }, text: { field: "label" } } },
  ] }] : [];
  return renderSvg({
    width: WIDTH,
    height: HEIGHT,
    title: `held-out evaluation: ${metric}`,
    layer: [
      { data: { values: rows }, mark: { type: "area", opacity: 0.2 }, encoding: { x: axisX, y: { ...y, field: "lo" }, y2: { field: "hi" }, color } },
      { data: { values: rows }, mark: { type: "line", point: true }, encoding: { x: axisX, y: { ...y, field: "mean" }, color } },
      ...rule,
    ],
  } as TopLevelSpec);
}

/** Wall time per iteration, stacked: compute (slowest shard + outer step) and orchestration (the rest); a row per run. */
export async function timeChart(hs: readonly RunHistory[]): Promise<string | undefined> {
  const rows: Row[] = [];
  for (const h of hs) {
    const t = downsample(iterationTimes(h.iterations).map((x) => ({ ...x })), ["seconds", "compute", "orchestration"]);
    for (const x of t) for (const part of ["compute", "orchestration"] as const) rows.push({ run: h.runId, iteration: Number(x.iteration), part, seconds: Number(x[part]) });
  }
  if (rows.length === 0) return undefined;
  return renderSvg({
    title: { text: "time per iteration: compute and orchestration", subtitle: "compute: the slowest shard + the outer step; orchestration: the rest (scheduling, checkpoints, evaluations, continue-as-new)" },
    data: { values: rows },
    facet: { row: { field: "run", type: "nominal", title: null } },
    spec: {
      width: WIDTH,
      height: 120,
      mark: { type: "area", interpolate: "step-after" },
      encoding: {
        x: axisX,
        y: { field: "seconds", type: "quantitative", stack: "zero", title: "seconds" },
        color: { field: "part", type: "nominal", title: null, legend, sort: ["compute", "orchestration"] },
        order: { field: "part", sort: "ascending" },
      },
    },
  } as TopLevelSpec);
}

/** Shard durations per worker: a box plot per worker, a column per run. */
export async function shardChart(hs: readonly RunHistory[]): Promise<string | undefined> {
  const rows: Row[] = [];
  for (const h of hs) for (const r of h.iterations) for (const s of r.shards) rows.push({ run: h.runId, worker: s.worker || "(unnamed)", seconds: s.seconds });
  if (rows.length === 0) return undefined;
  return renderSvg({
    title: "shard durations per worker",
    data: { values: rows },
    facet: { column: { field: "run", type: "nominal", title: null } },
    spec: {
      width: Math.max(160, Math.floor(WIDTH / hs.length) - 40),
      height: 160,
      mark: { type: "boxplot", extent: 1.5 },
      encoding: {
        x: { field: "worker", type: "nominal", title: "worker" },
        y: { field: "seconds", type: "quantitative", title: "seconds" },
        color: { field: "worker", type: "nominal", legend: null },
      },
    },
  } as TopLevelSpec);
}
