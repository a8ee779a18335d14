// Orchestration overhead and worker scaling of the meta-training workflow on real services (Temporal
// dev server, rclone S3 or a file store), measured from the workflow's own history timestamps.
//
//   node --import tsx bench/orchestration.ts [--iterations 12] [--shard-sizes 1,2,4,8,16,32]
//     [--workers 1,2,4] [--store s3|file] [--simulated-task-ms N] [--skip overhead|scaling]
//
// 1. Overhead: meta-batch 32 of near-zero-compute sinusoid tasks (1 shot, 1 inner step) on ONE gpu
//    worker, for each shard size: steady-state ms per meta-iteration, split into the shard fan-out,
//    the outer step and the workflow's turn-around between rounds; in-activity time comes from each
//    shard's reported `seconds`, so "overhead" is what Temporal and the store add around it.
// 2. Scaling: meta-batch 32 in shards of 4 on 1, 2, 4 gpu worker processes. With
//    --simulated-task-ms N the workers are started with METATRAIN_SIMULATED_TASK_MS=N (each task
//    then takes N ms more; the worker must honour it — this file checks that it did); without it,
//    real compute on this machine's cores (sinusoid, 10 shots, 5 inner steps).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import { defaultPayloadConverter } from "@temporalio/common";
import type { temporal } from "@temporalio/proto";
import { arg, log, machine, median, numArg, record } from "./common.js";
import type { RunShardOutput } from "../contracts/activities.js";
import type { RunConfigInput } from "../meta/run-config.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { metaTrainingWorkflow } from "../workflows/meta-training.js";
import { startS3Server, type S3TestServer } from "../test/harness/s3-server.js";
import { startTemporalServer } from "../test/harness/temporal.js";
import { WorkerPool } from "../test/harness/workers.js";

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

const iterations = numArg("iterations", 12);
/** Iterations left out at the start (cold caches, first bundle and JIT). */
const WARMUP = 2;
const shardSizes = arg("shard-sizes", "1,2,4,8,16,32").split(",").map(Number);
const workerCounts = arg("workers", "1,2,4").split(",").map(Number);
const storeKind = arg("store", "s3");
const simulatedMs = numArg("simulated-task-ms", 0);
const skip = new Set(arg("skip", "").split(",").filter(Boolean));
/** Tasks per shard in the scaling runs (32 / size shards: use 2 to keep 16 workers busy). */
const scalingShardSize = numArg("scaling-shard-size", 4);

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number =>
  Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;

/** Per-iteration timings read off one run's history (one run: continueAsNewEvery > iterations). */
function analyse(events: HistoryEvent[], shardsPerIteration: number) {
  const acts: { type: string; scheduledAt: number; startedAt?: number; completedAt?: number; output?: unknown }[] = [];
  const byId = new Map<string, (typeof acts)[number]>();
  for (const e of events) {
    const at = ms(e.eventTime);
    const id = String(e.eventId);
    if (e.activityTaskScheduledEventAttributes) {
      const a = { type: e.activityTaskScheduledEventAttributes.activityType?.name ?? "?", scheduledAt: at };
      byId.set(id, a);
      acts.push(a);
    } else if (e.activityTaskStartedEventAttributes) {
      const a = byId.get(String(e.activityTaskStartedEventAttributes.scheduledEventId));
      if (a) a.startedAt = at;
    } else if (e.activityTaskCompletedEventAttributes) {
      const attrs = e.activityTaskCompletedEventAttributes;
      const a = byId.get(String(attrs.scheduledEventId));
      if (a) {
        a.completedAt = at;
        const p = attrs.result?.payloads?.[0];
        if (p) a.output = defaultPayloadConverter.fromPayload(p as never);
      }
    }
  }
  const shards = acts.filter((a) => a.type === "runShard");
  const outers = acts.filter((a) => a.type === "outerStep");
  const rows: Record<"fanOut" | "inActivity" | "shardLatency" | "outer" | "aggregateGap" | "turnaround", number>[] = [];
  for (let it = WARMUP; it < outers.length; it++) {
    const group = shards.slice(it * shardsPerIteration, (it + 1) * shardsPerIteration);
    const outer = outers[it]!;
    const fanOutStart = Math.min(...group.map((a) => a.scheduledAt));
    const fanOutEnd = Math.max(...group.map((a) => a.completedAt ?? NaN));
    const next = shards[(it + 1) * shardsPerIteration];
    rows.push({
      fanOut: fanOutEnd - fanOutStart,
      inActivity: group.reduce((s, a) => s + ((a.output as RunShardOutput | undefined)?.seconds ?? NaN) * 1000, 0),
      shardLatency: median(group.map((a) => (a.completedAt ?? NaN) - a.scheduledAt)),
      outer: (outer.completedAt ?? NaN) - outer.scheduledAt,
      aggregateGap: outer.scheduledAt - fanOutEnd,
      turnaround: next ? next.scheduledAt - (outer.completedAt ?? NaN) : NaN,
    });
  }
  const first = shards[WARMUP * shardsPerIteration]!.scheduledAt;
  const last = outers[outers.length - 1]!.completedAt!;
  const med = (k: keyof (typeof rows)[number]): number => Number(median(rows.map((r) => r[k]).filter(Number.isFinite)).toFixed(1));
  return {
    msPerIteration: Number(((last - first) / (outers.length - WARMUP)).toFixed(1)),
    medianFanOutMs: med("fanOut"),
    medianInActivityMsPerIteration: med("inActivity"),
    medianShardLatencyMs: med("shardLatency"),
    medianOuterStepMs: med("outer"),
    medianFanInToOuterStepMs: med("aggregateGap"),
    medianTurnaroundMs: med("turnaround"),
  };
}

async function main(): Promise<void> {
  let s3: S3TestServer | undefined;
  let fileDir: string | undefined;
  const temporalServer = await startTemporalServer();
  let storeUri: string;
  let storeEnv: Record<string, string> = {};
  if (storeKind === "s3") {
    s3 = await startS3Server();
    storeUri = `s3://${s3.bucket}/bench`;
    storeEnv = s3.env();
  } else {
    fileDir = mkdtempSync(join(tmpdir(), "metatrain-bench-store-"));
    storeUri = `file://${fileDir}`;
  }
  const pool = new WorkerPool(() => ({
    TEMPORAL_ADDRESS: temporalServer.address,
    TEMPORAL_NAMESPACE: temporalServer.namespace,
    METATRAIN_STORE: storeUri,
    METATRAIN_BACKEND: "cpu",
    ...storeEnv,
    ...(simulatedMs > 0 ? { METATRAIN_SIMULATED_TASK_MS: String(simulatedMs) } : {}),
  }));
  const connection = await Connection.connect({ address: temporalServer.address });
  const client = new Client({ connection, namespace: temporalServer.namespace });
  let runs = 0;

  async function run(config: RunConfigInput): Promise<{ seconds: number; events: HistoryEvent[] }> {
    const runId = `bench-${++runs}`;
    const t0 = performance.now();
    const handle = await client.workflow.start(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: runId, args: [{ runId, config }] });
    await handle.result();
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, events: (await handle.fetchHistory()).events ?? [] };
  }

  const common: RunConfigInput = {
    algorithm: "fomaml",
    model: { kind: "sinusoid-mlp" },
    innerSteps: 1,
    innerLr: 0.01,
    metaLr: 0.001,
    metaBatchSize: 32,
    iterations,
    seed: 1,
    checkpointEvery: iterations,
    evalEvery: 0,
    evalTasks: 1,
    evalSteps: 0,
    continueAsNewEvery: 10_000,
  };
  const results: Record<string, unknown> = {
    benchmark: "orchestration overhead and worker scaling",
    command: `node --import tsx bench/orchestration.ts ${process.argv.slice(2).join(" ")}`.trim(),
    machine: machine(),
    store: storeKind,
    backend: "cpu",
    iterations,
    warmupIterations: WARMUP,
    note: "2 shared cores; worker processes, the Temporal dev server and the store all run on them. gpu workers run one shard at a time (METATRAIN_GPU_CONCURRENCY default 1).",
  };
  try {
    await Promise.all([pool.start("coordinator"), pool.start("gpu")]);

    if (!skip.has("overhead")) {
      const rows = [];
      for (const shardSize of shardSizes) {
        const config = { ...common, task: { family: "sinusoid" as const, shots: 1, queryShots: 1 }, shardSize, batchTasks: true };
        const shards = Math.ceil(32 / shardSize);
        const { seconds, events } = await run(config);
        const a = analyse(events, shards);
        const row = { shardSize, shards, wallSeconds: Number(seconds.toFixed(1)), ...a, overheadMsPerIteration: Number((a.msPerIteration - a.medianInActivityMsPerIteration).toFixed(1)) };
        log(`overhead shardSize ${shardSize}: ${JSON.stringify(row)}`);
        rows.push(row);
      }
      results.overhead = {
        case: "meta-batch 32 sinusoid tasks, 1 shot, 1 query point, 1 inner step, FOMAML, batched; 1 gpu worker",
        rows,
      };
    }

    if (!skip.has("scaling")) {
      const task = simulatedMs > 0 ? { family: "sinusoid" as const, shots: 1, queryShots: 1 } : { family: "sinusoid" as const, shots: 10, queryShots: 10 };
      const config: RunConfigInput = { ...common, task, shardSize: scalingShardSize, innerSteps: simulatedMs > 0 ? 1 : 5, batchTasks: false };
      const rows: { gpuWorkers: number; tasksPerSecond: number }[] = [];
      for (const n of workerCounts) {
        await pool.ensure("gpu", n);
        if (pool.alive("gpu").length !== n) throw new Error(`wanted ${n} gpu workers, have ${pool.alive("gpu").length}`);
        const { seconds, events } = await run(config);
        const a = analyse(events, Math.ceil(32 / scalingShardSize));
        const perTaskMs = a.medianInActivityMsPerIteration / 32;
        if (simulatedMs > 0 && perTaskMs < simulatedMs) {
          throw new Error(
            `shards took ${perTaskMs.toFixed(1)} ms per task in the activity, less than --simulated-task-ms ${simulatedMs}: ` +
              "the gpu worker does not honour METATRAIN_SIMULATED_TASK_MS",
          );
        }
        const tasksPerSecond = 32000 / a.msPerIteration;
        // Efficiency against perfect linear scaling from the first (smallest) worker count.
        const base = rows[0] as { gpuWorkers: number; tasksPerSecond: number } | undefined;
        const efficiency = base ? tasksPerSecond / ((base.tasksPerSecond * n) / base.gpuWorkers) : 1;
        const row = { gpuWorkers: n, wallSeconds: Number(seconds.toFixed(1)), ...a, tasksPerSecond: Number(tasksPerSecond.toFixed(1)), scalingEfficiency: Number(efficiency.toFixed(3)) };
        log(`scaling ${n} workers: ${JSON.stringify(row)}`);
        rows.push(row);
      }
      results.scaling = {
        case:
          simulatedMs > 0
            ? `meta-batch 32 in ${Math.ceil(32 / scalingShardSize)} shards of ${scalingShardSize}; each task sleeps ${simulatedMs} ms in the worker (METATRAIN_SIMULATED_TASK_MS)`
            : `meta-batch 32 in ${Math.ceil(32 / scalingShardSize)} shards of ${scalingShardSize}; sinusoid 10 shots, 5 inner steps, FOMAML, unbatched: real compute on the shared cores`,
        rows,
      };
    }
    const name = `orchestration-${storeKind}${simulatedMs > 0 ? `-sim${simulatedMs}` : ""}`;
    record(name, { ...results, baseConfig: common });
  } finally {
    await pool.stopAll();
    await connection.close().catch(() => undefined);
    await temporalServer.stop();
    await s3?.stop();
    if (fileDir) rmSync(fileDir, { recursive: true, force: true });
  }
}

await main();
