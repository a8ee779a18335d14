// Test helpers for runs on the real services: the in-process reference, bit-for-bit comparison, and a run's progress and result through a Temporal client that rides out restarts.
import assert from "node:assert/strict";
import { WorkflowFailedError, type Client } from "@temporalio/client";
import type { MetaTrainingResult, RunProgress } from "../../contracts/activities.js";
import type { RunConfig, RunConfigInput } from "../../meta/run-config.js";
import { deserializeParams, dispose } from "../../meta/params.js";
import { LocalMetaTrainer } from "../../meta/trainer.js";
import { FILE_DATA } from "../../activities/build.js";
import type { BlobStore } from "../../storage/blobstore.js";
import { metaTrainingWorkflow, progressQuery } from "../../workflows/meta-training.js";
import { signalUntilSeen, steerTarget, type Steer } from "../../cli/steer.js";

const MINUTE = 60_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Small sinusoid runs: a few hundred ms per iteration on two busy cores. */
export const SMALL_SINUSOID: RunConfigInput = {
  algorithm: "maml",
  task: { family: "sinusoid", shots: 5, queryShots: 5 },
  model: { kind: "sinusoid-mlp" },
  innerSteps: 1,
  innerLr: 0.01,
  metaLr: 0.001,
  metaBatchSize: 4,
  shardSize: 2,
  batchTasks: true,
  iterations: 20,
  seed: 7,
  checkpointEvery: 5,
  evalEvery: 10,
  evalTasks: 4,
  evalSteps: 2,
  continueAsNewEvery: 8,
  timeouts: {
    shardStartToCloseSeconds: 120,
    // A killed gpu worker's shard is retried elsewhere after this.
    heartbeatSeconds: 5,
    // A killed coordinator's outer step is retried after this.
    coordinatorStartToCloseSeconds: 20,
    maximumAttempts: 20,
  },
};
/** Parameters as flat float32 arrays by name. */
export type Values = Record<string, Float32Array>;

const references = new Map<string, Promise<Values>>();
/** Final parameters of the in-process trainer for the same config (cached per config). */
export function reference(cfg: RunConfig): Promise<Values> {
  const key = JSON.stringify(cfg);
  let p = references.get(key);
  if (!p) {
    p = (async () => {
      // The same parsed config: the trainer has no defaults of its own.
      const t = new LocalMetaTrainer(cfg, FILE_DATA);
      try {
        for (let i = 0; i < cfg.iterations; i++) await t.step();
        return t.snapshot();
      } finally {
        t.dispose();
      }
    })();
    references.set(key, p);
  }
  return p;
}

/** Byte-for-byte equality of two parameter sets, with the first difference in the message. */
export function assertBitIdentical(actual: Values, expected: Values, what: string): void {
  assert.deepEqual(Object.keys(actual).sort(), Object.keys(expected).sort(), `${what}: parameter names`);
  for (const name of Object.keys(expected)) {
    const a = actual[name]!;
    const e = expected[name]!;
    assert.equal(a.length, e.length, `${what}: size of ${name}`);
    const ab = Buffer.from(a.buffer, a.byteOffset, a.byteLength);
    const eb = Buffer.from(e.buffer, e.byteOffset, e.byteLength);
    if (!ab.equals(eb)) {
      let i = 0;
      while (i < a.length && Object.is(a[i], e[i])) i++;
      let maxDiff = 0;
      for (let j = 0; j < a.length; j++) maxDiff = Math.max(maxDiff, Math.abs(a[j]! - e[j]!));
      assert.fail(`${what}: ${name}[${i}] is ${a[i]} but the in-process trainer has ${e[i]} (max |diff| ${maxDiff})`);
    }
  }
}

/** The parameters a run stored under `paramsKey`, read back through the store. */
export async function storedParams(store: BlobStore, paramsKey: string): Promise<Values> {
  const { params } = deserializeParams(await store.get(paramsKey));
  try {
    return Object.fromEntries(Object.entries(params).map(([k, t]) => [k, (t.dataSync() as Float32Array).slice()]));
  } finally {
    dispose(params);
  }
}

/** A fresh handle on the latest run of a workflow id (follows continue-as-new). */
export const latestRun = (client: Client, workflowId: string) => client.workflow.getHandle<typeof metaTrainingWorkflow>(workflowId);

/**
 * pause, resume or cancel as `metatrain` sends them (cli/steer.ts signalUntilSeen): sent again if
 * the run continued as new without showing it. Returns once the run shows it, or has ended.
 */
export function steerRun(client: Client, workflowId: string, which: Steer): Promise<RunProgress | undefined> {
  return signalUntilSeen(steerTarget(latestRun(client, workflowId), which, () => runProgress(client, workflowId)), which, { timeoutMs: 60_000 });
}

/** `progress`, or undefined when it cannot be answered now (no coordinator, server restarting). */
export async function runProgress(client: Client, workflowId: string): Promise<RunProgress | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      latestRun(client, workflowId).query(progressQuery),
      new Promise<undefined>((res) => (timer = setTimeout(() => res(undefined), 10_000))),
    ]);
  } catch {
    return undefined;
  } finally {
    clearTimeout(timer);
  }
}

/** Poll `progress` until `pred` holds; fails with the last answer after `timeoutMs`. */
export async function waitRunProgress(client: Client, workflowId: string, pred: (p: RunProgress) => boolean, what: string, timeoutMs = 5 * MINUTE): Promise<RunProgress> {
  const deadline = Date.now() + timeoutMs;
  let last: RunProgress | undefined;
  for (;;) {
    const p = await runProgress(client, workflowId);
    if (p) {
      last = p;
      if (pred(p)) return p;
    }
    if (Date.now() > deadline) assert.fail(`${workflowId}: ${what} did not happen within ${timeoutMs} ms; last progress ${JSON.stringify(last)}`);
    await sleep(200);
  }
}

/**
 * The workflow's result. Rides out a server that is down for a while (the client's own retries
 * give up after seconds); a workflow failure is rethrown as is. `signal` stops the waiting.
 */
export async function runResult(client: Client, workflowId: string, timeoutMs = 8 * MINUTE, signal?: AbortSignal): Promise<MetaTrainingResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    signal?.throwIfAborted(); // the caller gave up (a failed test closing its client): stop retrying
    const remaining = deadline - Date.now();
    if (remaining <= 0) assert.fail(`${workflowId}: no result within ${timeoutMs} ms; last progress ${JSON.stringify(await runProgress(client, workflowId))}`);
    let timer: NodeJS.Timeout | undefined;
    try {
      const r = await Promise.race([
        latestRun(client, workflowId).result(),
        new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), remaining))),
      ]);
      if (r !== "timeout") return r;
    } catch (e) {
      if (e instanceof WorkflowFailedError) throw e;
      await sleep(500); // e.g. UNAVAILABLE while the server restarts
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Whether `identity` (a worker identity, `<pid>@<host>` by default) names process `pid`. */
export const identityOf = (pid: number) => (identity: string) => new RegExp(`(^|\\D)${pid}(\\D|$)`).test(identity);

/** Wait until worker `pid` runs a `runShard` attempt of the latest run; returns the activity's id. */
export async function waitForShardOnWorker(client: Client, workflowId: string, pid: number, timeoutMs = 2 * MINUTE): Promise<string> {
  return (await waitForShardOnAnyWorker(client, workflowId, [pid], timeoutMs)).activityId;
}

/**
 * Wait until one of workers `pids` runs a `runShard` attempt of the latest run; returns the
 * activity's id and that worker's pid. (With two workers, one of them can take every shard of a
 * short run: waiting for a fixed one can outlast the run.)
 */
export async function waitForShardOnAnyWorker(client: Client, workflowId: string, pids: number[], timeoutMs = 2 * MINUTE): Promise<{ activityId: string; pid: number }> {
  const deadline = Date.now() + timeoutMs;
  const who = pids.map((pid) => ({ pid, is: identityOf(pid) }));
  for (;;) {
    const d = await latestRun(client, workflowId).describe().catch(() => undefined);
    for (const a of d?.raw.pendingActivities ?? []) {
      if (a.activityType?.name !== "runShard" || Number(a.state) !== 2 /* PENDING_ACTIVITY_STATE_STARTED */ || !a.activityId) continue;
      const w = who.find((x) => x.is(a.lastWorkerIdentity ?? ""));
      if (w) return { activityId: a.activityId, pid: w.pid };
    }
    if (Date.now() > deadline) assert.fail(`${workflowId}: no worker of ${pids.join(", ")} was seen running a shard within ${timeoutMs} ms`);
    await sleep(25);
  }
}
