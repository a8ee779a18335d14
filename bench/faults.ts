// Wall time a run loses to one fault of each kind: a fixed config run undisturbed and with one
// fault at a fixed iteration, on real services (Temporal dev server on a db file, rclone S3 behind
// a Toxiproxy proxy, worker processes), the loss being the faulted run's wall time less the
// undisturbed median.
//
//   node --import tsx bench/faults.ts [--repeats 3] [--iterations 30] [--fault-at 10]
//     [--heartbeat-seconds N] [--outage-seconds 60] [--faults gpu-kill,coordinator-kill,temporal-restart,s3-outage] [--tag T]
//
// Faults, each at iteration --fault-at:
// - gpu-kill: SIGKILL of a gpu worker while it runs a shard (one of two); a new one starts at once,
//   as a pod restart. The shard is retried once its heartbeat timeout passes: --heartbeat-seconds
//   (default: the run-config schema's timeouts.heartbeatSeconds), so that a shorter timeout or a
//   faster failover can be measured by running this again.
// - coordinator-kill: SIGKILL of the only coordinator; a new one starts at once (it bundles the
//   workflows first).
// - temporal-restart: SIGKILL of the Temporal server, restarted at once on its db file.
// - s3-outage: the proxy between every worker and S3 disabled for --outage-seconds.
// Each repeat runs the undisturbed case and then each fault, in that order.
import { Client, Connection } from "@temporalio/client";
import { arg, log, machine, median, numArg, record } from "./common.js";
import { parseRunConfig, type RunConfigInput } from "../meta/run-config.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { metaTrainingWorkflow } from "../workflows/meta-training.js";
import { SMALL_SINUSOID, runResult, waitForShardOnWorker, waitRunProgress } from "../test/helpers/runs.js";
import { startS3Server } from "../test/harness/s3-server.js";
import { startTemporalServer } from "../test/harness/temporal.js";
import { startToxiproxy } from "../test/harness/toxiproxy.js";
import { WorkerPool, workerEnv } from "../test/harness/workers.js";

const FAULT_KINDS = ["gpu-kill", "coordinator-kill", "temporal-restart", "s3-outage"] as const;
type FaultKind = (typeof FAULT_KINDS)[number];

const repeats = numArg("repeats", 3);
const iterations = numArg("iterations", 30);
const faultAt = numArg("fault-at", 10);
const heartbeatArg = arg("heartbeat-seconds", "");
const outageSeconds = numArg("outage-seconds", 60);
/** Suffix of the result file (e.g. `after`: results/faults-after.json), so a rerun keeps the earlier record. */
const tag = arg("tag", "");
const faults = arg("faults", FAULT_KINDS.join(",")).split(",") as FaultKind[];
for (const f of faults) if (!FAULT_KINDS.includes(f)) throw new Error(`--faults: unknown fault "${f}"; expected some of ${FAULT_KINDS.join(", ")}`);

/**
 * The orchestration tests' small sinusoid MAML with shards of about a third of a second (2 shards
 * of 4 second-order tasks, 20 shots, 10 inner steps), so that a kill lands inside one; every
 * timeout is the schema default but the heartbeat's when --heartbeat-seconds is given.
 */
const CONFIG: RunConfigInput = {
  ...SMALL_SINUSOID,
  task: { family: "sinusoid", shots: 20, queryShots: 20 },
  innerSteps: 10,
  metaBatchSize: 8,
  shardSize: 4,
  batchTasks: false,
  iterations,
  seed: 5,
  evalEvery: 0,
  timeouts: heartbeatArg !== "" ? { heartbeatSeconds: Number(heartbeatArg) } : {},
};
const heartbeatSeconds = parseRunConfig(CONFIG).timeouts.heartbeatSeconds;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const r1 = (x: number): number => Number(x.toFixed(1));

async function main(): Promise<void> {
  const [s3, temporal, toxiproxy] = await Promise.all([startS3Server(), startTemporalServer(), startToxiproxy()]);
  const proxy = await toxiproxy.createProxy("s3", new URL(s3.endpoint).host);
  const pool = new WorkerPool(() => workerEnv(temporal, `s3://${s3.bucket}/bench-faults`, { ...s3.env(), AWS_ENDPOINT_URL_S3: `http://${proxy.listen}` }));
  const connection = await Connection.connect({ address: temporal.address });
  const client = new Client({ connection, namespace: temporal.namespace });
  let n = 0;

  /** Apply `fault` once the run reaches iteration `faultAt`; returns how long the fault itself took to apply (restarts included). */
  async function inject(runId: string, fault: FaultKind): Promise<number> {
    await waitRunProgress(client, runId, (p) => p.iteration >= faultAt, `iteration ${faultAt}`);
    const t0 = performance.now();
    if (fault === "gpu-kill") {
      const victim = pool.alive("gpu")[0]!;
      await waitForShardOnWorker(client, runId, victim.pid);
      await victim.kill("SIGKILL");
      await pool.start("gpu");
    } else if (fault === "coordinator-kill") {
      for (const c of pool.alive("coordinator")) await c.kill("SIGKILL");
      await pool.start("coordinator");
    } else if (fault === "temporal-restart") {
      await temporal.kill();
      await temporal.restart();
    } else {
      await proxy.setEnabled(false);
      await sleep(outageSeconds * 1000);
      await proxy.setEnabled(true);
    }
    return (performance.now() - t0) / 1000;
  }

  /** One run to the end, with `fault` injected (or none); wall seconds from start to result. */
  async function run(fault: FaultKind | "none"): Promise<{ seconds: number; applySeconds?: number }> {
    const runId = `faults-${fault}-${++n}`;
    const t0 = performance.now();
    await client.workflow.start(metaTrainingWorkflow, { taskQueue: TASK_QUEUES.coordinator, workflowId: runId, args: [{ runId, config: CONFIG }] });
    const applySeconds = fault === "none" ? undefined : await inject(runId, fault);
    const r = await runResult(client, runId, 15 * 60_000);
    if (r.iteration !== iterations) throw new Error(`${runId} ended at iteration ${r.iteration}`);
    return { seconds: (performance.now() - t0) / 1000, applySeconds };
  }

  const series: Record<string, { seconds: number; applySeconds?: number }[]> = { none: [] };
  for (const f of faults) series[f] = [];
  try {
    await Promise.all([pool.start("coordinator"), pool.start("gpu"), pool.start("gpu")]);
    await run("none"); // warm-up: caches, JIT, the server's first workflow
    for (let r = 0; r < repeats; r++) {
      for (const kind of ["none", ...faults] as const) {
        const x = await run(kind);
        series[kind]!.push(x);
        log(`repeat ${r + 1}: ${kind}: ${x.seconds.toFixed(1)} s${x.applySeconds !== undefined ? ` (fault applied in ${x.applySeconds.toFixed(1)} s)` : ""}`);
      }
    }
    const base = median(series.none!.map((x) => x.seconds));
    const rows = faults.map((kind) => {
      const xs = series[kind]!;
      return {
        fault: kind,
        medianSeconds: r1(median(xs.map((x) => x.seconds))),
        medianLostSeconds: r1(median(xs.map((x) => x.seconds - base))),
        lostSeconds: xs.map((x) => r1(x.seconds - base)),
        applySeconds: xs.map((x) => r1(x.applySeconds ?? NaN)),
      };
    });
    record(`faults${heartbeatArg !== "" ? `-heartbeat-${heartbeatArg}s` : ""}${tag ? `-${tag}` : ""}`, {
      benchmark: "wall time lost per fault kind",
      command: `node --import tsx bench/faults.ts ${process.argv.slice(2).join(" ")}`.trim(),
      machine: machine(),
      config: parseRunConfig(CONFIG),
      heartbeatSeconds,
      faultAtIteration: faultAt,
      outageSeconds,
      repeats,
      undisturbedSeconds: series.none!.map((x) => r1(x.seconds)),
      undisturbedMedianSeconds: r1(base),
      rows,
      note: "2 shared cores: Temporal dev server (SQLite file), rclone S3, toxiproxy, 1 coordinator and 2 gpu worker processes. Loss = faulted run's wall time − undisturbed median; applySeconds = how long the fault itself took (a kill plus the replacement's start, a restart, the outage).",
    });
  } finally {
    await pool.stopAll();
    await connection.close().catch(() => undefined);
    await toxiproxy.stop();
    await temporal.stop();
    await s3.stop();
  }
}

await main();
