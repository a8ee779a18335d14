// What the activities report through the MetricsPort: inner loops per task (batched or not), shard outcomes with error type and attempt, outer steps and run progress, checkpoints, and parameter-cache lookups and evictions.
import { test, describe, before, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CancelledFailure } from "@temporalio/activity";
import { createActivities, type ActivityContext, type ActivityDeps } from "../../activities/index.js";
import type { MetaTrainingActivities, StateKeys } from "../../contracts/activities.js";
import { shardPlan } from "../../contracts/config.js";
import { parseRunConfig, type RunConfig, type RunConfigInput } from "../../meta/run-config.js";
import { StoreUnavailable } from "../../storage/blobstore.js";
import { FsBlobStore } from "../../storage/fs-store.js";
import { recordingMetrics, type RecordedCall, type ShardObservation, type TaskObservation } from "../../telemetry/metrics.js";
import { useCpu } from "../helpers/tf.js";

before(useCpu);

let root: string;
let store: FsBlobStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "metatrain-activity-metrics-"));
  store = new FsBlobStore({ root });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

function context(attempt = 1, controller = new AbortController()): () => ActivityContext {
  return () => ({ heartbeat: () => {}, signal: controller.signal, attempt });
}

function setup(extra: Partial<ActivityDeps> = {}): { acts: MetaTrainingActivities; calls: RecordedCall[] } {
  const metrics = recordingMetrics();
  const acts = createActivities({ store, context: context(), backendName: () => "cpu", metrics, ...extra });
  return { acts, calls: metrics.calls };
}

const args = <T>(calls: RecordedCall[], method: RecordedCall["method"]): T[] => calls.filter((c) => c.method === method).map((c) => c.args[0] as T);

const base: RunConfigInput = { metaBatchSize: 6, shardSize: 3, iterations: 2, innerSteps: 2, seed: 3, checkpointEvery: 1, task: { family: "sinusoid", shots: 4, queryShots: 4 } };

async function iterate(acts: MetaTrainingActivities, runId: string, config: RunConfig): Promise<StateKeys> {
  let keys = await acts.initRun({ runId, config });
  for (let iteration = 0; iteration < config.iterations; iteration++) {
    const plan = shardPlan(config);
    const shardKeys: string[] = [];
    for (const s of plan) {
      shardKeys.push((await acts.runShard({ runId, config, iteration, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey })).resultKey);
    }
    keys = await acts.outerStep({ runId, config, iteration, paramsKey: keys.paramsKey, optimKey: keys.optimKey, shardKeys, taskCount: config.metaBatchSize });
  }
  return keys;
}

describe("inner loops and shards", () => {
  for (const batchTasks of [false, true]) {
    test(`every task is timed once, ${batchTasks ? "a shard's tasks together (batched)" : "one by one"}; each shard completes once`, async () => {
      const { acts, calls } = setup();
      const config = parseRunConfig({ ...base, algorithm: "fomaml", batchTasks });
      await iterate(acts, "m1", config);
      const tasks = args<TaskObservation>(calls, "observeTask");
      // 2 iterations × 6 tasks: 12 single-task observations, or 2 × 2 shards of a 3-task batch.
      assert.equal(tasks.length, batchTasks ? 4 : 12);
      assert.equal(tasks.reduce((n, t) => n + (t.tasks ?? 1), 0), 12);
      for (const t of tasks) {
        assert.deepEqual([t.algorithm, t.backend, t.innerSteps, t.tasks], ["fomaml", "cpu", 2, batchTasks ? 3 : 1]);
        assert.ok(t.seconds > 0 && t.seconds < 60, `seconds ${t.seconds}`);
      }
      const shards = args<ShardObservation>(calls, "observeShard");
      assert.equal(shards.length, 4);
      for (const s of shards) assert.deepEqual([s.algorithm, s.backend, s.outcome, s.tasks, s.attempt, s.errorType], ["fomaml", "cpu", "completed", 3, 1, undefined]);
      // The shard's time covers its tasks' inner loops.
      const perShard = batchTasks ? tasks.map((t) => t.seconds) : [0, 1, 2, 3].map((i) => tasks.slice(3 * i, 3 * i + 3).reduce((s, t) => s + t.seconds, 0));
      shards.forEach((s, i) => assert.ok(s.seconds >= perShard[i]!, `shard ${i}: ${s.seconds} s < its tasks' ${perShard[i]} s`));
    });
  }

  test("a failed attempt reports its error type and attempt number, and counts nothing completed", async () => {
    const metrics = recordingMetrics();
    const failing = Object.create(store) as FsBlobStore;
    failing.put = async (key, bytes, opts) => {
      if (key.includes("/iter/")) throw new StoreUnavailable("simulated outage");
      return store.put(key, bytes, opts);
    };
    const acts = createActivities({ store: failing, context: context(3), backendName: () => "cpu", metrics });
    const config = parseRunConfig({ ...base, algorithm: "maml" });
    const keys = await acts.initRun({ runId: "f1", config });
    await assert.rejects(acts.runShard({ runId: "f1", config, iteration: 0, shardIndex: 1, taskStart: 3, taskEnd: 6, paramsKey: keys.paramsKey }), { type: "StoreUnavailable" });
    const [shard] = args<ShardObservation>(metrics.calls, "observeShard");
    assert.deepEqual([shard!.outcome, shard!.errorType, shard!.attempt, shard!.tasks, shard!.algorithm], ["failed", "StoreUnavailable", 3, 3, "maml"]);
    // The inner loops ran (the write failed after them): they are timed all the same.
    assert.equal(args<TaskObservation>(metrics.calls, "observeTask").reduce((n, t) => n + (t.tasks ?? 1), 0), 3);
  });

  test("an invalid shard range is a failed attempt of type InvalidActivityInput; a config that does not parse, InvalidRunConfig", async () => {
    const { acts, calls } = setup();
    const config = parseRunConfig(base);
    await assert.rejects(acts.runShard({ runId: "v", config, iteration: 0, shardIndex: 0, taskStart: 4, taskEnd: 2, paramsKey: "x" }));
    await assert.rejects(acts.runShard({ runId: "v", config: { ...config, metaBatchSize: -1 } as RunConfig, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: "x" }));
    assert.deepEqual(
      args<ShardObservation>(calls, "observeShard").map((s) => [s.outcome, s.errorType, s.tasks]),
      [["failed", "InvalidActivityInput", 0], ["failed", "InvalidRunConfig", 2]],
    );
  });

  test("a cancelled attempt is reported as cancelled, with no error type", async () => {
    const metrics = recordingMetrics();
    const controller = new AbortController();
    const acts = createActivities({
      store,
      context: () => ({ heartbeat: () => controller.abort(new CancelledFailure("CANCELLED")), signal: controller.signal }),
      heartbeatIntervalMs: 0,
      backendName: () => "cpu",
      metrics,
    });
    const config = parseRunConfig({ ...base, batchTasks: false });
    const keys = await createActivities({ store, context: context() }).initRun({ runId: "c1", config });
    await assert.rejects(acts.runShard({ runId: "c1", config, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 3, paramsKey: keys.paramsKey }), CancelledFailure);
    const shards = args<ShardObservation>(metrics.calls, "observeShard");
    assert.deepEqual(shards.map((s) => [s.outcome, s.errorType, s.attempt]), [["cancelled", undefined, 1]]);
  });
});

describe("outer steps, progress, checkpoints and the parameter cache", () => {
  test("each outer step is timed and reports the run's progress (iteration + 1 of iterations)", async () => {
    const { acts, calls } = setup();
    const config = parseRunConfig({ ...base, algorithm: "reptile", metaLr: 0.5 });
    await iterate(acts, "o1", config);
    const steps = args<{ algorithm: string; seconds: number }>(calls, "observeOuterStep");
    assert.deepEqual(steps.map((s) => s.algorithm), ["reptile", "reptile"]);
    for (const s of steps) assert.ok(s.seconds > 0);
    assert.deepEqual(args(calls, "setRunProgress"), [
      { runId: "o1", iteration: 1, iterations: 2 },
      { runId: "o1", iteration: 2, iterations: 2 },
    ]);
    // Evaluations and lifecycle states come from the workflow's sinks, not from activities.
    assert.equal(calls.filter((c) => c.method === "observeEvaluation" || c.method === "setRunState").length, 0);
  });

  test("a checkpoint reports its duration and the bytes it wrote (manifest and latest pointer)", async () => {
    const config = parseRunConfig(base);
    const written: number[] = [];
    const spy = Object.create(store) as FsBlobStore;
    spy.put = async (key, bytes, opts) => {
      written.push(bytes.byteLength);
      return store.put(key, bytes, opts);
    };
    const { acts, calls } = setup({ store: spy });
    const keys = await acts.initRun({ runId: "k1", config });
    written.length = 0;
    await acts.writeCheckpoint({ manifest: { runId: "k1", iteration: 1, ...keys, config, metaLr: config.metaLr, metrics: {} } });
    const checkpoints = calls.filter((c) => c.method === "observeCheckpoint").map((c) => c.args as [number, number]);
    assert.equal(checkpoints.length, 1);
    const [seconds, bytes] = checkpoints[0]!;
    assert.ok(seconds > 0);
    assert.equal(written.length, 2);
    assert.equal(bytes, written[0]! + written[1]!);
  });

  test("cache lookups are hits or misses; evictions are counted", async () => {
    const { acts, calls } = setup({ paramsCacheSize: 1 });
    const config = parseRunConfig({ ...base, iterations: 1 });
    const keys = await acts.initRun({ runId: "p1", config }); // initRun puts the parameters in the cache
    const lookups = () => calls.filter((c) => c.method === "observeParamsCache").map((c) => c.args[0]);
    const shard = (paramsKey: string, shardIndex = 0) => acts.runShard({ runId: "p1", config, iteration: 0, shardIndex, taskStart: 3 * shardIndex, taskEnd: 3 * shardIndex + 3, paramsKey });
    await shard(keys.paramsKey);
    assert.deepEqual(lookups(), [true]);
    // A second run's initial parameters (another seed) evict the first set from the 1-entry cache …
    await acts.initRun({ runId: "p2", config: parseRunConfig({ ...base, iterations: 1, seed: 4 }) });
    assert.equal(calls.filter((c) => c.method === "observeParamsCacheEviction").length, 1);
    // … so the next lookup of the first set reads the store.
    await shard(keys.paramsKey, 1);
    assert.deepEqual(lookups(), [true, false]);
  });
});
