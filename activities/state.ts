// The coordinator's state writes: a run's initial meta-parameters and optimizer state, and the outer
// step that sums shard results in shard order and applies the learner's update.
import type { InitRunInput, OuterStepInput, StateKeys } from "../contracts/activities.js";
import { splitShardBlobMap } from "../meta/algorithms/types.js";
import { serializeState } from "../meta/optimizers.js";
import { allFinite, dispose, serializeParams, sumInOrder, type Params } from "../meta/params.js";
import { initialParams, parseRunConfig } from "../meta/run-config.js";
import { optimKey, paramsKey } from "../storage/keys.js";
import { blobMismatch, invalidInput, nonFiniteLoss } from "./errors.js";
import type { ParamsCache } from "./params-cache.js";
import { isCount, isObject, secondsSince, type ActivityKit } from "./ports.js";

/** `initRun(input)`: idempotent (content-addressed keys). */
export function initRunActivity(kit: ActivityKit) {
  const { log, builds, cache, putContentAddressed, paramsMeta } = kit;
  async function initRun({ runId, config: raw }: InitRunInput): Promise<StateKeys> {
    const config = parseRunConfig(raw);
    const built = builds.get(config);
    const params = initialParams(built, config.seed);
    let owned = true;
    try {
      const state = built.optimizer.initialState(params);
      const pKey = await putContentAddressed(paramsKey, runId, serializeParams(params, paramsMeta(config)));
      const oKey = await putContentAddressed(optimKey, runId, serializeState(state));
      cache.put(pKey, params);
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
  const { store, log, metrics, builds, cache, decodeTensors, readState, putContentAddressed, paramsMeta } = kit;
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
    const blobs = await Promise.all(shardKeys.map((k) => store.get(k)));
    const shards: Params[] = [];
    let total: Params | undefined;
    let next: Params | undefined;
    let lease: Awaited<ReturnType<ParamsCache["acquire"]>> | undefined;
    try {
      let covered = 0;
      shardKeys.forEach((k, i) => {
        const { params, meta } = decodeTensors(k, blobs[i]!);
        shards.push(params);
        const m = isObject(meta) ? meta : {};
        if (m.runId !== runId || m.iteration !== iteration || !isCount(m.taskStart) || !isCount(m.taskEnd)) {
          throw blobMismatch(k, `holds a shard of run ${String(m.runId)} iteration ${String(m.iteration)}, not of run ${runId} iteration ${iteration}`);
        }
        covered += m.taskEnd - m.taskStart;
      });
      if (covered !== taskCount) {
        throw invalidInput(`the ${shardKeys.length} shards cover ${covered} tasks but taskCount is ${taskCount}`, "pass the number of tasks the given shards cover");
      }
      lease = await cache.acquire(input.paramsKey);
      const state = await readState(input.optimKey);
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
      const pKey = await putContentAddressed(paramsKey, runId, serializeParams(next, paramsMeta(config)));
      const oKey = await putContentAddressed(optimKey, runId, serializeState(out.state));
      // The next iteration's shards (on this worker in role `all`) and outer step read these parameters.
      cache.put(pKey, next);
      next = undefined;
      log("outerStep", { runId, iteration, shards: shardKeys.length, taskCount, lr, paramsKey: pKey });
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
