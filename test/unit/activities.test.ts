// Activities over a real filesystem store: bit-identity with LocalMetaTrainer, idempotent shards, heartbeats and
// cancellation without leaks, error types and retry flags, checkpoint order, and the bounded params cache.
import { test, describe, before, beforeEach, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { ApplicationFailure, CancelledFailure } from "@temporalio/activity";
import { createActivities, type ActivityDeps, type LatestPointer } from "../../activities/index.js";
import { ParamsCache } from "../../activities/params-cache.js";
import { prefetchSinks, ResultPrefetch } from "../../activities/prefetch.js";
import type { MetaTrainingActivities, ShardResultUnusableDetails, StateKeys } from "../../contracts/activities.js";
import { shardPlan } from "../../contracts/config.js";
import { parseRunConfig, type RunConfig, type RunConfigInput } from "../../meta/run-config.js";
import { deserializeParams, dispose, type Params } from "../../meta/params.js";
import { LocalMetaTrainer } from "../../meta/trainer.js";
import { StoreAccessDenied, StoreUnavailable, type BlobStore } from "../../storage/blobstore.js";
import { FsBlobStore } from "../../storage/fs-store.js";
import { checkpointManifestKey, latestCheckpointKey, shardKey } from "../../storage/keys.js";
import { useCpu, values } from "../helpers/tf.js";

before(useCpu);

let root: string;
let store: FsBlobStore;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "metatrain-activities-"));
  store = new FsBlobStore({ root });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

/** A stand-in for Temporal's activity context: records heartbeats, cancels through an AbortController. */
function fakeContext(onBeat?: (n: number, details: unknown) => void) {
  const beats: Record<string, unknown>[] = [];
  const controller = new AbortController();
  return {
    beats,
    controller,
    context: () => ({
      heartbeat: (d?: unknown) => {
        beats.push(d as Record<string, unknown>);
        onBeat?.(beats.length, d);
      },
      signal: controller.signal,
    }),
  };
}

function activities(extra: Partial<ActivityDeps> = {}): MetaTrainingActivities {
  return createActivities({ store, context: fakeContext().context, backendName: () => "cpu", ...extra });
}

const cfg = (c: RunConfigInput): RunConfig => parseRunConfig(c);

/** Parameters stored at a key, as plain arrays. */
async function storedValues(key: string): Promise<Record<string, Float32Array>> {
  const { params } = deserializeParams(await store.get(key));
  try {
    return values(params);
  } finally {
    dispose(params);
  }
}

/** Bitwise equality of two parameter snapshots (so -0 ≠ +0 and NaN payloads count). */
function assertBitIdentical(a: Record<string, Float32Array>, b: Record<string, Float32Array>): void {
  assert.deepEqual(Object.keys(a), Object.keys(b));
  for (const k of Object.keys(a)) {
    assert.ok(Buffer.from(a[k]!.buffer).equals(Buffer.from(b[k]!.buffer)), `parameter ${k} differs`);
  }
}

/** The parameters at `paramsKey` are, bit for bit, the in-process trainer's after `config.iterations` steps. */
async function assertMatchesTrainer(config: RunConfig, paramsKey: string): Promise<void> {
  const t = new LocalMetaTrainer(config);
  try {
    for (let i = 0; i < config.iterations; i++) await t.step();
    assertBitIdentical(await storedValues(paramsKey), t.snapshot());
  } finally {
    t.dispose();
  }
}

/** The distributed iteration as the workflow runs it: shards (here in reverse order of execution), then one outer step. */
async function distributedRun(acts: MetaTrainingActivities, runId: string, config: RunConfig): Promise<StateKeys> {
  let keys = await acts.initRun({ runId, config });
  for (let iteration = 0; iteration < config.iterations; iteration++) {
    const plan = shardPlan(config);
    const results = new Map<number, string>();
    for (const s of [...plan].reverse()) {
      const r = await acts.runShard({ runId, config, iteration, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey });
      results.set(s.index, r.resultKey);
    }
    keys = await acts.outerStep({
      runId, config, iteration, paramsKey: keys.paramsKey, optimKey: keys.optimKey,
      shardKeys: plan.map((s) => results.get(s.index)!), taskCount: config.metaBatchSize,
    });
  }
  return keys;
}

function isFailure(type: string, nonRetryable: boolean) {
  return (e: unknown) => {
    assert.ok(e instanceof ApplicationFailure, `expected an ApplicationFailure, got ${String(e)}`);
    assert.equal(e.type, type, e.message);
    assert.equal(e.nonRetryable, nonRetryable);
    return true;
  };
}

describe("distributed iterations reproduce LocalMetaTrainer bit for bit", () => {
  // 7 tasks in shards of 3 → shards [0,3) [3,6) [6,7): the uneven last shard and the 3-way sum
  // ((s0 + s1) + s2) are where an order or count mistake would show. Equality is exact, not
  // approximate: both sides run the same float32 ops in the same order on the cpu backend, and
  // the blob format stores float32 losslessly.
  const base = { metaBatchSize: 7, shardSize: 3, iterations: 3, innerSteps: 2, innerLr: 0.02, seed: 11, task: { family: "sinusoid" as const, shots: 5, queryShots: 5 } };
  const cases: [string, RunConfigInput][] = [
    ["maml (second order, tasks batched)", { ...base, algorithm: "maml", metaLr: 0.01, batchTasks: true }],
    ["fomaml (task by task)", { ...base, algorithm: "fomaml", metaLr: 0.01, batchTasks: false }],
    // Reptile with ε annealed over 3 iterations: 0.5, 1/3, 1/6 — the outer step must anneal as the trainer does.
    ["reptile (annealed ε, task by task)", { ...base, algorithm: "reptile", metaLr: 0.5, batchTasks: false }],
    ["reptile (annealed ε, tasks batched)", { ...base, algorithm: "reptile", metaLr: 0.5, batchTasks: true }],
  ];
  for (const [name, input] of cases) {
    test(name, async () => {
      const config = cfg(input);
      const trainer = new LocalMetaTrainer(config);
      try {
        for (let i = 0; i < config.iterations; i++) await trainer.step();
        const keys = await distributedRun(activities(), "bit-identity", config);
        assertBitIdentical(await storedValues(keys.paramsKey), trainer.snapshot());
      } finally {
        trainer.dispose();
      }
    });
  }

  test("two runs of the same shape and different seeds, one after the other on one worker, each start from their own seed", async () => {
    // The worker memoises what a config builds by its shape, without the seed (BuildCache): the
    // initial parameters must still come from each run's own seed (a CI failure once, when
    // initRun read the seed of the cached config and a run resumed another run's initialisation).
    const acts = activities();
    for (const seed of [22, 23]) {
      const config = cfg({ ...base, algorithm: "maml", metaLr: 0.01, batchTasks: true, iterations: 1, seed });
      const trainer = new LocalMetaTrainer(config);
      try {
        await trainer.step();
        assertBitIdentical(await storedValues((await distributedRun(acts, `seed-${seed}`, config)).paramsKey), trainer.snapshot());
      } finally {
        trainer.dispose();
      }
    }
  });

  test("a signalled metaLr overrides config.metaLr (Adam)", async () => {
    const config = cfg({ ...base, algorithm: "fomaml", iterations: 1, batchTasks: true });
    const trainer = new LocalMetaTrainer({ ...config, metaLr: 0.05 });
    try {
      await trainer.step();
      const acts = activities();
      const k0 = await acts.initRun({ runId: "lr", config });
      const shardKeys = [];
      for (const s of shardPlan(config)) {
        shardKeys.push((await acts.runShard({ runId: "lr", config, iteration: 0, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: k0.paramsKey })).resultKey);
      }
      const k1 = await acts.outerStep({ runId: "lr", config, iteration: 0, ...k0, shardKeys, taskCount: 7, metaLr: 0.05 });
      assertBitIdentical(await storedValues(k1.paramsKey), trainer.snapshot());
    } finally {
      trainer.dispose();
    }
  });
});

const small = cfg({ algorithm: "maml", metaBatchSize: 4, shardSize: 2, iterations: 2, innerSteps: 3, batchTasks: false, seed: 3, task: { family: "sinusoid", shots: 5, queryShots: 5 } });

describe("outer step state reads", () => {
  test("the coordinator that wrote the optimizer state decodes it from memory: 3 iterations read no optimizer blob back, and a fresh process reads it from the store", async () => {
    // Same config as the bit-identity cases, so the result is checked against the trainer too.
    const config = cfg({ metaBatchSize: 7, shardSize: 3, iterations: 3, innerSteps: 2, innerLr: 0.02, seed: 11, task: { family: "sinusoid", shots: 5, queryShots: 5 }, algorithm: "maml", metaLr: 0.01 });
    const optimGets: string[] = [];
    const counting: BlobStore = Object.assign(Object.create(store) as FsBlobStore, {
      get: (k: string) => (k.includes("/optim/") && optimGets.push(k), store.get(k)),
    });
    const keys = await distributedRun(activities({ store: counting }), "state-cache", config);
    assert.deepEqual(optimGets, [], "initRun and each outer step wrote the state the next step reads");
    await assertMatchesTrainer(config, keys.paramsKey);
    // Another coordinator (a restart, another pod) has no copy: it reads the blob.
    const fresh = activities({ store: counting });
    const plan = shardPlan(config);
    const shardKeys: string[] = [];
    for (const s of plan) shardKeys.push((await fresh.runShard({ runId: "state-cache", config, iteration: 3, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey })).resultKey);
    await fresh.outerStep({ runId: "state-cache", config: cfg({ ...config, iterations: 4 }), iteration: 3, ...keys, shardKeys, taskCount: 7 });
    assert.deepEqual(optimGets, [keys.optimKey]);
  });
});

describe("shard results read ahead (activities/prefetch.ts)", () => {
  /** A store that logs the shard-result keys read through it. */
  function countingStore(log: string[]): BlobStore {
    return Object.assign(Object.create(store) as FsBlobStore, { get: (k: string) => (/\/shard-\d+\.mtt$/.test(k) && log.push(k), store.get(k)) });
  }

  test("the outer step takes results read ahead as the shards finished: each result read once, none on the step's path, the same parameters bit for bit", async () => {
    const config = cfg({ metaBatchSize: 7, shardSize: 3, iterations: 3, innerSteps: 2, innerLr: 0.02, seed: 11, task: { family: "sinusoid", shots: 5, queryShots: 5 }, algorithm: "maml", metaLr: 0.01 });
    const reads: string[] = [];
    const counting = countingStore(reads);
    const prefetch = new ResultPrefetch(counting);
    const acts = activities({ store: counting, prefetch });
    let keys = await acts.initRun({ runId: "ahead", config });
    for (let iteration = 0; iteration < config.iterations; iteration++) {
      const shardKeys: string[] = [];
      for (const s of shardPlan(config)) {
        const r = await acts.runShard({ runId: "ahead", config, iteration, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey });
        // What the workflow's sink does on the coordinator as each shard completes.
        prefetchSinks(prefetch).metatrainPrefetch.shardResult.fn({} as never, r.resultKey);
        shardKeys.push(r.resultKey);
      }
      await prefetch.settled();
      const before = reads.length;
      assert.equal(before, (iteration + 1) * 3, "every result was read ahead, once");
      keys = await acts.outerStep({ runId: "ahead", config, iteration, ...keys, shardKeys, taskCount: 7 });
      assert.equal(reads.length, before, "the outer step read no result itself");
      assert.deepEqual(prefetch.keys(), [], "each read was handed over and forgotten");
      assert.equal(prefetch.heldBytes(), 0);
    }
    await assertMatchesTrainer(config, keys.paramsKey);
  });

  test("a result that fails verification when read ahead is forgotten: the outer step reads it itself, names it unusable, and after the rerun reads the healed blob", async () => {
    const reads: string[] = [];
    const counting = countingStore(reads);
    const prefetch = new ResultPrefetch(counting);
    const acts = activities({ store: counting, prefetch });
    const keys = await acts.initRun({ runId: "ahead-bad", config: small });
    const plan = shardPlan(small);
    const shardKeys = [];
    for (const s of plan) shardKeys.push((await acts.runShard({ runId: "ahead-bad", config: small, iteration: 0, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey })).resultKey);
    const path = store.pathOf(shardKeys[0]!);
    const good = readFileSync(path);
    const bad = Buffer.from(good);
    bad[bad.length - 10]! ^= 0x01;
    writeFileSync(path, bad);
    for (const k of shardKeys) prefetch.start(k);
    await prefetch.settled();
    assert.deepEqual(prefetch.keys(), [shardKeys[1]], "the failed read was dropped, the good one kept");
    const input = { runId: "ahead-bad", config: small, iteration: 0, ...keys, shardKeys, taskCount: 4 };
    await assert.rejects(acts.outerStep(input), (e: unknown) => {
      assert.equal((e as ApplicationFailure).type, "ShardResultUnusable");
      return true;
    });
    assert.deepEqual(reads, [shardKeys[0], shardKeys[1], shardKeys[0]], "the step read the dropped result itself, and took the other");
    // The workflow reruns shard 0 (same bytes as before the damage) and its completion is read ahead again.
    await acts.runShard({ runId: "ahead-bad", config: small, iteration: 0, shardIndex: 0, taskStart: plan[0]!.taskStart, taskEnd: plan[0]!.taskEnd, paramsKey: keys.paramsKey });
    prefetch.start(shardKeys[0]!);
    const next = await acts.outerStep(input);
    // The retry found only shard 0 read ahead; shard 1's read was handed to the failed step, so it reads that again.
    assert.deepEqual(reads.slice(3), [shardKeys[0], shardKeys[1]]);
    const direct = await activities().outerStep(input);
    assert.equal(next.paramsKey, direct.paramsKey, "the same content address as without read-ahead");
  });

  test("is bounded by bytes, by entries and by age; a missing blob is not kept", async () => {
    for (const [i, n] of [100, 100, 100].entries()) await store.put(`runs/b/shards/${i}`, new Uint8Array(n));
    let now = 0;
    const p = new ResultPrefetch(store, { maxBytes: 250, maxEntries: 2, ttlMs: 1000, now: () => now });
    p.start("runs/b/shards/0");
    p.start("runs/b/shards/1");
    p.start("runs/b/shards/1"); // already held: no second read
    await p.settled();
    assert.deepEqual(p.keys(), ["runs/b/shards/0", "runs/b/shards/1"]);
    assert.equal(p.heldBytes(), 200);
    p.start("runs/b/shards/2"); // a third entry: the oldest goes
    await p.settled();
    assert.deepEqual(p.keys(), ["runs/b/shards/1", "runs/b/shards/2"]);
    assert.equal(p.heldBytes(), 200);
    const tight = new ResultPrefetch(store, { maxBytes: 150 });
    tight.start("runs/b/shards/0");
    tight.start("runs/b/shards/1");
    await tight.settled();
    assert.deepEqual(tight.keys(), ["runs/b/shards/1"], "over 150 bytes: the older read is dropped");
    now = 1500; // past the age limit: a new start drops both earlier entries first
    p.start("runs/b/shards/0");
    assert.deepEqual(p.keys(), ["runs/b/shards/0"]);
    p.start("runs/b/missing");
    await p.settled();
    assert.equal(p.take("runs/b/missing"), undefined, "a failed read is forgotten; the outer step meets the error itself");
    assert.ok((await p.take("runs/b/shards/0"))!.byteLength === 100);
    assert.equal(p.take("runs/b/shards/0"), undefined, "handed over once");
    assert.equal(prefetchSinks().metatrainPrefetch.shardResult.callDuringReplay, false);
  });
});

describe("runShard", () => {
  test("is idempotent: a retry writes the same key with the same bytes", async () => {
    const acts = activities();
    const keys = await acts.initRun({ runId: "idem", config: small });
    assert.deepEqual(await acts.initRun({ runId: "idem", config: small }), keys, "initRun is idempotent too");
    const input = { runId: "idem", config: small, iteration: 1, shardIndex: 1, taskStart: 2, taskEnd: 4, paramsKey: keys.paramsKey };
    const first = await acts.runShard(input);
    const bytes = readFileSync(store.pathOf(first.resultKey));
    const second = await acts.runShard(input);
    assert.equal(first.resultKey, shardKey("idem", 1, 1));
    assert.equal(second.resultKey, first.resultKey);
    assert.ok(readFileSync(store.pathOf(second.resultKey)).equals(bytes));
    assert.deepEqual(second.metrics, first.metrics);
    assert.equal(first.metrics.tasks, 2);
    assert.equal(first.backend, "cpu");
  });

  test("heartbeats after every inner step and every task", async () => {
    const fake = fakeContext();
    const acts = createActivities({ store, context: fake.context, heartbeatIntervalMs: 0 });
    const keys = await acts.initRun({ runId: "hb", config: small });
    await acts.runShard({ runId: "hb", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey });
    // 2 tasks × 3 inner steps = 6 step heartbeats, then one per finished task.
    const steps = fake.beats.filter((b) => "step" in b);
    assert.equal(steps.length, 6);
    assert.deepEqual(steps.map((b) => [b.task, b.step]), [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]);
    assert.deepEqual(fake.beats.filter((b) => "tasksDone" in b).map((b) => b.tasksDone), [1, 2]);
    assert.equal(fake.beats.length, 8);
  });

  test("with the default 1 s interval, a shard shorter than the interval sends no heartbeat", async () => {
    // Temporal needs no heartbeat from an activity that ends before its heartbeat timeout; this
    // shard takes milliseconds, so any beat would only add a round trip to the server.
    const fake = fakeContext();
    const acts = createActivities({ store, context: fake.context });
    const keys = await acts.initRun({ runId: "hb", config: small });
    const started = performance.now();
    await acts.runShard({ runId: "hb", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey });
    if (performance.now() - started < 1000) assert.equal(fake.beats.length, 0);
  });

  test("a shard longer than the interval heartbeats about once per interval", async () => {
    // 2 tasks × 300 ms of simulated compute, slept in one 300 ms slice per task, at a 100 ms
    // interval: while a slice sleeps the thread is free and the shard's timer offers a beat every
    // 100 ms (the inner steps, all within the first few ms, are too early): about 6, at least 2.
    const fake = fakeContext();
    const acts = createActivities({ store, context: fake.context, heartbeatIntervalMs: 100, simulatedTaskMs: 300 });
    const keys = await acts.initRun({ runId: "hb", config: small });
    await acts.runShard({ runId: "hb", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey });
    assert.ok(fake.beats.length >= 2 && fake.beats.length <= 8, `${fake.beats.length} heartbeats`);
    assert.ok(fake.beats.some((b) => b.simulated === true || b.waiting === true), "the shard beats while the simulated compute sleeps");
  });

  test("simulated compute is each task's whole cost: k tasks end no earlier than k·simulatedTaskMs after the first began", async () => {
    // Deadlines from the first task's start, not a sleep after each task's real work: 2 tasks ×
    // 300 ms give a shard of at least 0.6 s (its reported seconds include the parameter read before).
    const fake = fakeContext();
    const acts = createActivities({ store, context: fake.context, heartbeatIntervalMs: 100, simulatedTaskMs: 300 });
    const keys = await acts.initRun({ runId: "simulated", config: small });
    const out = await acts.runShard({ runId: "simulated", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey });
    assert.ok(out.seconds >= 0.6, `shard of 2 × 300 ms took ${out.seconds} s`);
  });

  test("a shard reports its longest silence between heartbeats, start and end included", async () => {
    // 2 tasks × 300 ms of simulated compute at a 100 ms interval: beats come at most ~300 ms apart
    // (a slice) and at least 100 ms (the interval), so the longest silence lies in [0.1, 0.3 + slack].
    const fake = fakeContext();
    const acts = createActivities({ store, context: fake.context, heartbeatIntervalMs: 100, simulatedTaskMs: 300 });
    const keys = await acts.initRun({ runId: "silence", config: small });
    const out = await acts.runShard({ runId: "silence", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey });
    assert.ok(out.silentSeconds !== undefined && out.silentSeconds >= 0.1, `silence ${out.silentSeconds}`);
    assert.ok(out.silentSeconds < 0.5 && out.silentSeconds <= out.seconds, `silence ${out.silentSeconds} of ${out.seconds} s`);
  });

  test("while a shard waits on the store, a timer heartbeats for it", async () => {
    // Every store read takes 350 ms: the parameter read happens with the thread free, so the
    // 100 ms timer beats (about 3 times) and the longest silence stays near the interval, not 350 ms.
    const slow = new Proxy(store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver);
        if (prop !== "get" || typeof v !== "function") return typeof v === "function" ? v.bind(target) : v;
        return async (...args: unknown[]) => {
          await new Promise((r) => setTimeout(r, 350));
          return v.apply(target, args);
        };
      },
    });
    const fake = fakeContext();
    const keys = await createActivities({ store }).initRun({ runId: "slow-store", config: small });
    // Its own parameter cache, empty: the shard reads the parameters through the slow store.
    const acts = createActivities({ store: slow, context: fake.context, heartbeatIntervalMs: 100 });
    const out = await acts.runShard({ runId: "slow-store", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey });
    assert.ok(fake.beats.filter((b) => b.waiting === true).length >= 2, `${fake.beats.length} beats`);
    assert.ok(out.silentSeconds !== undefined && out.silentSeconds < 0.3, `silence ${out.silentSeconds}`);
  });

  for (const algorithm of ["maml", "reptile"] as const) {
    test(`cancellation mid-shard (${algorithm}) rethrows the cancellation and leaks no tensors`, async () => {
      const config = cfg({ ...small, algorithm });
      // Heartbeats: task 0 steps 0-2, task 0 done, task 1 step 0 (the 5th: cancel there). Step 1 of
      // task 1 sees the signal and throws — for MAML inside the gradient tape of task 1.
      const fake = fakeContext((n) => n === 5 && fake.controller.abort(new CancelledFailure("CANCELLED")));
      const acts = createActivities({ store, context: fake.context, heartbeatIntervalMs: 0 });
      const keys = await acts.initRun({ runId: "cancel", config });
      const before = tf.memory().numTensors; // the cached initial parameters are already counted
      await assert.rejects(
        acts.runShard({ runId: "cancel", config, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey }),
        (e) => e instanceof CancelledFailure,
      );
      assert.equal(tf.memory().numTensors, before);
      assert.equal(await store.exists(shardKey("cancel", 0, 0)), false, "a cancelled shard writes nothing");
      assert.equal(fake.beats.length, 5, "nothing heartbeats after the cancellation is seen");
    });
  }

  test("an already cancelled activity does not start", async () => {
    const fake = fakeContext();
    fake.controller.abort();
    const acts = createActivities({ store, context: fake.context });
    const keys = await activities().initRun({ runId: "pre", config: small });
    await assert.rejects(
      acts.runShard({ runId: "pre", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey }),
      (e) => e instanceof Error && e.name === "AbortError",
    );
    assert.deepEqual(fake.beats, []);
  });

  test("diverging inner loops fail NonFiniteLoss, non-retryable, suggesting lower rates", async () => {
    const config = cfg({ ...small, innerLr: 1e30 });
    const acts = activities();
    const keys = await acts.initRun({ runId: "nan", config });
    const before = tf.memory().numTensors;
    await assert.rejects(
      acts.runShard({ runId: "nan", config, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey }),
      (e) => isFailure("NonFiniteLoss", true)(e) && /lower innerLr or metaLr/.test((e as Error).message),
    );
    assert.equal(tf.memory().numTensors, before);
  });

  test("a task range outside the meta-batch is a non-retryable input error", async () => {
    const acts = activities();
    const keys = await acts.initRun({ runId: "range", config: small });
    await assert.rejects(
      acts.runShard({ runId: "range", config: small, iteration: 0, shardIndex: 0, taskStart: 2, taskEnd: 9, paramsKey: keys.paramsKey }),
      isFailure("InvalidActivityInput", true),
    );
  });
});

describe("error mapping", () => {
  async function twoShards(acts: MetaTrainingActivities) {
    const keys = await acts.initRun({ runId: "err", config: small });
    const shardKeys = [];
    for (const s of shardPlan(small)) {
      shardKeys.push((await acts.runShard({ runId: "err", config: small, iteration: 0, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey })).resultKey);
    }
    return { keys, shardKeys };
  }

  /** A ShardResultUnusable failure naming exactly `indices`, each with a reason matching `reason`. */
  const unusableShards = (indices: number[], reason: RegExp) => (e: unknown) => {
    isFailure("ShardResultUnusable", true)(e);
    const d = (e as ApplicationFailure).details?.[0] as ShardResultUnusableDetails;
    assert.equal(d.code, "ShardResultUnusable");
    assert.deepEqual(d.shards.map((s) => s.shardIndex), indices);
    for (const s of d.shards) assert.match(s.reason, reason);
    return true;
  };

  test("a shard blob that is not a tensor blob → ShardResultUnusable naming it, non-retryable, no tensors leaked", async () => {
    const acts = activities();
    const { keys, shardKeys } = await twoShards(acts);
    // Stored through the store (its sha256 matches), so only the tensor format's own check can catch it.
    await store.put(shardKeys[1]!, new TextEncoder().encode("not a tensor blob at all"));
    const before = tf.memory().numTensors;
    await assert.rejects(acts.outerStep({ runId: "err", config: small, iteration: 0, ...keys, shardKeys, taskCount: 4 }), unusableShards([1], /bad magic/));
    assert.equal(tf.memory().numTensors, before, "the first shard, already decoded, is disposed");
  });

  test("a shard blob changed on disk → ShardResultUnusable (store checksum); rerunning the shard heals it, bit-identically", async () => {
    const acts = activities();
    const { keys, shardKeys } = await twoShards(acts);
    const path = store.pathOf(shardKeys[0]!);
    const good = readFileSync(path);
    const bytes = Buffer.from(good);
    bytes[bytes.length - 10]! ^= 0x01;
    writeFileSync(path, bytes);
    const input = { runId: "err", config: small, iteration: 0, ...keys, shardKeys, taskCount: 4 };
    await assert.rejects(acts.outerStep(input), unusableShards([0], /SHA-256 mismatch/));
    // What the workflow does next: the shard again (a pure function of seed, iteration, shard), then the outer step.
    const s0 = shardPlan(small)[0]!;
    await acts.runShard({ runId: "err", config: small, iteration: 0, shardIndex: 0, taskStart: s0.taskStart, taskEnd: s0.taskEnd, paramsKey: keys.paramsKey });
    assert.ok(readFileSync(path).equals(good), "the recomputed shard blob is byte for byte the first one");
    const next = await acts.outerStep(input);
    assert.match(next.paramsKey, /^runs\/err\/params\//);
  });

  test("a shard result emptied on disk (a recomputable put torn by a power cut) → ShardResultUnusable, healed by a rerun", async () => {
    // Shard results are put without fsync (PutOptions.recomputable): after a power cut the file can
    // be there with none of its bytes. The envelope's header is then missing, so the read fails
    // verification and the workflow reruns the shard rather than failing the run.
    const acts = activities();
    const { keys, shardKeys } = await twoShards(acts);
    const path = store.pathOf(shardKeys[1]!);
    const good = readFileSync(path);
    writeFileSync(path, new Uint8Array(0));
    const input = { runId: "err", config: small, iteration: 0, ...keys, shardKeys, taskCount: 4 };
    await assert.rejects(acts.outerStep(input), unusableShards([1], /./));
    const s1 = shardPlan(small)[1]!;
    await acts.runShard({ runId: "err", config: small, iteration: 0, shardIndex: 1, taskStart: s1.taskStart, taskEnd: s1.taskEnd, paramsKey: keys.paramsKey });
    assert.ok(readFileSync(path).equals(good));
    await acts.outerStep(input);
  });

  test("a shard of another iteration → BlobCorrupt (rerunning cannot fix a wrong key); a wrong taskCount → InvalidActivityInput", async () => {
    const acts = activities();
    const { keys, shardKeys } = await twoShards(acts);
    await assert.rejects(acts.outerStep({ runId: "err", config: small, iteration: 1, ...keys, shardKeys, taskCount: 4 }), isFailure("BlobCorrupt", true));
    await assert.rejects(acts.outerStep({ runId: "err", config: small, iteration: 0, ...keys, shardKeys, taskCount: 3 }), isFailure("InvalidActivityInput", true));
  });

  test("missing shard results → ShardResultUnusable naming every one; missing parameters → BlobNotFound", async () => {
    const acts = activities();
    const { keys, shardKeys } = await twoShards(acts);
    const missing = [shardKey("err", 0, 7), shardKey("err", 0, 9)];
    await assert.rejects(
      acts.outerStep({ runId: "err", config: small, iteration: 0, ...keys, shardKeys: [...shardKeys, ...missing], taskCount: 8 }),
      unusableShards([7, 9], /no blob at key/),
    );
    await assert.rejects(
      acts.runShard({ runId: "err", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey.replace(/[0-9a-f]{64}/, "0".repeat(64)) }),
      isFailure("BlobNotFound", true),
    );
  });

  test("an invalid config → InvalidRunConfig, non-retryable", async () => {
    await assert.rejects(activities().initRun({ runId: "bad", config: { metaBatchSize: 2, shardSize: 5 } as unknown as RunConfig }), isFailure("InvalidRunConfig", true));
  });

  test("a transient store failure → StoreUnavailable, retryable", async () => {
    const flaky: BlobStore = {
      describe: () => "flaky",
      exists: async () => false,
      put: async () => {
        throw new StoreUnavailable("connection reset", { suggestion: "check the S3 endpoint" });
      },
      get: (k) => store.get(k),
      list: (p) => store.list(p),
      delete: (k) => store.delete(k),
    };
    const before = tf.memory().numTensors;
    await assert.rejects(createActivities({ store: flaky, context: fakeContext().context }).initRun({ runId: "flaky", config: small }), (e) => {
      isFailure("StoreUnavailable", false)(e);
      assert.match((e as Error).message, /connection reset; check the S3 endpoint/);
      return true;
    });
    assert.equal(tf.memory().numTensors, before, "initial parameters that were never stored are disposed");
  });

  test("a store refusal on a gpu worker → WorkerStoreAccessDenied, retryable (another worker takes it), reported once per attempt; without the hook, StoreAccessDenied, final", async () => {
    const keys = await createActivities({ store }).initRun({ runId: "denied", config: small });
    const refusing: BlobStore = Object.assign(Object.create(store) as FsBlobStore, {
      get: async () => {
        throw new StoreAccessDenied("access denied: cannot read: InvalidAccessKeyId (HTTP 403)");
      },
    });
    const reported: Error[] = [];
    const input = { runId: "denied", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: keys.paramsKey };
    const onGpu = createActivities({ store: refusing, context: fakeContext().context, onStoreAccessDenied: { worker: "gpu-7", report: (e) => reported.push(e) } });
    await assert.rejects(onGpu.runShard(input), (e) => {
      isFailure("WorkerStoreAccessDenied", false)(e);
      assert.match((e as Error).message, /gpu worker gpu-7 was refused by the store: access denied.*; retried on another worker/);
      return true;
    });
    await assert.rejects(onGpu.evaluate({ runId: "denied", config: small, iteration: 0, paramsKey: keys.paramsKey }), isFailure("WorkerStoreAccessDenied", false));
    assert.equal(reported.length, 2);
    const alone = createActivities({ store: refusing, context: fakeContext().context });
    await assert.rejects(alone.runShard(input), isFailure("StoreAccessDenied", true));
  });
});

describe("checkpoints", () => {
  test("the manifest is written before the latest pointer, and loads by either key", async () => {
    const puts: string[] = [];
    const recording: BlobStore = Object.assign(Object.create(store) as FsBlobStore, {
      put: (k: string, b: Uint8Array, o?: { contentType?: string }) => (puts.push(k), store.put(k, b, o)),
    });
    const createdAt = new Date("2024-06-01T12:00:00.000Z");
    const acts = createActivities({ store: recording, context: fakeContext().context, now: () => createdAt });
    const keys = await acts.initRun({ runId: "ckpt", config: small });
    puts.length = 0;
    const manifest = { runId: "ckpt", iteration: 5, ...keys, config: small, metaLr: 0.001, metrics: { latest: { tasks: 4, preLoss: 2, postLoss: 1 } } };
    const { manifestKey } = await acts.writeCheckpoint({ manifest });
    assert.equal(manifestKey, checkpointManifestKey("ckpt", 5));
    assert.deepEqual(puts, [manifestKey, latestCheckpointKey("ckpt")], "pointer last");
    const pointer = JSON.parse(new TextDecoder().decode(await store.get(latestCheckpointKey("ckpt")))) as LatestPointer;
    assert.deepEqual(pointer, { manifestKey, iteration: 5 });

    // Loading also says whether the checkpoint's own config could go on from it: this hand-made
    // manifest claims iteration 5 of a 2-iteration config, and the check says so.
    const problems = ["iterations: the checkpoint is at iteration 5, past iterations 2; set iterations ≥ 5"];
    const expected = { format: "metatrain-checkpoint/1", ...manifest, createdAt: createdAt.toISOString(), resume: { config: small, problems } };
    assert.deepEqual(await acts.loadCheckpoint({ key: manifestKey }), expected);
    assert.deepEqual(await acts.loadCheckpoint({ key: latestCheckpointKey("ckpt") }), expected);
  });

  test("a checkpoint whose parameters fail verification falls back to the newest earlier one that verifies; with none, BlobCorrupt", async () => {
    const logs: string[] = [];
    const acts = activities({ log: (msg) => logs.push(msg) });
    const k1 = await acts.initRun({ runId: "fb", config: small });
    const k2 = await acts.initRun({ runId: "fb", config: { ...small, seed: small.seed + 1 } }); // other parameters, so another key
    assert.notEqual(k1.paramsKey, k2.paramsKey);
    const base = { runId: "fb", config: small, metaLr: 0.001, metrics: {} };
    await acts.writeCheckpoint({ manifest: { ...base, iteration: 1, ...k1 } });
    await acts.writeCheckpoint({ manifest: { ...base, iteration: 2, ...k2 } });
    const flip = (key: string) => {
      const bytes = readFileSync(store.pathOf(key));
      bytes[bytes.length >> 1]! ^= 0x01;
      writeFileSync(store.pathOf(key), bytes);
    };
    flip(k2.paramsKey);
    const out = await acts.loadCheckpoint({ key: latestCheckpointKey("fb") });
    assert.equal(out.iteration, 1);
    assert.equal(out.paramsKey, k1.paramsKey);
    assert.equal(out.fallback?.from, checkpointManifestKey("fb", 2));
    assert.equal(out.fallback?.manifestKey, checkpointManifestKey("fb", 1));
    assert.match(out.fallback?.reason ?? "", /SHA-256 mismatch/);
    assert.deepEqual(out.resume.problems, []);
    assert.ok(logs.includes("loadCheckpoint: checkpoint unusable, falling back to an earlier one"));
    // A healthy checkpoint loads as itself, with no fallback.
    assert.equal((await acts.loadCheckpoint({ key: checkpointManifestKey("fb", 1) })).fallback, undefined);
    // Nothing earlier verifies either: the first error, naming the checkpoint asked for.
    flip(k1.paramsKey);
    await assert.rejects(acts.loadCheckpoint({ key: latestCheckpointKey("fb") }), (e) => isFailure("BlobCorrupt", true)(e) && (e as Error).message.includes(k2.paramsKey));
  });

  test("bad checkpoint keys and manifests are refused with the right types", async () => {
    const acts = activities();
    const keys = await acts.initRun({ runId: "ckpt", config: small });
    const base = { runId: "ckpt", iteration: 1, ...keys, config: small, metaLr: 0.001, metrics: {} };
    await assert.rejects(acts.writeCheckpoint({ manifest: { ...base, paramsKey: keys.paramsKey.replace(/[0-9a-f]{64}/, "f".repeat(64)) } }), isFailure("BlobNotFound", true));
    assert.equal(await store.exists(latestCheckpointKey("ckpt")), false);
    await assert.rejects(acts.loadCheckpoint({ key: "runs/ckpt/checkpoints/00000009/manifest.json" }), isFailure("BlobNotFound", true));
    await assert.rejects(acts.loadCheckpoint({ key: keys.paramsKey }), isFailure("BlobCorrupt", true)); // a tensor blob is not JSON
    await store.put("runs/ckpt/other.json", new TextEncoder().encode(JSON.stringify({ hello: 1 })));
    await assert.rejects(acts.loadCheckpoint({ key: "runs/ckpt/other.json" }), isFailure("InvalidActivityInput", true));
    const badConfig = { ...small, metaBatchSize: 1 }; // shardSize 2 > metaBatchSize 1
    await assert.rejects(acts.writeCheckpoint({ manifest: { ...base, config: badConfig } }), isFailure("InvalidRunConfig", true));
    const manifestKey = checkpointManifestKey("ckpt", 1);
    const stored = { format: "metatrain-checkpoint/1", ...base, config: badConfig, createdAt: new Date(0).toISOString() };
    await store.put(manifestKey, new TextEncoder().encode(JSON.stringify(stored)));
    await assert.rejects(acts.loadCheckpoint({ key: manifestKey }), isFailure("InvalidRunConfig", true));
    await store.put(manifestKey, new TextEncoder().encode(JSON.stringify({ ...stored, config: small, iteration: -1 })));
    await assert.rejects(acts.loadCheckpoint({ key: manifestKey }), (e) => isFailure("BlobCorrupt", true)(e) && /iteration/.test((e as Error).message));
  });
});

describe("evaluate", () => {
  test("reports the query loss after evalSteps test-time steps as mean ± 95% CI over evalTasks", async () => {
    const config = cfg({ ...small, evalTasks: 6, evalSteps: 2 });
    const fake = fakeContext();
    const acts = createActivities({ store, context: fake.context });
    const keys = await acts.initRun({ runId: "eval", config });
    const before = tf.memory().numTensors;
    const s = await acts.evaluate({ runId: "eval", config, iteration: 0, paramsKey: keys.paramsKey });
    assert.equal(tf.memory().numTensors, before);
    assert.equal(s.iteration, 0);
    assert.equal(s.steps, 2);
    assert.equal(s.loss.n, 6);
    assert.ok(Number.isFinite(s.loss.mean) && s.loss.mean > 0 && s.loss.ci95 > 0);
    assert.equal(s.accuracy, undefined, "regression reports no accuracy");
    assert.equal(s.batchNorm, "none");
    assert.ok(fake.beats.length >= 1);
    // Deterministic: the held-out task stream depends only on the run seed.
    assert.deepEqual(await acts.evaluate({ runId: "eval", config, iteration: 3, paramsKey: keys.paramsKey }), { ...s, iteration: 3 });
  });
});

describe("params cache", () => {
  // sinusoid-mlp 1-40-40-1 has 6 tensors (3 kernels, 3 biases).
  const TENSORS = 6;

  test("is bounded: the least recently used set is evicted and its tensors disposed", async () => {
    const evicted: string[] = [];
    const acts = activities({ paramsCacheSize: 2, log: (msg, f) => msg === "params cache evicted" && evicted.push(String(f?.key)) });
    const before = tf.memory().numTensors;
    const k1 = await acts.initRun({ runId: "c1", config: small });
    const k2 = await acts.initRun({ runId: "c2", config: small });
    assert.equal(tf.memory().numTensors - before, 2 * TENSORS);
    const k3 = await acts.initRun({ runId: "c3", config: small });
    assert.deepEqual(evicted, [k1.paramsKey]);
    assert.equal(tf.memory().numTensors - before, 2 * TENSORS, "two sets cached, the third disposed");
    // A shard on the evicted parameters reloads them from the store and evicts the next oldest.
    await acts.runShard({ runId: "c1", config: small, iteration: 0, shardIndex: 0, taskStart: 0, taskEnd: 2, paramsKey: k1.paramsKey });
    assert.deepEqual(evicted, [k1.paramsKey, k2.paramsKey]);
    assert.equal(tf.memory().numTensors - before, 2 * TENSORS);
    void k3;
  });

  test("never frees leased tensors, shares one load between concurrent leases, does not cache failures", async () => {
    let loads = 0;
    const make = (): Params => ({ w: tf.zeros([3]) });
    const cache = new ParamsCache({
      capacity: 1,
      load: async (key) => {
        loads++;
        await new Promise((r) => setTimeout(r, 5));
        if (key === "bad") throw new Error("boom");
        return make();
      },
    });
    const before = tf.memory().numTensors;
    const [a1, a2] = await Promise.all([cache.acquire("a"), cache.acquire("a")]);
    assert.equal(loads, 1);
    assert.equal(a1.params, a2.params);
    const b = await cache.acquire("b"); // over capacity, but "a" is leased: kept
    assert.deepEqual(cache.keys(), ["a", "b"]);
    assert.equal(a1.params.w!.isDisposed, false);
    a1.release();
    a2.release(); // "a" is free now and least recently used → evicted and disposed
    assert.equal(a1.params.w!.isDisposed, true);
    assert.deepEqual(cache.keys(), ["b"]);
    b.release();
    await assert.rejects(cache.acquire("bad"), /boom/);
    await assert.rejects(cache.acquire("bad"), /boom/);
    assert.equal(loads, 4, "a failed load is retried, not cached");
    cache.put("b", make()); // already cached: the duplicate is disposed
    cache.clear();
    assert.equal(tf.memory().numTensors, before);
  });
});
