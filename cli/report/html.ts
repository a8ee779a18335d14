// The report as one self-contained HTML file: inline SVG charts (charts.ts), each run's config and
// where its record came from; no script, no stylesheet or font from the network.
import type { RunHistory } from "../../storage/record.js";
import { evaluationChart, shardChart, timeChart, trainingChart, type PaperFigure } from "./charts.js";

/** One run as the report shows it. */
export interface ReportRun {
  history: RunHistory;
  /** Its config (from its latest checkpoint), when it has written one. */
  config?: unknown;
  /** The published figure for its preset, when one is known. */
  paper?: PaperFigure;
  /** Where it was read from, e.g. file:///…/store. */
  store: string;
}

const escape = (s: string): string => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** `key = value` lines of a nested config, keys dotted as in `--set`. */
export function configLines(config: unknown, prefix = ""): string[] {
  if (typeof config !== "object" || config === null || Array.isArray(config)) return [`${prefix} = ${JSON.stringify(config)}`];
  return Object.entries(config as Record<string, unknown>).flatMap(([k, v]) => {
    const key = prefix ? `${prefix}.${k}` : k;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? configLines(v, key) : [`${key} = ${JSON.stringify(v)}`];
  });
}

function runSummary(r: ReportRun): string {
  const { history: h } = r;
  const last = h.iterations.at(-1);
  const evalLast = h.evaluations.at(-1);
  const origin = h.origins.map((o) => `resumed from <code>${escape(o.manifestKey)}</code> (run ${escape(o.sourceRunId)}, iteration ${o.iteration})`).join("; ");
  const cells = [
    `<code>${escape(h.runId)}</code>`,
    String(h.iterations.length),
    last ? `${last.preLoss.toPrecision(4)} → ${last.postLoss.toPrecision(4)}` : "–",
    evalLast ? `${evalLast.loss.mean.toPrecision(4)} ± ${evalLast.loss.ci95.toPrecision(2)}${evalLast.accuracy ? `, acc ${(100 * evalLast.accuracy.mean).toFixed(1)} ± ${(100 * evalLast.accuracy.ci95).toFixed(1)}%` : ""} (it. ${evalLast.iteration})` : "–",
    r.paper ? escape(r.paper.label) : "–",
    origin || "–",
  ];
  return `<tr>${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
}

/** The whole report for one or more runs (several runs overlay their curves). */
export async function renderReport(runs: readonly ReportRun[], generatedAt: Date): Promise<string> {
  const hs = runs.map((r) => r.history);
  // The paper's figure only where every run shares it (a comparison of different setups draws none).
  const paper = runs.every((r) => r.paper && r.paper.label === runs[0]!.paper?.label) ? runs[0]!.paper : undefined;
  const charts: [string, string, string | undefined][] = [
    ["train-loss", "Training loss", await trainingChart(hs, "loss")],
    ["train-accuracy", "Training accuracy", await trainingChart(hs, "accuracy")],
    ["eval-loss", "Held-out loss", await evaluationChart(hs, "loss", paper)],
    ["eval-accuracy", "Held-out accuracy", await evaluationChart(hs, "accuracy", paper)],
    ["time", "Time per iteration", await timeChart(hs)],
    ["shards", "Shard durations", await shardChart(hs)],
  ];
  const figures = charts
    .filter(([, , svg]) => svg !== undefined)
    .map(([id, title, svg]) => `<figure id="${id}" aria-label="${escape(title)}">${svg}</figure>`)
    .join("\n");
  const configs = runs
    .map((r) => `<details${runs.length === 1 ? " open" : ""}><summary>config of <code>${escape(r.history.runId)}</code></summary><pre>${r.config === undefined ? "(no checkpoint written yet: config unknown)" : escape(configLines(r.config).join("\n"))}</pre></details>`)
    .join("\n");
  const title = `metatrain report: ${hs.map((h) => h.runId).join(", ")}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 60rem; color: #222; }
table { border-collapse: collapse; font-size: 0.9rem; } td, th { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left; }
figure { margin: 1.2rem 0; } pre { background: #f6f6f6; padding: 0.6rem; font-size: 0.8rem; overflow-x: auto; }
.meta { color: #666; font-size: 0.85rem; }
</style></head>
<body>
<h1>${escape(title)}</h1>
<p class="meta">From the runs' records in ${[...new Set(runs.map((r) => r.store))].map((s) => `<code>${escape(s)}</code>`).join(", ")}; generated ${generatedAt.toISOString()}. Iterations on the x axis are updates applied; training metrics are the meta-batch's query sets.</p>
<table><thead><tr><th>run</th><th>iterations recorded</th><th>last training loss (before → after)</th><th>last held-out evaluation</th><th>paper</th><th>history</th></tr></thead>
<tbody>${runs.map(runSummary).join("")}</tbody></table>
${figures}
${configs}
</body></html>
`;
}
