// Leak checks: a worker's resting TensorFlow.js tensor count (its /metrics gauge metatrain_tfjs_tensors) stays exactly flat over 50 meta-iterations — in a worker-equivalent process (bench/leak.ts) and in a real worker process driven by a real workflow.
//
// At rest (between activities) a worker holds exactly its parameter cache: ParamsCache keeps 4
// parameter sets by default, and the sinusoid MLP 1-40-40-1 has 6 tensors (3 kernels, 3 biases),
// so 4 × 6 = 24 tensors once 3 outer steps have filled it. Every other tensor an activity makes
// (tasks, inner-loop parameters, gradients, shard sums, optimizer state) must be gone by the time it
// returns; one tensor a meta-iteration left behind would show as +1 per sample.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import { Client, Connection } from "@temporalio/client";
import type { RunConfigInput } from "../../meta/run-config.js";
import { TASK_QUEUES } from "../../contracts/queues.js";
import { metaTrainingWorkflow, pauseSignal, progressQuery, resumeSignal } from "../../workflows/meta-training.js";
import { metricValue, runLeak } from "../../bench/leak.js";
import { skipUnlessTemporal, startTemporalServer, type TemporalTestServer } from "../harness/temporal.js";
import { WorkerPool, type WorkerProcess } from "../harness/workers.js";
import { useCpu } from "../helpers/tf.js";

const MINUTE = 60_000;
/** 4 cached parameter sets × 6 tensors of the sinusoid MLP (see the top of this file). */
const RESTING_TENSORS = 4 * 6;
const ITERATIONS = 50;

describe("tensor count of a worker-equivalent process over 50 iterations (bench/leak.ts, read from its /metrics)", () => {
  test("exactly flat at rest; RSS and the tfjs byte count are reported", { timeout: 5 * MINUTE }, async (t) => {
    await useCpu();
    const result = await runLeak({
      iterations: ITERATIONS,
      every: 5,
      config: { algorithm: "maml", task: { family: "sinusoid", shots: 5, queryShots: 5 }, metaBatchSize: 6, shardSize: 2, innerSteps: 2, checkpointEvery: 5, evalEvery: 10, evalTasks: 5, evalSteps: 3 },
    });
    const tensors = result.samples.map((s) => s.tensors);
    t.diagnostic(`tensors every 5 iterations: ${tensors.join(" ")}; rss ${result.samples.map((s) => (s.rssBytes / 2 ** 20).toFixed(0)).join(" ")} MiB`);
    assert.equal(result.samples.length, ITERATIONS / 5);
    assert.deepEqual(new Set(tensors), new Set([RESTING_TENSORS]), "every sample holds exactly the parameter cache");
    assert.equal(result.verdict.tensorsFlat, true);
    for (const s of result.samples) {
      assert.ok(s.rssBytes > 0 && s.heapUsedBytes > 0);
      // float32: the 1-40-40-1 MLP has 1761 parameters, 4 × 1761 × 4 bytes = 28,176.
      assert.equal(s.tfjsBytes, 4 * 1761 * 4);
    }
  });
});

describe("tensor count of a real worker process over 50 iterations (its /metrics, sampled while the run is paused)", { skip: process.env.TEMPORAL_ADDRESS ? "TEMPORAL_ADDRESS is set: other workers could take the activities" : skipUnlessTemporal() }, () => {
  let temporal: TemporalTestServer;
  let pool: WorkerPool;
  let worker: WorkerProcess;
  let connection: Connection;
  let storeRoot: string;

  before(async () => {
    storeRoot = mkdtempSync(join(tmpdir(), "metatrain-leak-it-"));
    temporal = await startTemporalServer();
    pool = new WorkerPool(() => ({
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      METATRAIN_STORE: pathToFileURL(storeRoot).href,
      METATRAIN_BACKEND: "cpu",
      METATRAIN_LOG_LEVEL: "ERROR",
    }));
    worker = await pool.start("all");
    connection = await Connection.connect({ address: temporal.address });
  });

  after(async () => {
    await pool?.stopAll();
    await connection?.close().catch(() => undefined);
    await temporal?.stop();
    if (storeRoot) rmSync(storeRoot, { recursive: true, force: true });
  });

  /** The worker's tensors, activities in flight and the run's reported state, from its /metrics. */
  async function scrape(): Promise<{ tensors: number; inFlight: number; state: string | undefined }> {
    const text = await (await fetch(`http://127.0.0.1:${worker.metricsPort}/metrics`)).text();
    const inFlight = [...text.matchAll(/^metatrain_activities_in_flight\{[^}]*\} (\S+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    const state = /^metatrain_run_state\{[^}]*state="(\w+)"[^}]*\} 1$/m.exec(text)?.[1];
    return { tensors: metricValue(text, "metatrain_tfjs_tensors"), inFlight, state };
  }

  test("the resting count is the parameter cache at every pause and after the run", { timeout: 8 * MINUTE }, async (t) => {
    const client = new Client({ connection, namespace: temporal.namespace });
    const config: RunConfigInput = {
      algorithm: "maml",
      task: { family: "sinusoid", shots: 5, queryShots: 5 },
      metaBatchSize: 4,
      shardSize: 2,
      iterations: ITERATIONS,
      innerSteps: 2,
      checkpointEvery: 10,
      evalEvery: 10,
      evalTasks: 5,
      evalSteps: 3,
    };
    const handle = await client.workflow.start(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: `leak-${Date.now()}`, args: [{ runId: "leak-worker", config }] });
    const samples: { iteration: number; tensors: number }[] = [];
    const states = new Set<string | undefined>();
    // Pause every few seconds; once the worker has nothing in flight, read its tensors; resume.
    for (;;) {
      const before = await handle.query(progressQuery);
      if (before.iteration >= ITERATIONS) break;
      // A pause that lands during the last round does not keep the run from completing: then the
      // signals find it closed, and the checks after the loop read the end of the run.
      const completed = async (e: unknown): Promise<true> => {
        if ((await handle.describe()).status.name !== "COMPLETED") throw e;
        return true;
      };
      if (await handle.signal(pauseSignal).then(() => false, completed)) break;
      let rest: { tensors: number; inFlight: number; state: string | undefined } | undefined;
      for (let quiet = 0, tries = 0; tries < 600; tries++) {
        const m = await scrape();
        // Idle twice in a row after the pause took hold: the round in flight has finished.
        quiet = m.inFlight === 0 ? quiet + 1 : 0;
        if (quiet >= 2) {
          rest = m;
          break;
        }
        await sleep(50);
      }
      assert.ok(rest, "the worker went idle after the pause");
      const p = await handle.query(progressQuery);
      if (p.iteration >= ITERATIONS) break;
      states.add(rest.state);
      if (p.iteration >= 3) samples.push({ iteration: p.iteration, tensors: rest.tensors });
      if (await handle.signal(resumeSignal).then(() => false, completed)) break;
      await sleep(1_500);
    }
    const result = await handle.result();
    assert.equal(result.iteration, ITERATIONS);
    await sleep(200);
    const end = await scrape();
    assert.equal(end.inFlight, 0);
    assert.deepEqual([...states], ["paused"], "the workflow reported each pause (metatrain_run_state)");
    assert.equal(end.state, "finished");
    samples.push({ iteration: ITERATIONS, tensors: end.tensors });
    t.diagnostic(`resting tensors by iteration: ${samples.map((s) => `${s.iteration}:${s.tensors}`).join(" ")}`);
    assert.ok(samples.length >= 3, `enough samples (${samples.length})`);
    assert.ok(samples.at(-1)!.iteration - samples[0]!.iteration >= ITERATIONS / 2, "the samples span most of the run");
    for (const s of samples) assert.equal(s.tensors, RESTING_TENSORS, `resting tensors at iteration ${s.iteration}`);
  });
});
