// Orchestration cost of the meta-training workflow on real services (Temporal dev server, rclone S3
// or a file store, worker processes), side by side with Temporal's own floor, read off each run's
// history timestamps.
//
//   node --import tsx bench/orchestration.ts [--store s3|file] [--sections overhead,compute,scaling,scale]
//     [--iterations 12] [--repeats 3] [--shards 1,4,32] [--gpu-slots 4]
//     [--scaling-slots 1,2,4,8,16] [--scaling-processes 1] [--scale-shards 5000] [--scale-iterations 1000]
//     [--temporal-db file|memory] [--temporal-dynamic k=v,…] [--compare-prefetch] [--floor-local-step]
//
// The floor is workflows/floor.ts: N no-op activities fanned out on the gpu queue and awaited, round
// after round, on the same server and workers — what any Temporal workflow of this shape pays.
//
// 1. overhead: meta-batch 32 of near-zero-compute sinusoid tasks (1 shot, 1 inner step, FOMAML,
//    batched) in 1, 4 and 32 shards, one gpu worker process with --gpu-slots activity slots. For each
//    shard count, in turn within each repeat: the floor, the workflow with the outer step as an
//    ordinary activity (localOuterStep false) and as a local activity (the default). Steady-state ms
//    per iteration = median gap between consecutive rounds' first shard scheduled.
// 2. compute: the same at 4 shards with 1 s of simulated compute per shard
//    (METATRAIN_SIMULATED_TASK_MS): the share of the iteration that is not compute.
// 3. scaling: 200 ms of simulated compute per task, meta-batch 32 in 16 shards of 2, one gpu
//    process with 1, 2, 4, 8, 16 activity slots (the machine has 2 cores: concurrency slots, not
//    processes; the compute is a sleep, so slots scale as processes would; --scaling-processes P
//    splits the slots over P processes instead). Efficiency T1 / (n·Tn),
//    for the workflow and for the floor with the same 400 ms no-ops.
// 4. scale: one round of --scale-shards shards, and a run of --scale-iterations iterations
//    (continue-as-new every 100): history events and bytes per execution, executions, dispatch rate.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client, Connection } from "@temporalio/client";
import proto from "@temporalio/proto";
import { arg, log, machine, median, numArg, record, temporalDynamicArg } from "./common.js";
import type { RunConfigInput } from "../meta/run-config.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { metaTrainingWorkflow } from "../workflows/meta-training.js";
import { orchestrationFloorWorkflow } from "../workflows/floor.js";
import { startS3Server, type S3TestServer } from "../test/harness/s3-server.js";
import { startTemporalServer } from "../test/harness/temporal.js";
import { WorkerPool } from "../test/harness/workers.js";

const { temporal } = proto;
type HistoryEvent = proto.temporal.api.history.v1.IHistoryEvent;

const storeKind = arg("store", "s3");
/** The dev server's state: "file" (SQLite on disk, as `metatrain dev`) or "memory". */
const temporalDb = arg("temporal-db", "file") as "file" | "memory";
/** Dynamic config of the dev server, `--temporal-dynamic key=value,…` (added to the harness's own). */
const temporalDynamic = temporalDynamicArg();
const sections = new Set(arg("sections", "overhead,compute,scaling,scale").split(","));
const iterations = numArg("iterations", 12);
const repeats = numArg("repeats", 3);
const shardCounts = arg("shards", "1,4,32").split(",").map(Number);
const gpuSlots = numArg("gpu-slots", 4);
/** gpu worker processes in the overhead and compute sections (slots are per process). */
const gpuProcesses = numArg("gpu-processes", 1);
const scalingSlots = arg("scaling-slots", "1,2,4,8,16").split(",").map(Number);
/** gpu worker processes in the scaling section: N slots are split evenly over min(N, this) processes. */
const scalingProcesses = numArg("scaling-processes", 1);
const scaleShards = numArg("scale-shards", 5000);
const scaleIterations = numArg("scale-iterations", 1000);
/** Also run the local outer step on a coordinator without result read-ahead (METATRAIN_RESULT_PREFETCH_MB=0), in the same repeats. */
const comparePrefetch = process.argv.includes("--compare-prefetch");
/** Also run the floor with a local no-op activity after each round (Temporal's cost of a local outer step), in the same repeats. */
const floorLocalStep = process.argv.includes("--floor-local-step");
/** Rounds left out at the start (cold caches, JIT). */
const WARMUP = 2;
const META_BATCH = 32;

const ms = (t: { seconds?: unknown; nanos?: number | null } | null | undefined): number => Number(t?.seconds ?? 0) * 1000 + (t?.nanos ?? 0) / 1e6;
const r1 = (x: number): number => Number(x.toFixed(1));

/**
 * Rounds of one execution's history: activities of `type` in scheduling order, `perRound` a round.
 * msPerRound: median gap between consecutive rounds' first scheduling (steady state, after WARMUP);
 * fanOut: first scheduled → last completed within a round; between: last completed → next round.
 */
function rounds(events: HistoryEvent[], type: string, perRound: number, floorActivityMs = 0) {
  type Act = { scheduledAt: number; startedAt: number; completedAt: number; ownMs: number };
  const acts: Act[] = [];
  const byId = new Map<string, Act>();
  const startedAt = new Map<string, number>();
  /** Workflow tasks: [started, completed] times, in order. */
  const wfts: [number, number][] = [];
  let wftStarted = NaN;
  for (const e of events) {
    const at = ms(e.eventTime);
    if (e.activityTaskScheduledEventAttributes?.activityType?.name === type) {
      const a = { scheduledAt: at, startedAt: NaN, completedAt: NaN, ownMs: floorActivityMs };
      byId.set(String(e.eventId), a);
      acts.push(a);
    } else if (e.activityTaskStartedEventAttributes) {
      startedAt.set(String(e.eventId), at);
    } else if (e.activityTaskCompletedEventAttributes) {
      const c = e.activityTaskCompletedEventAttributes;
      const a = byId.get(String(c.scheduledEventId));
      if (a) {
        a.completedAt = at;
        a.startedAt = startedAt.get(String(c.startedEventId)) ?? NaN;
        a.ownMs = ownMsOf(c.result?.payloads?.[0]?.data) ?? a.ownMs;
      }
    } else if (e.workflowTaskStartedEventAttributes) {
      wftStarted = at;
    } else if (e.workflowTaskCompletedEventAttributes) {
      wfts.push([wftStarted, at]);
    }
  }
  const starts: number[] = [];
  const fanOut: number[] = [];
  const ends: number[] = [];
  /** Per round, the longest time a shard spent on its own work (as it reports it: compute and store). */
  const own: number[] = [];
  for (let i = 0; i + perRound <= acts.length; i += perRound) {
    const g = acts.slice(i, i + perRound);
    starts.push(Math.min(...g.map((a) => a.scheduledAt)));
    ends.push(Math.max(...g.map((a) => a.completedAt)));
    fanOut.push(ends.at(-1)! - starts.at(-1)!);
    own.push(Math.max(...g.map((a) => a.ownMs)));
  }
  const gaps = starts.slice(WARMUP + 1).map((s, i) => s - starts[WARMUP + i]!);
  const between = starts.slice(WARMUP + 1).map((s, i) => s - ends[WARMUP + i]!);
  // Between rounds, split at the workflow task that schedules the next round: the wait for it to
  // start (the server's dispatch to the coordinator) and its run (the workflow's code, and the
  // outer step when that is a local activity).
  const wftOf = (next: number) => wfts.find(([, done]) => done >= next - 0.5);
  const steady = acts.filter((_, i) => Math.floor(i / perRound) >= WARMUP);
  return {
    rounds: starts.length,
    msPerRound: r1(median(gaps)),
    fanOutMs: r1(median(fanOut.slice(WARMUP))),
    betweenRoundsMs: r1(median(between)),
    /** Per activity: scheduled → started (dispatch to the worker), started → completed (its run). */
    dispatchMs: r1(median(steady.map((a) => a.startedAt - a.scheduledAt))),
    runMs: r1(median(steady.map((a) => a.completedAt - a.startedAt))),
    /** Between rounds: last completion → the scheduling workflow task's start, and that task's run. */
    betweenWaitMs: r1(median(starts.slice(WARMUP + 1).map((s, i) => (wftOf(s)?.[0] ?? NaN) - ends[WARMUP + i]!))),
    betweenTaskMs: r1(median(starts.slice(WARMUP + 1).map((s) => { const w = wftOf(s); return w ? w[1] - w[0] : NaN; }))),
    /** A round's longest shard, as that shard timed itself (its inner loops, store reads and write); the floor's: its sleep. */
    shardOwnMs: r1(median(own.slice(WARMUP))),
    /** Median over rounds of the gap less the longest shard's own time: what the round spends outside the shards' work. */
    outsideShardsMs: r1(median(gaps.map((g, i) => g - own[WARMUP + i]!))),
    /** The first round's fan-out (the only one in a one-round run). */
    firstFanOutMs: r1(fanOut[0] ?? NaN),
  };
}

/** A runShard result's own duration (`seconds`, RunShardOutput), ms; undefined for other payloads. */
function ownMsOf(data: Uint8Array | null | undefined): number | undefined {
  if (!data) return undefined;
  try {
    const out = JSON.parse(new TextDecoder().decode(data)) as { seconds?: unknown };
    return typeof out.seconds === "number" ? out.seconds * 1000 : undefined;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  let s3: S3TestServer | undefined;
  let fileDir: string | undefined;
  const temporalServer = await startTemporalServer({ persistence: temporalDb, dynamicConfig: temporalDynamic });
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
  }));
  const connection = await Connection.connect({ address: temporalServer.address });
  const client = new Client({ connection, namespace: temporalServer.namespace });
  let n = 0;

  async function gpuWorkers(slots: number, simulatedTaskMs = 0, processes = 1): Promise<void> {
    await Promise.all(pool.alive("gpu").map((w) => w.kill()));
    const env = { METATRAIN_GPU_CONCURRENCY: String(slots), ...(simulatedTaskMs > 0 ? { METATRAIN_SIMULATED_TASK_MS: String(simulatedTaskMs) } : {}) };
    await Promise.all(Array.from({ length: processes }, () => pool.start("gpu", { extraEnv: env })));
  }

  /** Every execution of a workflow id (continue-as-new chains), oldest first, with its history. */
  async function executions(workflowId: string): Promise<{ events: HistoryEvent[]; bytes: number }[]> {
    const runs: string[] = [];
    for await (const w of client.workflow.list({ query: `WorkflowId = "${workflowId}"` })) runs.push(w.runId);
    const out = [];
    for (const runId of runs.reverse()) {
      const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
      out.push({ events: history.events ?? [], bytes: temporal.api.history.v1.History.encode(history as never).finish().length });
    }
    return out;
  }

  async function floor(shards: number, rounds_: number, activityMs = 0, continueAsNewEvery?: number, localStep = false) {
    const id = `floor-${++n}`;
    const t0 = performance.now();
    await client.workflow.execute(orchestrationFloorWorkflow, {
      taskQueue: TASK_QUEUES.coordinator,
      workflowId: id,
      args: [{ rounds: rounds_, shards, activityMs, ...(continueAsNewEvery ? { continueAsNewEvery } : {}), ...(localStep ? { localStep } : {}) }],
    });
    return { id, seconds: (performance.now() - t0) / 1000 };
  }

  async function training(config: RunConfigInput) {
    const id = `run-${++n}`;
    const t0 = performance.now();
    await client.workflow.execute(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: id, args: [{ runId: id, config }] });
    return { id, seconds: (performance.now() - t0) / 1000 };
  }

  const base = (shards: number, extra: Partial<RunConfigInput> = {}): RunConfigInput => ({
    algorithm: "fomaml",
    model: { kind: "sinusoid-mlp" },
    task: { family: "sinusoid", shots: 1, queryShots: 1 },
    innerSteps: 1,
    innerLr: 0.01,
    metaLr: 0.001,
    metaBatchSize: META_BATCH,
    shardSize: META_BATCH / shards,
    batchTasks: true,
    iterations,
    seed: 1,
    checkpointEvery: 10_000,
    evalEvery: 0,
    evalTasks: 1,
    evalSteps: 0,
    continueAsNewEvery: 10_000,
    ...extra,
  });

  /** Replace the coordinator process (its environment plus `extraEnv`). */
  async function coordinator(extraEnv: Record<string, string> = {}): Promise<void> {
    await Promise.all(pool.alive("coordinator").map((w) => w.kill()));
    await pool.start("coordinator", { extraEnv });
  }

  /** The rounds of one training run on a coordinator without result read-ahead (then the default coordinator again). */
  async function withoutReadAhead(config: RunConfigInput, shards: number): Promise<ReturnType<typeof rounds>> {
    await coordinator({ METATRAIN_RESULT_PREFETCH_MB: "0" });
    try {
      return rounds((await executions((await training(config)).id))[0]!.events, "runShard", shards);
    } finally {
      await coordinator();
    }
  }

  /** The floor, the outer step as an activity, and as a local activity: `repeats` times, interleaved. */
  async function sideBySide(shards: number, label: string, extra: Partial<RunConfigInput>, floorMs: number) {
    type Variant = "floor" | "floorLocalStep" | "activity" | "local" | "localNoPrefetch";
    const series: Record<Variant, ReturnType<typeof rounds>[]> = { floor: [], floorLocalStep: [], activity: [], local: [], localNoPrefetch: [] };
    for (let r = 0; r < repeats; r++) {
      const f = await floor(shards, iterations, floorMs);
      series.floor.push(rounds((await executions(f.id))[0]!.events, "noop", shards, floorMs));
      if (floorLocalStep) {
        const fl = await floor(shards, iterations, floorMs, undefined, true);
        series.floorLocalStep.push(rounds((await executions(fl.id))[0]!.events, "noop", shards, floorMs));
      }
      for (const [name, local] of [["activity", false], ["local", true]] as const) {
        const t = await training(base(shards, { ...extra, localOuterStep: local }));
        series[name].push(rounds((await executions(t.id))[0]!.events, "runShard", shards));
      }
      if (comparePrefetch) series.localNoPrefetch.push(await withoutReadAhead(base(shards, { ...extra, localOuterStep: true }), shards));
      log(
        `${label} shards ${shards} repeat ${r + 1}: floor ${series.floor.at(-1)!.msPerRound} · activity ${series.activity.at(-1)!.msPerRound} · local ${series.local.at(-1)!.msPerRound}` +
          (comparePrefetch ? ` · local without read-ahead ${series.localNoPrefetch.at(-1)!.msPerRound}` : "") +
          (floorLocalStep ? ` · floor with a local step ${series.floorLocalStep.at(-1)!.msPerRound}` : "") +
          " ms/round",
      );
    }
    const med = (k: keyof typeof series, f: keyof ReturnType<typeof rounds>) => r1(median(series[k].map((x) => x[f] as number)));
    const row = {
      shards,
      shardSize: META_BATCH / shards,
      floorMsPerRound: med("floor", "msPerRound"),
      activityOuterStepMsPerIteration: med("activity", "msPerRound"),
      localOuterStepMsPerIteration: med("local", "msPerRound"),
      activityRatioToFloor: 0,
      localRatioToFloor: 0,
      floorBetweenRoundsMs: med("floor", "betweenRoundsMs"),
      activityBetweenRoundsMs: med("activity", "betweenRoundsMs"),
      localBetweenRoundsMs: med("local", "betweenRoundsMs"),
      localFanOutMs: med("local", "fanOutMs"),
      /** Where the rounds' time goes (medians): per activity dispatch and run; between rounds, the wait and the workflow task. */
      ...(comparePrefetch ? { localNoPrefetchMsPerIteration: med("localNoPrefetch", "msPerRound"), localNoPrefetchBetweenRoundsMs: med("localNoPrefetch", "betweenRoundsMs") } : {}),
      ...(floorLocalStep ? { floorLocalStepMsPerRound: med("floorLocalStep", "msPerRound"), floorLocalStepBetweenRoundsMs: med("floorLocalStep", "betweenRoundsMs") } : {}),
      breakdown: Object.fromEntries(
        (["floor", ...(floorLocalStep ? (["floorLocalStep"] as const) : []), "activity", "local", ...(comparePrefetch ? (["localNoPrefetch"] as const) : [])] as const).map((k) => [
          k,
          { fanOutMs: med(k, "fanOutMs"), dispatchMs: med(k, "dispatchMs"), runMs: med(k, "runMs"), betweenMs: med(k, "betweenRoundsMs"), betweenWaitMs: med(k, "betweenWaitMs"), betweenTaskMs: med(k, "betweenTaskMs"), shardOwnMs: med(k, "shardOwnMs"), outsideShardsMs: med(k, "outsideShardsMs") },
        ]),
      ),
      repeats: series.floor.map((_, i) => ({ floor: series.floor[i]!.msPerRound, activity: series.activity[i]!.msPerRound, local: series.local[i]!.msPerRound, ...(comparePrefetch ? { localNoPrefetch: series.localNoPrefetch[i]!.msPerRound } : {}) })),
    };
    row.activityRatioToFloor = Number((row.activityOuterStepMsPerIteration / row.floorMsPerRound).toFixed(2));
    row.localRatioToFloor = Number((row.localOuterStepMsPerIteration / row.floorMsPerRound).toFixed(2));
    log(`${label}: ${JSON.stringify({ ...row, repeats: undefined })}`);
    return row;
  }

  const results: Record<string, unknown> = {
    benchmark: "orchestration cost beside Temporal's own floor",
    command: `node --import tsx bench/orchestration.ts ${process.argv.slice(2).join(" ")}`.trim(),
    machine: machine(),
    store: storeKind,
    temporalDb,
    backend: "cpu",
    iterations,
    repeats,
    warmupRounds: WARMUP,
    note: "2 shared cores: the Temporal dev server (in-memory), the store, one coordinator and one gpu worker process all run on them. Medians over repeats; floor and workflow interleaved within each repeat.",
  };
  try {
    await coordinator();

    if (sections.has("overhead")) {
      await gpuWorkers(gpuSlots, 0, gpuProcesses);
      const rows = [];
      for (const shards of shardCounts) rows.push(await sideBySide(shards, "overhead", {}, 0));
      results.overhead = { case: `meta-batch ${META_BATCH} sinusoid tasks (1 shot, 1 query, 1 inner step, FOMAML, batched); ${gpuProcesses} gpu process(es) with ${gpuSlots} slots each`, rows };
    }

    if (sections.has("compute")) {
      const shards = 4;
      await gpuWorkers(gpuSlots, 1000 / (META_BATCH / shards), gpuProcesses);
      const row = await sideBySide(shards, "compute", { batchTasks: false }, 1000);
      const share = (x: number) => Number(((x - 1000) / x).toFixed(3));
      results.compute = {
        case: `meta-batch ${META_BATCH} in ${shards} shards, 1 s of simulated compute per shard (METATRAIN_SIMULATED_TASK_MS ${1000 / (META_BATCH / shards)}); floor no-ops sleep 1 s`,
        ...row,
        orchestrationShareFloor: share(row.floorMsPerRound),
        orchestrationShareActivity: share(row.activityOuterStepMsPerIteration),
        orchestrationShareLocal: share(row.localOuterStepMsPerIteration),
        // The same iteration split at the shards' own timing: outside them (Temporal's dispatch, the
        // workflow, the outer step) and, inside the longest one, what is not the simulated 1 s (its
        // real inner loops, the store read and write, timer overshoot).
        outsideShardsShareFloor: Number((row.breakdown.floor!.outsideShardsMs / row.floorMsPerRound).toFixed(3)),
        outsideShardsShareLocal: Number((row.breakdown.local!.outsideShardsMs / row.localOuterStepMsPerIteration).toFixed(3)),
        shardOwnBeyondComputeMsLocal: r1(row.breakdown.local!.shardOwnMs - 1000),
      };
    }

    if (sections.has("scaling")) {
      const shards = 16;
      const taskMs = 200;
      const rows = [];
      for (const slots of scalingSlots) {
        const processes = Math.min(slots, scalingProcesses);
        if (slots % processes !== 0) throw new Error(`--scaling-slots ${slots} does not split evenly over ${processes} processes`);
        await gpuWorkers(slots / processes, taskMs, processes);
        const f = await floor(shards, Math.max(WARMUP + 3, Math.round(iterations / 2)), taskMs * (META_BATCH / shards));
        const floorRounds = rounds((await executions(f.id))[0]!.events, "noop", shards);
        const config = base(shards, { batchTasks: false, iterations: Math.max(WARMUP + 3, Math.round(iterations / 2)) });
        const t = await training(config);
        const runRounds = rounds((await executions(t.id))[0]!.events, "runShard", shards);
        const noPrefetch = comparePrefetch ? await withoutReadAhead(config, shards) : undefined;
        rows.push({
          slots,
          processes,
          floorMsPerRound: floorRounds.msPerRound,
          msPerIteration: runRounds.msPerRound,
          betweenRoundsMs: runRounds.betweenRoundsMs,
          ...(noPrefetch ? { noPrefetchMsPerIteration: noPrefetch.msPerRound, noPrefetchBetweenRoundsMs: noPrefetch.betweenRoundsMs } : {}),
          efficiency: 0,
          floorEfficiency: 0,
          ...(noPrefetch ? { noPrefetchEfficiency: 0 } : {}),
        });
        log(`scaling ${slots} slots in ${processes} process(es): floor ${floorRounds.msPerRound} · workflow ${runRounds.msPerRound}${noPrefetch ? ` · without read-ahead ${noPrefetch.msPerRound}` : ""} ms/round`);
      }
      for (const row of rows) {
        row.efficiency = Number((rows[0]!.msPerIteration / (row.slots / rows[0]!.slots) / row.msPerIteration).toFixed(3));
        row.floorEfficiency = Number((rows[0]!.floorMsPerRound / (row.slots / rows[0]!.slots) / row.floorMsPerRound).toFixed(3));
        if (row.noPrefetchEfficiency !== undefined) row.noPrefetchEfficiency = Number((rows[0]!.noPrefetchMsPerIteration! / (row.slots / rows[0]!.slots) / row.noPrefetchMsPerIteration!).toFixed(3));
      }
      results.scaling = {
        case: `meta-batch ${META_BATCH} in ${shards} shards of ${META_BATCH / shards}, ${taskMs} ms of simulated compute per task (a sleep); N activity slots split over min(N, ${scalingProcesses}) gpu processes; floor: ${shards} no-ops of ${taskMs * (META_BATCH / shards)} ms`,
        ideal16MsPerRound: taskMs * (META_BATCH / shards),
        rows,
      };
    }

    if (sections.has("scale")) {
      await gpuWorkers(16);
      const wide = await training(base(1, { metaBatchSize: scaleShards, shardSize: 1, iterations: 1, batchTasks: false }));
      const wideExec = (await executions(wide.id))[0]!;
      const wideRound = rounds(wideExec.events, "runShard", scaleShards);
      const wideFloor = await floor(scaleShards, 1);
      const wideFloorRound = rounds((await executions(wideFloor.id))[0]!.events, "noop", scaleShards);
      const long = await training(base(1, { iterations: scaleIterations, continueAsNewEvery: 100 }));
      const chain = await executions(long.id);
      results.scale = {
        wideRound: {
          case: `one iteration of ${scaleShards} shards of 1 sinusoid task (real compute, tiny), gpu process with 16 slots`,
          seconds: r1(wide.seconds),
          historyEvents: wideExec.events.length,
          historyBytes: wideExec.bytes,
          fanOutMs: wideRound.firstFanOutMs,
          shardsThroughPerSecond: r1(scaleShards / (wideRound.firstFanOutMs / 1000)),
          floorFanOutMs: wideFloorRound.firstFanOutMs,
          floorNoopsThroughPerSecond: r1(scaleShards / (wideFloorRound.firstFanOutMs / 1000)),
          limits: "Temporal: 51,200 events and 50 MB per history (warnings at 10,240 events / 10 MB); 2,000 pending activities per execution",
        },
        longRun: {
          case: `${scaleIterations} iterations of 1 shard, near-zero compute, continueAsNewEvery 100`,
          seconds: r1(long.seconds),
          executions: chain.length,
          maxHistoryEvents: Math.max(...chain.map((c) => c.events.length)),
          maxHistoryBytes: Math.max(...chain.map((c) => c.bytes)),
          msPerIteration: r1((long.seconds * 1000) / scaleIterations),
        },
      };
      log(`scale: ${JSON.stringify(results.scale)}`);
    }
    record(`orchestration-${storeKind}${temporalDb === "memory" ? "-memdb" : ""}${sections.size < 4 ? `-${[...sections].join("-")}` : ""}${scalingProcesses > 1 ? `-${scalingProcesses}proc` : ""}`, results);
  } finally {
    await pool.stopAll();
    await connection.close().catch(() => undefined);
    await temporalServer.stop();
    await s3?.stop();
    if (fileDir) rmSync(fileDir, { recursive: true, force: true });
  }
}

await main();
