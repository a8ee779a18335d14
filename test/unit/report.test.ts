// The HTML report from records alone (no services, no browser): a line per (run, phase) with a
// point per iteration, CI bands, the paper's figure where the config matches a preset that has
// one, nothing fetched from the network; long series averaged down to MAX_POINTS.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { MAX_POINTS } from "../../cli/report/charts.js";
import { configLines, renderReport, type ReportRun } from "../../cli/report/html.js";
import { paperFigureFor } from "../../cli/report/paper.js";
import { findPreset } from "../../meta/algorithms/registry.js";
import { RECORD_FORMAT, type RunHistory } from "../../storage/record.js";

function history(runId: string, n: number, accuracy = false): RunHistory {
  return {
    runId,
    origins: [],
    iterations: Array.from({ length: n }, (_, i) => ({
      format: RECORD_FORMAT, kind: "iteration" as const, runId, iteration: i, tasks: 4, preLoss: 3 - i / n, postLoss: 2 - i / n,
      ...(accuracy ? { preAccuracy: 0.2, postAccuracy: 0.5 + i / (4 * n) } : {}),
      metaLr: 0.001, stepSize: 0.001, startedAt: 1000 * i, endedAt: 1000 * i + 500, outerSeconds: 0.01,
      shards: [{ index: 0, worker: "w1", seconds: 0.2, tasks: 2 }, { index: 1, worker: "w2", seconds: 0.3, tasks: 2 }],
    })),
    evaluations: [5, 10].map((it) => ({ format: RECORD_FORMAT, kind: "evaluation" as const, runId, iteration: it, steps: 3, loss: { mean: 1, ci95: 0.1, n: 600 }, ...(accuracy ? { accuracy: { mean: 0.8, ci95: 0.02, n: 600 } } : {}), endedAt: 0 })),
  };
}

/** Points of each line path inside figure `id` (an SVG path of n points: one M, n − 1 L). */
function linePoints(html: string, id: string): number[] {
  const fig = new RegExp(`<figure id="${id}"[^>]*>([\\s\\S]*?)</figure>`).exec(html)?.[1] ?? "";
  return [...fig.matchAll(/<g class="mark-line[^"]*"[^>]*>(.*?)<\/g>/g)].flatMap((g) => [...g[1]!.matchAll(/ d="([^"]*)"/g)].map((d) => (d[1]!.match(/[ML]/g) ?? []).length));
}

describe("report HTML", () => {
  test("two runs overlay: a line per (run, phase), a point per iteration; no network", async () => {
    const runs: ReportRun[] = [{ history: history("a", 12), store: "file:///s" }, { history: history("b", 7), store: "file:///s", config: { algorithm: "maml", task: { shots: 5 } } }];
    const html = await renderReport(runs, new Date(0));
    assert.deepEqual(linePoints(html, "train-loss").sort((x, y) => x - y), [7, 7, 12, 12]);
    assert.equal(linePoints(html, "train-accuracy").length, 0, "no accuracy chart for regression");
    for (const id of ["eval-loss", "time", "shards"]) assert.match(html, new RegExp(`<figure id="${id}"`));
    assert.match(html, /task\.shots = 5/);
    assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, "self-contained: no script, nothing fetched");
  });

  test("series longer than MAX_POINTS are averaged in buckets", async () => {
    const html = await renderReport([{ history: history("long", 2 * MAX_POINTS + 1), store: "s" }], new Date(0));
    // 4001 points in buckets of ceil(4001 / 2000) = 3 → ceil(4001 / 3) = 1334 points per line.
    assert.deepEqual(linePoints(html, "train-loss"), [1334, 1334]);
  });

  test("the paper's figure: a preset's setup with a figure matches; other iterations or seeds do not matter", async () => {
    const preset = findPreset("omniglot-5w1s-maml-mlp")!;
    assert.equal(paperFigureFor({ ...preset.config, iterations: 10, seed: 3 })?.value, 0.897);
    assert.equal(paperFigureFor({ ...preset.config, innerLr: 0.1 }), undefined, "another inner step size is another setup");
    assert.equal(paperFigureFor(findPreset("sinusoid-maml")!.config), undefined, "a preset without a figure");
    const html = await renderReport([{ history: history("c", 10, true), store: "s", paper: preset.figure! }], new Date(0));
    assert.match(html, /<figure id="eval-accuracy"[\s\S]*89\.7 ± 1\.1%/);
  });

  test("configLines: dotted keys as in --set", () => {
    assert.deepEqual(configLines({ a: 1, task: { family: "x", ways: 5 }, l: [1, 2] }), ["a = 1", 'task.family = "x"', "task.ways = 5", "l = [1,2]"]);
  });
});
