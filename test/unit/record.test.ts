// The run's record: the codec (round trip, a bad field named), its keys, the history a resumed run
// reads (continuous across the checkpoint it came from), the compute/orchestration split, and the
// activities writing it under fixed keys (a retry rewrites, never appends).
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createActivities } from "../../activities/index.js";
import { shardPlan } from "../../contracts/config.js";
import { parseRunConfig } from "../../meta/run-config.js";
import { MemoryBlobStore } from "../../storage/memory-store.js";
import { evaluationRecordKey, iterationRecordKey, parseRecordKey, recordOriginKey, recordPrefix, recordSegmentKey } from "../../storage/keys.js";
import { RECORD_FORMAT, compactRecord, decodeRecord, encodeRecord, iterationTimes, readRunHistory, type EvaluationRecord, type IterationRecord } from "../../storage/record.js";
import { useCpu } from "../helpers/tf.js";

before(useCpu);

const round = (runId: string, iteration: number, postLoss = 1, extra: Partial<IterationRecord> = {}): IterationRecord => ({
  format: RECORD_FORMAT,
  kind: "iteration",
  runId,
  iteration,
  tasks: 4,
  preLoss: 2,
  postLoss,
  metaLr: 0.001,
  stepSize: 0.001,
  startedAt: 1_000 * iteration,
  endedAt: 1_000 * iteration + 800,
  outerSeconds: 0.05,
  shards: [{ index: 0, worker: "w1", seconds: 0.3, tasks: 4 }],
  ...extra,
});

describe("record codec", () => {
  test("round-trips every kind, as compact JSON", () => {
    const entries = [
      round("a", 3, 0.5, { preAccuracy: 0.2, postAccuracy: 0.9 }),
      { format: RECORD_FORMAT, kind: "evaluation", runId: "a", iteration: 4, steps: 10, loss: { mean: 0.4, ci95: 0.05, n: 600 }, endedAt: 5 } as const,
      { format: RECORD_FORMAT, kind: "origin", runId: "b", sourceRunId: "a", manifestKey: "runs/a/checkpoints/00000004/manifest.json", iteration: 4 } as const,
    ];
    for (const e of entries) {
      const bytes = encodeRecord(e);
      assert.ok(!new TextDecoder().decode(bytes).includes("\n"), "one line, no indentation");
      assert.deepEqual(decodeRecord("k", bytes), e);
    }
  });

  test("names the key and the first bad field", () => {
    const bad = (doc: unknown) => () => decodeRecord("runs/a/record/00000001.iter.json", new TextEncoder().encode(JSON.stringify(doc)));
    assert.throws(bad({ ...round("a", 1), postLoss: "x" }), /00000001\.iter\.json.*field postLoss/);
    assert.throws(bad({ ...round("a", 1), format: "other/1" }), /field format/);
    assert.throws(bad({ ...round("a", 1), shards: [{ index: 0 }] }), /field shards/);
    assert.throws(() => decodeRecord("k", new TextEncoder().encode("{")), /not valid JSON/);
  });

  test("keys: fixed by (run, iteration), zero-padded, parsed back", () => {
    assert.equal(iterationRecordKey("r", 12), "runs/r/record/00000012.iter.json");
    assert.equal(evaluationRecordKey("r", 12), "runs/r/record/00000012.eval.json");
    assert.equal(recordOriginKey("r"), "runs/r/record/origin.json");
    assert.equal(recordSegmentKey("r", 0, 9), "runs/r/record/00000000-00000009.seg.json");
    assert.deepEqual(parseRecordKey("runs/r/record/00000012.eval.json"), { runId: "r", iteration: 12, last: 12, kind: "eval" });
    assert.deepEqual(parseRecordKey("runs/r/record/00000000-00000009.seg.json"), { runId: "r", iteration: 0, last: 9, kind: "seg" });
    assert.equal(parseRecordKey("runs/r/record/origin.json"), undefined);
  });

  test("iterationTimes: wall time from the previous round's end; compute = slowest shard + outer step", () => {
    const rs = [round("a", 0), round("a", 1, 1, { shards: [{ index: 0, worker: "w1", seconds: 0.3, tasks: 2 }, { index: 1, worker: "w2", seconds: 0.5, tasks: 2 }] })];
    const [t0, t1] = iterationTimes(rs);
    // Round 0 has no predecessor: 0 → 800 ms, compute 0.3 + 0.05 = 0.35 s, orchestration 0.45 s.
    assert.equal(t0!.seconds, 0.8);
    assert.ok(Math.abs(t0!.compute - 0.35) < 1e-12 && Math.abs(t0!.orchestration - 0.45) < 1e-12);
    // Round 1: 800 → 1800 ms = 1 s; compute max(0.3, 0.5) + 0.05 = 0.55 s, orchestration 0.45 s.
    assert.equal(t1!.seconds, 1);
    assert.ok(Math.abs(t1!.compute - 0.55) < 1e-12 && Math.abs(t1!.orchestration - 0.45) < 1e-12);
  });
});

describe("readRunHistory", () => {
  test("a resumed run continues its source's rounds below the checkpoint, not past it", async () => {
    const store = new MemoryBlobStore();
    for (let i = 0; i < 6; i++) await store.put(iterationRecordKey("src", i), encodeRecord(round("src", i, 10 - i)));
    await store.put(evaluationRecordKey("src", 3), encodeRecord({ format: RECORD_FORMAT, kind: "evaluation", runId: "src", iteration: 3, steps: 5, loss: { mean: 1, ci95: 0.1, n: 10 }, endedAt: 0 }));
    // `dst` resumed from src's checkpoint at iteration 3, then ran rounds 3 and 4 itself.
    await store.put(recordOriginKey("dst"), encodeRecord({ format: RECORD_FORMAT, kind: "origin", runId: "dst", sourceRunId: "src", manifestKey: "m", iteration: 3 }));
    for (const i of [3, 4]) await store.put(iterationRecordKey("dst", i), encodeRecord(round("dst", i, 0.5)));
    const h = await readRunHistory(store, "dst");
    assert.deepEqual(h.iterations.map((r) => [r.runId, r.iteration]), [["src", 0], ["src", 1], ["src", 2], ["dst", 3], ["dst", 4]]);
    assert.deepEqual(h.evaluations.map((e) => e.iteration), [3]);
    assert.deepEqual(h.origins.map((o) => o.sourceRunId), ["src"]);
  });

  test("compaction at a checkpoint: one segment blob, the same history, repeatable and safe to cut short", async () => {
    const store = new MemoryBlobStore();
    const evaluation = (iteration: number): EvaluationRecord => ({ format: RECORD_FORMAT, kind: "evaluation", runId: "c", iteration, steps: 1, loss: { mean: 1, ci95: 0.1, n: 4 }, endedAt: 0 });
    for (let i = 0; i < 5; i++) await store.put(iterationRecordKey("c", i), encodeRecord(round("c", i, 5 - i)));
    await store.put(evaluationRecordKey("c", 2), encodeRecord(evaluation(2)));
    await store.put(evaluationRecordKey("c", 3), encodeRecord(evaluation(3)));
    const before = await readRunHistory(store, "c");
    // The checkpoint after 3 rounds: rounds 0–2 and the evaluation after 2 go into one segment.
    assert.equal(await compactRecord(store, "c", 3), 4);
    assert.deepEqual(await store.list(recordPrefix("c")), [
      recordSegmentKey("c", 0, 2), evaluationRecordKey("c", 3), iterationRecordKey("c", 3), iterationRecordKey("c", 4),
    ]);
    assert.deepEqual(await readRunHistory(store, "c"), before);
    assert.equal(await compactRecord(store, "c", 3), 0, "nothing left to compact: a retry writes nothing");
    // A blob rewritten after its segment (a late retry) is taken once, not twice.
    await store.put(iterationRecordKey("c", 1), encodeRecord(round("c", 1, 4)));
    assert.deepEqual(await readRunHistory(store, "c"), before);
    assert.equal(await compactRecord(store, "c", 5), 4, "rounds 1 (again), 3, 4 and the evaluation after 3");
    assert.deepEqual((await store.list(recordPrefix("c"))).map((k) => parseRecordKey(k)?.kind), ["seg", "seg"]);
    assert.deepEqual(await readRunHistory(store, "c"), before);
  });

  test("a run without a record: BlobNotFound naming the record prefix", async () => {
    await assert.rejects(readRunHistory(new MemoryBlobStore(), "nope"), (e: Error) => e.name === "BlobNotFound" && e.message.includes(recordPrefix("nope")));
  });
});

describe("activities write the record", () => {
  test("outer step and evaluate write one entry each under fixed keys; a retry rewrites it", async () => {
    const store = new MemoryBlobStore();
    const acts = createActivities({ store, context: () => ({ heartbeat: () => {}, signal: new AbortController().signal }), backendName: () => "cpu", workerName: "w-test" });
    const config = parseRunConfig({ algorithm: "maml", metaBatchSize: 4, shardSize: 2, iterations: 1, innerSteps: 1, evalTasks: 4, evalSteps: 1, seed: 1, task: { family: "sinusoid", shots: 5, queryShots: 5 } });
    const keys = await acts.initRun({ runId: "rec", config });
    const outs = [];
    for (const s of shardPlan(config)) outs.push(await acts.runShard({ runId: "rec", config, iteration: 0, shardIndex: s.index, taskStart: s.taskStart, taskEnd: s.taskEnd, paramsKey: keys.paramsKey }));
    assert.equal(outs[0]!.worker, "w-test");
    const shards = outs.map((o, index) => ({ index, worker: o.worker!, seconds: o.seconds, tasks: o.metrics.tasks, startedAt: o.startedAt! }));
    const input = { runId: "rec", config, iteration: 0, ...keys, shardKeys: outs.map((o) => o.resultKey), taskCount: 4, round: { metrics: { tasks: 4, preLoss: 3, postLoss: 2 }, shards } };
    const next = await acts.outerStep(input);
    await acts.outerStep(input); // a retry
    await acts.evaluate({ runId: "rec", config, iteration: 1, paramsKey: next.paramsKey });
    assert.deepEqual(await store.list(recordPrefix("rec")), [iterationRecordKey("rec", 0), evaluationRecordKey("rec", 1)]);
    const h = await readRunHistory(store, "rec");
    assert.equal(h.iterations[0]!.postLoss, 2);
    assert.deepEqual(h.iterations[0]!.shards.map((s) => [s.index, s.worker, s.tasks]), [[0, "w-test", 2], [1, "w-test", 2]]);
    assert.equal(h.iterations[0]!.metaLr, config.metaLr);
    assert.equal(h.evaluations[0]!.loss.n, 4);
    // The checkpoint after iteration 1 compacts round 0; the evaluation after 1 stays as it is.
    await acts.writeCheckpoint({ manifest: { runId: "rec", iteration: 1, ...next, config, metaLr: config.metaLr, metrics: {} } });
    assert.deepEqual((await store.list(recordPrefix("rec"))).filter((k) => !k.includes("checkpoints")), [recordSegmentKey("rec", 0, 0), evaluationRecordKey("rec", 1)]);
    assert.deepEqual(await readRunHistory(store, "rec"), h);
  });
});
