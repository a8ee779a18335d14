// The coordinator's state writes: a run's initial meta-parameters and optimizer state, and the outer
// step that sums shard results in shard order and applies the learner's update.
import { ApplicationFailure } from "@temporalio/activity";
import type { InitRunInput, OuterStepInput, StateKeys, UnusableShard } from "../contracts/activities.js";
import { ErrorTypes } from "../contracts/errors.js";
import { splitShardBlobMap } from "../meta/algorithms/types.js";
import { serializeState } from "../meta/optimizers.js";
import { allFinite, dispose, serializeParams, sumInOrder, type Params } from "../meta/params.js";
import { initialParams, parseRunConfig } from "../meta/run-config.js";
import { isStoreError } from "../storage/blobstore.js";
import { iterationRecordKey, optimKey, paramsKey, parseShardKey } from "../storage/keys.js";
import { RECORD_FORMAT, type IterationRecord } from "../storage/record.js";
import { blobMismatch, invalidInput, nonFiniteLoss, shardResultsUnusable } from "./errors.js";
import type { ParamsCache } from "./params-cache.js";
import { isCount, isObject, secondsSince, type ActivityKit } from "./ports.js";

/** `initRun(input)`: idempotent (content-addressed keys). */
export function initRunActivity(kit: ActivityKit) {
  const { log, builds, cache, rememberState, putContentAddressed, paramsMeta } = kit;
  async function initRun({ runId, config: raw }: InitRunInput): Promise<StateKeys> {
    const config = parseRunConfig(raw);
    const built = builds.get(config);
    const params = initialParams(built, config.seed);
    let owned = true;
    try {
      const state = built.optimizer.initialState(params);
      const pKey = await putContentAddressed(paramsKey, runId, serializeParams(params, paramsMeta(config)));
      const stateBytes = serializeState(state);
      const oKey = await putContentAddressed(optimKey, runId, stateBytes);
      cache.put(pKey, params);
      rememberState(oKey, stateBytes);
      owned = false;
      log("initRun", { runId, paramsKey: pKey, optimKey: oKey });
      return { paramsKey: pKey, optimKey: oKey };
    } finally {
      if (owned) dispose(params);
    }
  }
  return initRun;
}

/** `outerStep(input)`: the round's update; its outputs are content-addressed, so a retry writes the same keys. */
export function outerStepActivity(kit: ActivityKit) {
  const { store, log, metrics, builds, cache, decodeTensors, readState, rememberState, putContentAddressed, paramsMeta, now, putRecord, prefetch } = kit;
  async function outerStep(input: OuterStepInput): Promise<StateKeys> {
    const { runId, iteration, shardKeys, taskCount } = input;
    const started = performance.now();
    const config = parseRunConfig(input.config);
    if (shardKeys.length === 0) throw invalidInput(`outer step of iteration ${iteration} got no shard keys`, "pass the result keys of the shards that finished, in shard order");
    if (!isCount(taskCount, 1)) throw invalidInput(`taskCount ${taskCount} is not a positive integer`, "pass the number of tasks the given shards cover");
    if (input.metaLr !== undefined && !(Number.isFinite(input.metaLr) && input.metaLr > 0)) {
      throw invalidInput(`metaLr ${input.metaLr} is not a positive finite number`, "set a positive meta learning rate");
    }
    const { optimizer } = builds.get(config);
    // Fetch in parallel, decode in the given order: the sum below runs strictly in that order.
    // The optimizer state is read alongside, not after (one store round trip fewer on the critical
    // path); its errors still surface below, after the shards' (so unusable shards are named first).
    const statePending = readState(input.optimKey);
    statePending.catch(() => undefined);
    // Results read ahead as their shards completed (on a coordinator) are taken as they are.
    let readAhead = 0;
    const fetched = await Promise.allSettled(
      shardKeys.map((k) => {
        const ahead = prefetch?.take(k);
        if (ahead) readAhead++;
        return ahead ?? store.get(k);
      }),
    );
    const shards: Params[] = [];
    let total: Params | undefined;
    let next: Params | undefined;
    let lease: Awaited<ReturnType<ParamsCache["acquire"]>> | undefined;
    try {
      // Every unusable shard is named at once, so the workflow reruns them all in one go.
      const unusable: UnusableShard[] = [];
      let covered = 0;
      shardKeys.forEach((k, i) => {
        const r = fetched[i]!;
        try {
          if (r.status === "rejected") throw r.reason;
          const { params, meta } = decodeTensors(k, r.value);
          shards.push(params);
          const m = isObject(meta) ? meta : {};
          if (m.runId !== runId || m.iteration !== iteration || !isCount(m.taskStart) || !isCount(m.taskEnd)) {
            throw blobMismatch(k, `holds a shard of run ${String(m.runId)} iteration ${String(m.iteration)}, not of run ${runId} iteration ${iteration}`);
          }
          covered += m.taskEnd - m.taskStart;
        } catch (e) {
          // Only this round's own keys: rerunning the shard rewrites exactly that key.
          const shard = parseShardKey(k);
          if (!shard || shard.runId !== runId || shard.iteration !== iteration || !recomputable(e)) throw e;
          unusable.push({ key: k, shardIndex: shard.shardIndex, reason: (e as Error).message });
        }
      });
      if (unusable.length) {
        log("outerStep: shard results unusable", { runId, iteration, shards: unusable.map((u) => u.shardIndex) });
        throw shardResultsUnusable(iteration, unusable);
      }
      if (covered !== taskCount) {
        throw invalidInput(`the ${shardKeys.length} shards cover ${covered} tasks but taskCount is ${taskCount}`, "pass the number of tasks the given shards cover");
      }
      lease = await cache.acquire(input.paramsKey);
      const state = await statePending;
      if (state.kind !== optimizer.kind) {
        throw blobMismatch(input.optimKey, `holds ${state.kind} optimizer state but algorithm ${config.algorithm} uses ${optimizer.kind}`);
      }
      const parts = shards.map(splitShardBlobMap);
      const shardData = parts.flatMap((p) => (p.data ? [p.data] : []));
      total = sumInOrder(parts.map((p) => p.sum));
      if (!allFinite(total)) throw nonFiniteLoss(`the shards of iteration ${iteration}`);
      // The base rate (the config's or a signalled one); a schedule such as Reptile's is the optimizer's own.
      const base = input.metaLr ?? config.metaLr;
      const lr = optimizer.stepSize(state, base);
      const out = optimizer.apply(lease.params, total, taskCount, state, { metaLr: base, ...(shardData.length ? { shardData } : {}) });
      next = out.params;
      if (!allFinite(next)) throw nonFiniteLoss(`the outer step of iteration ${iteration}`);
      // All writes at once: they are independent, and each waits on its own fsync. The record's
      // key is fixed by the round, so a retried step rewrites it (with the retry's timings).
      const stateBytes = serializeState(out.state);
      const [pKey, oKey] = await Promise.all([
        putContentAddressed(paramsKey, runId, serializeParams(next, paramsMeta(config))),
        putContentAddressed(optimKey, runId, stateBytes),
        input.round ? putRecord(iterationRecordKey(runId, iteration), iterationRecord(input, base, lr, now().getTime(), secondsSince(started))) : undefined,
      ]);
      // The next outer step (here, as a local activity) decodes it from memory, as it finds `next` in the params cache.
      rememberState(oKey, stateBytes);
      // The next iteration's shards (on this worker in role `all`) and outer step read these parameters.
      cache.put(pKey, next);
      next = undefined;
      log("outerStep", { runId, iteration, shards: shardKeys.length, readAhead, taskCount, lr, paramsKey: pKey });
      metrics.observeOuterStep({ algorithm: config.algorithm, seconds: secondsSince(started) });
      // The iteration is done once its state is written; the workflow's sink adds the round's losses.
      metrics.setRunProgress({ runId, iteration: iteration + 1, iterations: config.iterations });
      return { paramsKey: pKey, optimKey: oKey };
    } finally {
      dispose(...shards, total, next);
      lease?.release();
    }
  }
  return outerStep;
}

/** The round's entry in the run's record: its metrics, rates and timings, shards in shard order. */
function iterationRecord(input: OuterStepInput, metaLr: number, stepSize: number, endedAt: number, outerSeconds: number): IterationRecord {
  const { metrics, shards } = input.round!;
  const { tasks, preLoss, postLoss, preAccuracy, postAccuracy } = metrics;
  return {
    format: RECORD_FORMAT,
    kind: "iteration",
    runId: input.runId,
    iteration: input.iteration,
    tasks,
    preLoss,
    postLoss,
    ...(preAccuracy !== undefined && postAccuracy !== undefined ? { preAccuracy, postAccuracy } : {}),
    metaLr,
    stepSize,
    // 0: a shard from a worker that does not report its start (an older version).
    startedAt: Math.min(endedAt, ...shards.map((s) => s.startedAt).filter((t) => t > 0)),
    endedAt,
    outerSeconds,
    shards: shards.map(({ index, worker, seconds, tasks }) => ({ index, worker, seconds, tasks })),
  };
}

/**
 * Whether rerunning the shard can fix what reading its result threw: a missing blob, one failing
 * verification, or one holding another shard (BlobNotFound, BlobCorrupt). Transient store errors
 * are retried as they are; anything else is not the blob's fault.
 */
function recomputable(e: unknown): boolean {
  if (isStoreError(e)) return e.code === "BLOB_NOT_FOUND" || e.code === "BLOB_CORRUPT";
  return e instanceof ApplicationFailure && e.type === ErrorTypes.BlobCorrupt;
}
