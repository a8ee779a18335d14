// The one worker entry point and wiring place: store, backend, Temporal connection and Workers for role gpu, coordinator or all.
//
//   node --import tsx workers/main.ts --role gpu|coordinator|all
//
// Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT) or --help; 1 when a worker fails;
// 2 when the Temporal server cannot be reached; 3 for a configuration error (flags, environment),
// or a gpu worker the store refused at run time.
import { existsSync, readFileSync } from "node:fs";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel, type NativeConnectionOptions, type WorkerOptions } from "@temporalio/worker";
import { floorActivities } from "../activities/floor.js";
import { createActivities } from "../activities/index.js";
import { prefetchSinks, ResultPrefetch } from "../activities/prefetch.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { temporalEnv, TemporalEnvError, type TemporalEnv } from "../contracts/temporal-env.js";
import { describeBackend, selectBackend } from "../meta/backend.js";
import { isStoreError, openStore, type BlobStore } from "../storage/blobstore.js";
import { probeStore } from "../storage/probe.js";
import {
  instrumentStore,
  metricsHostFromEnv,
  metricsPortFromEnv,
  metricsSinks,
  startTelemetry,
  storeKindOf,
  temporalMetricsPortFromEnv,
  temporalRuntimeTelemetry,
  pickFreePort,
  type Telemetry,
} from "../telemetry/index.js";

export type Role = "gpu" | "coordinator" | "all";
const ROLES: readonly Role[] = ["gpu", "coordinator", "all"];

export const EXIT = { ok: 0, failed: 1, connection: 2, config: 3 } as const;

/**
 * Activities a coordinator runs at once (initRun, outerStep, writeCheckpoint, loadCheckpoint). An
 * outer step sums every shard of a round and is the heaviest of them; explicit, so that the
 * `metatrain_activity_slots` gauge and the "in flight vs slots" panel show the real limit.
 */
export const COORDINATOR_ACTIVITY_SLOTS = 8;

const USAGE = `usage: node --import tsx workers/main.ts [--role gpu|coordinator|all]

  --role            gpu: shard inner loops and evaluation on the "${TASK_QUEUES.gpu}" queue;
                    coordinator: workflows, initialisation, outer step and checkpoints on "${TASK_QUEUES.coordinator}";
                    all: both in one process. Default: env METATRAIN_ROLE, else all.
Environment:
  METATRAIN_STORE                  required: file:///abs/dir, file:./rel/dir or s3://bucket/prefix
  TEMPORAL_ADDRESS                 default 127.0.0.1:7233
  TEMPORAL_NAMESPACE               default "default"
  TEMPORAL_TLS_CERT_PATH, TEMPORAL_TLS_KEY_PATH   client certificate and key (mTLS)
  TEMPORAL_TLS_CA_PATH, TEMPORAL_TLS_SERVER_NAME  optional server CA and SNI override
  TEMPORAL_API_KEY                 API key (Temporal Cloud); turns TLS on
  METATRAIN_BACKEND                auto (default), tfjs-node-gpu, tfjs-node, wasm or cpu
  METATRAIN_GPU_CONCURRENCY        shard activities run at once per gpu worker, default 1
  METATRAIN_WORKFLOW_BUNDLE        prebuilt workflow bundle (bundleWorkflowCode); default: bundle workflows/index.ts at startup
  METATRAIN_SHUTDOWN_GRACE_SECONDS how long in-flight coordinator tasks (outer step, checkpoint) may finish after SIGTERM, default 25
  METATRAIN_GPU_SHUTDOWN_GRACE_SECONDS how long running shards may finish after SIGTERM, default 0: they are handed
                                   back at once (cancelled; Temporal retries them on another worker, same bytes)
  METATRAIN_LOG_LEVEL              Temporal SDK log level: TRACE, DEBUG, INFO (default), WARN, ERROR
  METATRAIN_METRICS_PORT           /metrics and /healthz (metatrain and Node.js metrics), default 9464; 0 picks a free port
  METATRAIN_TEMPORAL_METRICS_PORT  /metrics of the Temporal SDK's own metrics, default 9465; 0 picks a free port
  METATRAIN_METRICS_HOST           bind address of both metrics endpoints, default 0.0.0.0
  METATRAIN_WORKER_NAME            the worker label on every metric series, default the host name
  METATRAIN_STORE_PROBE_SECONDS    how long to retry the start-up store check while the store is unreachable, default 30
  METATRAIN_RESULT_PREFETCH_MB     coordinator: shard results read ahead for the outer step, at most this many MiB held, default 256; 0 turns it off
  METATRAIN_SIMULATED_TASK_MS      benchmarks only: each task takes this long, its real work included, default 0
See docs/observability.md for the metrics, the Grafana dashboard and the alerts.`;

/** A flag or environment variable that is missing or wrong; the message says what to set. */
export class WorkerConfigError extends Error {
  override readonly name = "WorkerConfigError";
}

/** Everything the worker reads from its flags and environment, validated. */
export interface WorkerConfig {
  role: Role;
  address: string;
  namespace: string;
  storeUri: string;
  tls: NativeConnectionOptions["tls"];
  apiKey: string | undefined;
  /** `off`, `mtls`, `api-key` or `api-key+mtls`, for the startup line. */
  security: string;
  gpuConcurrency: number;
  workflowBundlePath: string | undefined;
  shutdownGraceSeconds: number;
  gpuShutdownGraceSeconds: number;
  logLevel: LogLevel;
  /** METATRAIN_STORE_PROBE_SECONDS (default 30): retry window of the start-up store check. */
  storeProbeSeconds: number;
  /** Benchmarks only: METATRAIN_SIMULATED_TASK_MS, the time each task takes (its real work included), standing in for compute. */
  simulatedTaskMs: number;
  /** METATRAIN_RESULT_PREFETCH_MB (default 256; 0 off): the coordinator's read-ahead of shard results. */
  resultPrefetchMb: number;
  /** METATRAIN_METRICS_PORT (default 9464; 0 picks a free port). */
  metricsPort: number;
  /** METATRAIN_TEMPORAL_METRICS_PORT (default 9465). */
  temporalMetricsPort: number;
  /** METATRAIN_METRICS_HOST (default 0.0.0.0). */
  metricsHost: string;
  /** The `worker` label on every series: METATRAIN_WORKER_NAME, else the host name (the pod name on Kubernetes). */
  workerName: string;
}

type Env = Readonly<Record<string, string | undefined>>;

const nonEmpty = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

function positiveInt(env: Env, name: string, fallback: number, min: number): number {
  const raw = nonEmpty(env, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new WorkerConfigError(`${name}="${raw}" must be an integer ≥ ${min}`);
  return n;
}

/** Parse flags and environment. `--help` yields `undefined`. */
export function parseWorkerConfig(argv: readonly string[], env: Env): WorkerConfig | undefined {
  let roleFlag: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--help" || a === "-h") return undefined;
    if (a === "--role") {
      roleFlag = argv[++i];
      if (roleFlag === undefined) throw new WorkerConfigError("--role needs a value: gpu, coordinator or all");
    } else if (a.startsWith("--role=")) roleFlag = a.slice("--role=".length);
    else throw new WorkerConfigError(`unknown argument "${a}"; run with --help for usage`);
  }
  const role = roleFlag ?? nonEmpty(env, "METATRAIN_ROLE") ?? "all";
  if (!ROLES.includes(role as Role)) {
    throw new WorkerConfigError(`role "${role}" (from ${roleFlag !== undefined ? "--role" : "METATRAIN_ROLE"}) is not one of ${ROLES.join(", ")}`);
  }

  const storeUri = nonEmpty(env, "METATRAIN_STORE");
  if (storeUri === undefined) {
    throw new WorkerConfigError("METATRAIN_STORE is not set; set it to file:///abs/dir (one machine) or s3://bucket/prefix (a cluster), the same for every worker of a run");
  }

  let temporal: TemporalEnv;
  try {
    temporal = temporalEnv(env, (path) => readFileSync(path));
  } catch (e) {
    if (e instanceof TemporalEnvError) throw new WorkerConfigError(e.suggestion ? `${e.message}; ${e.suggestion}` : e.message);
    throw e;
  }
  const { tls, apiKey, security } = temporal;

  const workflowBundlePath = nonEmpty(env, "METATRAIN_WORKFLOW_BUNDLE");
  if (workflowBundlePath !== undefined && !existsSync(workflowBundlePath)) {
    throw new WorkerConfigError(`METATRAIN_WORKFLOW_BUNDLE=${workflowBundlePath} does not exist; build it with bundleWorkflowCode or unset it to bundle at startup`);
  }
  let metricsPort: number;
  let temporalMetricsPort: number;
  try {
    metricsPort = metricsPortFromEnv(env);
    temporalMetricsPort = temporalMetricsPortFromEnv(env);
  } catch (e) {
    if (e instanceof RangeError) throw new WorkerConfigError(e.message);
    throw e;
  }
  if (metricsPort !== 0 && metricsPort === temporalMetricsPort) {
    throw new WorkerConfigError(`METATRAIN_METRICS_PORT and METATRAIN_TEMPORAL_METRICS_PORT are both ${metricsPort}: the two endpoints need two ports`);
  }

  const logLevel = (nonEmpty(env, "METATRAIN_LOG_LEVEL") ?? "INFO").toUpperCase();
  if (!["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].includes(logLevel)) throw new WorkerConfigError(`METATRAIN_LOG_LEVEL="${logLevel}" must be TRACE, DEBUG, INFO, WARN or ERROR`);

  return {
    role: role as Role,
    address: temporal.address,
    namespace: temporal.namespace,
    storeUri,
    tls,
    apiKey,
    security,
    gpuConcurrency: positiveInt(env, "METATRAIN_GPU_CONCURRENCY", 1, 1),
    workflowBundlePath,
    shutdownGraceSeconds: positiveInt(env, "METATRAIN_SHUTDOWN_GRACE_SECONDS", 25, 0),
    gpuShutdownGraceSeconds: positiveInt(env, "METATRAIN_GPU_SHUTDOWN_GRACE_SECONDS", 0, 0),
    simulatedTaskMs: positiveInt(env, "METATRAIN_SIMULATED_TASK_MS", 0, 0),
    resultPrefetchMb: positiveInt(env, "METATRAIN_RESULT_PREFETCH_MB", 256, 0),
    storeProbeSeconds: positiveInt(env, "METATRAIN_STORE_PROBE_SECONDS", 30, 0),
    logLevel: logLevel as LogLevel,
    metricsPort,
    temporalMetricsPort,
    metricsHost: metricsHostFromEnv(env),
    workerName: nonEmpty(env, "METATRAIN_WORKER_NAME") ?? hostname(),
  };
}

const say = (line: string): void => console.log(`metatrain worker: ${line}`);
const fail = (line: string): void => console.error(`metatrain worker: ${line}`);
const firstLine = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split("\n")[0]!;

/** Activity log lines: `metatrain <msg> k=v …` (one line each, grep-friendly). */
function activityLog(msg: string, fields: Record<string, unknown> = {}): void {
  const kv = Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === "number" ? Number(v.toPrecision(6)) : String(v)}`);
  console.log(["metatrain", msg, ...kv].join(" "));
}

/** What SIGTERM does to the tasks in flight, as the drain line says it. */
function drainLine(cfg: WorkerConfig): string {
  const shards = cfg.gpuShutdownGraceSeconds === 0 ? "running shards are handed back at once" : `running shards get ${cfg.gpuShutdownGraceSeconds}s`;
  const coordinator = `coordinator tasks get ${cfg.shutdownGraceSeconds}s`;
  return cfg.role === "gpu" ? shards : cfg.role === "coordinator" ? coordinator : `${shards}, ${coordinator}`;
}

export async function main(argv: readonly string[], env: Env): Promise<number> {
  let cfg: WorkerConfig | undefined;
  try {
    cfg = parseWorkerConfig(argv, env);
  } catch (e) {
    if (!(e instanceof WorkerConfigError)) throw e;
    fail(e.message);
    return EXIT.config;
  }
  if (cfg === undefined) {
    console.log(USAGE);
    return EXIT.ok;
  }

  // SIGINT/SIGTERM: the Runtime's hook calls shutdown() on every running Worker (a graceful drain:
  // polling stops, in-flight tasks get shutdownGraceTime to finish), then run() resolves and we exit 0.
  // Our own listener covers the time before the Workers run, and forces exit on a second signal.
  // The Runtime also exports the Temporal SDK's own metrics (second endpoint, docs/observability.md);
  // it is installed once, before the first connection, and binds its port at once.
  const role = cfg.role;
  // 0: a free port picked here (the SDK binds the port it is given and cannot report one it picked); the ready line prints it.
  if (cfg.temporalMetricsPort === 0) cfg = { ...cfg, temporalMetricsPort: await pickFreePort(cfg.metricsHost) };
  try {
    Runtime.install({
      ...temporalRuntimeTelemetry(cfg.temporalMetricsPort, { host: cfg.metricsHost, globalTags: { role, worker: cfg.workerName } }),
      logger: new DefaultLogger(cfg.logLevel),
      shutdownSignals: ["SIGINT", "SIGTERM"],
    });
  } catch (e) {
    const inUse = /address already in use|os error 98|EADDRINUSE/i.test(firstLine(e));
    fail(
      inUse
        ? `Temporal SDK metrics port ${cfg.metricsHost}:${cfg.temporalMetricsPort} is in use: set METATRAIN_TEMPORAL_METRICS_PORT to a free port`
        : `cannot start the Temporal SDK metrics endpoint on ${cfg.metricsHost}:${cfg.temporalMetricsPort} (METATRAIN_TEMPORAL_METRICS_PORT, METATRAIN_METRICS_HOST): ${firstLine(e)}`,
    );
    return EXIT.config;
  }
  let running = false;
  let signals = 0;
  /** The store's refusal of a gpu activity, once seen (see onStoreAccessDenied below). */
  let storeDenied: Error | undefined;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      signals++;
      if (!running) {
        say(`${sig} before the workers started: exiting`);
        process.exit(EXIT.ok);
      } else if (signals === 1) say(`${sig}: draining (${drainLine(cfg)}); send it again to force exit`);
      else {
        fail(`${sig} again: exiting without waiting for in-flight tasks (they are retried elsewhere)`);
        process.exit(EXIT.failed);
      }
    });
  }

  let store: BlobStore;
  try {
    store = await openStore(cfg.storeUri, env);
  } catch (e) {
    if (!isStoreError(e)) throw e;
    fail(`METATRAIN_STORE: ${e.message}${e.suggestion ? `; ${e.suggestion}` : ""}`);
    return EXIT.config;
  }
  // A worker that cannot write and read its store would say ready and then fail every shard it
  // takes (a wrong secret: the whole run). It checks first, and refuses to start instead.
  try {
    await probeStore(store, { name: cfg.workerName, deadlineMs: cfg.storeProbeSeconds * 1000 });
  } catch (e) {
    const hint = isStoreError(e) && e.suggestion ? `; ${e.suggestion}` : "";
    fail(`METATRAIN_STORE ${store.describe()}: the store check (write, read back, delete a probe blob) failed: ${firstLine(e)}${hint}`);
    return isStoreError(e) && e.retryable ? EXIT.connection : EXIT.config;
  }

  // The backend is chosen once per process, before any activity runs.
  let backend: Awaited<ReturnType<typeof selectBackend>>;
  try {
    backend = await selectBackend("auto", env);
  } catch (e) {
    fail(firstLine(e));
    return EXIT.config;
  }
  say(describeBackend(backend));

  // /metrics and /healthz: healthy once the Workers poll. tf.memory() is read at scrape time (every
  // role holds tensors: the coordinator's outer step and its parameter cache too).
  let telemetry: Telemetry;
  try {
    telemetry = await startTelemetry({
      role,
      worker: cfg.workerName,
      env,
      port: cfg.metricsPort,
      host: cfg.metricsHost,
      tfMemory: () => tf.memory(),
      // Unhealthy once the store has refused this worker (it then stops taking work and exits 3).
      ready: () => running && storeDenied === undefined,
    });
  } catch (e) {
    fail(`cannot serve metrics: ${firstLine(e)}`);
    return EXIT.config;
  }
  telemetry.metrics.setBackend(backend.backend);
  const sdkMetricsHost = cfg.metricsHost === "0.0.0.0" || cfg.metricsHost === "::" ? "127.0.0.1" : cfg.metricsHost.includes(":") ? `[${cfg.metricsHost}]` : cfg.metricsHost;
  say(`metrics at ${telemetry.server.url}/metrics (healthz ${telemetry.server.url}/healthz), Temporal SDK metrics at http://${sdkMetricsHost}:${cfg.temporalMetricsPort}/metrics, worker=${cfg.workerName}`);

  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect({ address: cfg.address, tls: cfg.tls, ...(cfg.apiKey ? { apiKey: cfg.apiKey } : {}) });
  } catch (e) {
    fail(
      `cannot connect to Temporal at ${cfg.address} (namespace ${cfg.namespace}, tls ${cfg.security}): ${firstLine(e)}. ` +
        `Start a local server with "temporal server start-dev", or set TEMPORAL_ADDRESS (and the TLS or API-key variables) to your cluster.`,
    );
    await telemetry.close();
    return EXIT.connection;
  }
  say(`connected to Temporal at ${cfg.address} namespace=${cfg.namespace} tls=${cfg.security} store=${store.describe()}`);

  // Every get and put timed and counted by store kind (s3, fs).
  const timedStore = instrumentStore(store, telemetry.metrics, storeKindOf(cfg.storeUri));
  // A coordinator reads shard results ahead as the workflow reports them; its local outer step takes them.
  const prefetch = cfg.role === "gpu" || cfg.resultPrefetchMb === 0 ? undefined : new ResultPrefetch(timedStore, { maxBytes: cfg.resultPrefetchMb * 1024 * 1024 });
  const acts = createActivities({
    store: timedStore,
    ...(prefetch ? { prefetch } : {}),
    metrics: telemetry.metrics,
    log: activityLog,
    backendName: () => backend.backend,
    // Benchmarks only (bench/orchestration.ts): a fixed delay per task standing in for GPU compute.
    simulatedTaskMs: cfg.simulatedTaskMs,
    workerName: cfg.workerName,
    // A gpu worker the store refuses at run time (credentials revoked or rotated since its start-up
    // probe) is this worker's problem: its shards fail retryably and go to other workers, /healthz
    // turns 503, and the worker stops polling and exits 3 so its supervisor shows the fault.
    ...(cfg.role === "gpu"
      ? {
          onStoreAccessDenied: {
            worker: cfg.workerName,
            report: (e: Error) => {
              if (storeDenied) return;
              storeDenied = e;
              fail(`the store refused this worker: ${firstLine(e)}. Its shards are retried on other workers; this worker stops taking work and exits 3. Fix its store credentials and restart it.`);
              // After this attempt's failure is on its way: stop polling, hand running shards back.
              setTimeout(() => {
                for (const w of workers) if (w.getState() === "RUNNING") w.shutdown();
              }, 0);
            },
          },
        }
      : {}),
  });
  const common = { connection, namespace: cfg.namespace, shutdownGraceTime: `${cfg.shutdownGraceSeconds}s` } satisfies Partial<WorkerOptions>;
  const workers: Worker[] = [];
  const queues: string[] = [];
  /** Register a Worker's activities in flight against its slots (read at scrape time). */
  const watch = (worker: Worker, taskQueue: string, slots: number): void => {
    telemetry.metrics.watchWorker({ taskQueue, slots, inFlight: () => worker.getStatus().numInFlightActivities });
  };
  try {
    if (cfg.role !== "coordinator") {
      const gpu = await Worker.create({
        ...common,
        taskQueue: TASK_QUEUES.gpu,
        // noop: the orchestration floor benchmark's activity (workflows/floor.ts), harmless otherwise.
        activities: { runShard: acts.runShard, evaluate: acts.evaluate, ...floorActivities() },
        maxConcurrentActivityTaskExecutions: cfg.gpuConcurrency,
        // SIGTERM (scale-down, a node drain): a shard is recomputable from (seed, iteration, shard),
        // so by default it is cancelled at once and retried on another worker rather than holding
        // the pod (and the round) for up to a shard's length.
        shutdownGraceTime: `${cfg.gpuShutdownGraceSeconds}s`,
        // Beats reach the server at most every 2 s whatever the heartbeat timeout (the SDK's
        // default, 0.8 × the timeout, would leave a 5 s timeout one late beat from expiring).
        maxHeartbeatThrottleInterval: "2s",
      });
      workers.push(gpu);
      watch(gpu, TASK_QUEUES.gpu, cfg.gpuConcurrency);
      queues.push(TASK_QUEUES.gpu);
    }
    if (cfg.role !== "gpu") {
      let workflows: Pick<WorkerOptions, "workflowBundle" | "workflowsPath">;
      if (cfg.workflowBundlePath !== undefined) workflows = { workflowBundle: { codePath: cfg.workflowBundlePath } };
      else {
        // Beside this module: the TypeScript source, or dist/'s JavaScript when this runs compiled.
        const workflowsPath = fileURLToPath(new URL(`../workflows/index.${import.meta.url.endsWith(".ts") ? "ts" : "js"}`, import.meta.url));
        if (!existsSync(workflowsPath)) throw new WorkerConfigError(`the workflows module ${workflowsPath} is missing; set METATRAIN_WORKFLOW_BUNDLE to a prebuilt bundle`);
        workflows = { workflowsPath }; // bundled here, at startup
      }
      const coordinator = await Worker.create({
        ...common,
        ...workflows,
        taskQueue: TASK_QUEUES.coordinator,
        activities: { initRun: acts.initRun, outerStep: acts.outerStep, writeCheckpoint: acts.writeCheckpoint, loadCheckpoint: acts.loadCheckpoint, ...floorActivities() },
        maxConcurrentActivityTaskExecutions: COORDINATOR_ACTIVITY_SLOTS,
        // The workflow reports run progress, evaluations and state through these (not on replay).
        sinks: { ...metricsSinks(telemetry.metrics), ...prefetchSinks(prefetch) },
      });
      workers.push(coordinator);
      watch(coordinator, TASK_QUEUES.coordinator, COORDINATOR_ACTIVITY_SLOTS);
      queues.push(TASK_QUEUES.coordinator);
    }
  } catch (e) {
    fail(`cannot start the ${cfg.role} worker: ${firstLine(e)}`);
    // Workers created but never run hold no tasks: nothing to drain; the process exits next.
    await connection.close().catch(() => {});
    await telemetry.close();
    return e instanceof WorkerConfigError ? EXIT.config : EXIT.failed;
  }

  const runs = workers.map((w) => w.run());
  running = true;
  // run() moves each Worker to RUNNING and subscribes its pollers synchronously.
  console.log(`worker ready role=${cfg.role} queues=${queues.join(",")}`);
  const results = await Promise.allSettled(
    runs.map((r) =>
      r.catch((e: unknown) => {
        // One worker failing takes the others down too (in role all), gracefully.
        for (const w of workers) if (w.getState() === "RUNNING") w.shutdown();
        throw e;
      }),
    ),
  );
  await connection.close().catch(() => {});
  await telemetry.close();
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    fail(`worker failed: ${firstLine(failed.reason)}`);
    return EXIT.failed;
  }
  if (storeDenied) {
    fail(`stopped: the store refused this worker (${firstLine(storeDenied)})`);
    return EXIT.config;
  }
  say("stopped");
  return EXIT.ok;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main(process.argv.slice(2), process.env).then(
    (code) => process.exit(code),
    (e: unknown) => {
      fail(`unexpected error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      process.exit(EXIT.failed);
    },
  );
}
