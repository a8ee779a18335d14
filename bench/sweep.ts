// A sweep of innerLr × metaLr for one Omniglot preset (successive halving, workflows/sweep.ts),
// against the preset's own values trained for the sweep's whole budget, on the real stack.
//
//   node --import tsx bench/sweep.ts [--preset omniglot-5w1s-maml-mlp] [--inner 0.1,0.4,1]
//     [--meta 0.0003,0.001,0.003] [--min 20] [--max 180] [--eta 3] [--eval-tasks 300] [--backend tfjs-node]
//
// Budget: the sweep's iterations summed over every trial and rung (min·n + …); the baseline run of
// the preset's values is trained for that many iterations, so both spend the same compute. Both
// report the final evaluation of their run on the same held-out tasks (the run seed is the same).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { arg, log, machine, numArg, record } from "./common.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { SweepSpecSchema, rungBudgets, survivors, sweepTrials, type SweepResult } from "../contracts/sweep.js";
import { findPreset } from "../meta/algorithms/registry.js";
import { parseRunConfig } from "../meta/run-config.js";
import { metaTrainingWorkflow } from "../workflows/meta-training.js";
import { sweepWorkflow } from "../workflows/sweep.js";
import { startTemporalServer } from "../test/harness/temporal.js";
import { WorkerPool } from "../test/harness/workers.js";

const presetName = arg("preset", "omniglot-5w1s-maml-mlp");
const inner = arg("inner", "0.1,0.4,1").split(",").map(Number);
const meta = arg("meta", "0.0003,0.001,0.003").split(",").map(Number);
const minIterations = numArg("min", 20);
const maxIterations = numArg("max", 180);
const eta = numArg("eta", 3);
const evalTasks = numArg("eval-tasks", 300);
const backend = arg("backend", "tfjs-node");

const preset = findPreset(presetName);
if (!preset) throw new Error(`unknown preset ${presetName}`);
// Evaluate only at the end of each run (the score successive halving reads), on evalTasks tasks.
const base = parseRunConfig({ ...(preset.config as object), evalEvery: 0, evalTasks, checkpointEvery: minIterations });
const spec = SweepSpecSchema.parse({
  base,
  parameters: [{ key: "innerLr", values: inner }, { key: "metaLr", values: meta }],
  eta,
  minIterations,
  maxIterations,
  concurrency: 1,
});

/** Iterations the sweep trains in all: each rung's survivors from the previous rung's budget to this one's. */
function sweepBudget(): number {
  const budgets = rungBudgets(spec);
  let n = sweepTrials(spec).length;
  let total = 0;
  let before = 0;
  for (const b of budgets) {
    total += n * (b - before);
    before = b;
    n = survivors(n, eta);
  }
  return total;
}

const budget = sweepBudget();
const dir = mkdtempSync(join(tmpdir(), "metatrain-bench-sweep-"));
const temporal = await startTemporalServer();
const pool = new WorkerPool(() => ({ TEMPORAL_ADDRESS: temporal.address, TEMPORAL_NAMESPACE: temporal.namespace, METATRAIN_STORE: `file://${dir}/store`, METATRAIN_BACKEND: backend }));
const connection = await Connection.connect({ address: temporal.address });
try {
  await Promise.all([pool.start("coordinator"), pool.start("gpu")]);
  const client = new Client({ connection, namespace: temporal.namespace });
  log(`sweep of ${sweepTrials(spec).length} trials, rungs ${rungBudgets(spec).join(" → ")}: ${budget} iterations in all; baseline ${presetName} (innerLr ${base.innerLr}, metaLr ${base.metaLr}) for ${budget} iterations`);
  const t0 = performance.now();
  // One after the other on the one gpu worker: each timed alone.
  const sweep = (await client.workflow.execute(sweepWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: "bench-sweep", args: [{ sweepId: "bench-sweep", spec }] })) as SweepResult;
  const sweepSeconds = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const baseline = await client.workflow.execute(metaTrainingWorkflow, {
    taskQueue: TASK_QUEUES.coordinator,
    workflowId: "bench-baseline",
    args: [{ runId: "bench-baseline", config: { ...base, iterations: budget } }],
  });
  const baselineSeconds = (performance.now() - t1) / 1000;
  const w = sweep.trials[sweep.winner]!;
  const acc = (e: { accuracy?: { mean: number; ci95: number } } | undefined) => (e?.accuracy ? `${(100 * e.accuracy.mean).toFixed(2)} ± ${(100 * e.accuracy.ci95).toFixed(2)}%` : "?");
  log(`winner trial ${w.index} ${JSON.stringify(w.values)}: scores ${w.scores.map((s) => (100 * s).toFixed(2)).join(" → ")} (${sweepSeconds.toFixed(0)} s); baseline ${acc(baseline.evaluation)} after ${budget} iterations (${baselineSeconds.toFixed(0)} s)`);
  record(`sweep-${presetName}`, {
    preset: presetName,
    spec: { ...spec, base: undefined },
    budgetIterations: budget,
    backend,
    evalTasks,
    sweepSeconds,
    baselineSeconds,
    winner: { trial: w.index, values: w.values, scores: w.scores, iteration: w.iteration },
    trials: sweep.trials.map((t) => ({ index: t.index, values: t.values, state: t.state, scores: t.scores, iteration: t.iteration })),
    baseline: { innerLr: base.innerLr, metaLr: base.metaLr, iterations: budget, evaluation: baseline.evaluation },
    machine: machine(),
  });
} finally {
  await pool.stopAll();
  await connection.close().catch(() => undefined);
  await temporal.stop();
  rmSync(dir, { recursive: true, force: true });
}
