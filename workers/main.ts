// The one worker entry point and wiring place: store, backend, Temporal connection and Workers for role gpu, coordinator or all.
//
//   node --import tsx workers/main.ts --role gpu|coordinator|all
//
// Exit codes: 0 after a graceful shutdown (SIGTERM/SIGINT) or --help; 1 when a worker fails;
// 2 when the Temporal server cannot be reached; 3 for a configuration error (flags, environment).
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { DefaultLogger, NativeConnection, Runtime, Worker, type LogLevel, type NativeConnectionOptions, type WorkerOptions } from "@temporalio/worker";
import { createActivities } from "../activities/index.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import { describeBackend, selectBackend } from "../meta/backend.js";
import { isStoreError, openStore } from "../storage/blobstore.js";

export type Role = "gpu" | "coordinator" | "all";
const ROLES: readonly Role[] = ["gpu", "coordinator", "all"];

export const EXIT = { ok: 0, failed: 1, connection: 2, config: 3 } as const;

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
  METATRAIN_SHUTDOWN_GRACE_SECONDS how long in-flight activities may finish after SIGTERM before they are cancelled, default 25
  METATRAIN_LOG_LEVEL              Temporal SDK log level: TRACE, DEBUG, INFO (default), WARN, ERROR
  METATRAIN_SIMULATED_TASK_MS      benchmarks only: sleep this long per task after its real work, default 0`;

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
  logLevel: LogLevel;
  /** Benchmarks only: METATRAIN_SIMULATED_TASK_MS, a fixed delay per task standing in for compute. */
  simulatedTaskMs: number;
}

type Env = Readonly<Record<string, string | undefined>>;

const nonEmpty = (env: Env, name: string): string | undefined => {
  const v = env[name]?.trim();
  return v ? v : undefined;
};

function readPem(path: string, variable: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new WorkerConfigError(`${variable}=${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); point it at a PEM file`);
  }
}

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

  const cert = nonEmpty(env, "TEMPORAL_TLS_CERT_PATH");
  const key = nonEmpty(env, "TEMPORAL_TLS_KEY_PATH");
  if ((cert === undefined) !== (key === undefined)) {
    throw new WorkerConfigError(`set both TEMPORAL_TLS_CERT_PATH and TEMPORAL_TLS_KEY_PATH for mTLS, or neither (only ${cert ? "the certificate" : "the key"} is set)`);
  }
  const apiKey = nonEmpty(env, "TEMPORAL_API_KEY");
  const ca = nonEmpty(env, "TEMPORAL_TLS_CA_PATH");
  const serverName = nonEmpty(env, "TEMPORAL_TLS_SERVER_NAME");
  const wantsTls = cert !== undefined || apiKey !== undefined || ca !== undefined || serverName !== undefined;
  const tls: NativeConnectionOptions["tls"] = wantsTls
    ? {
        ...(cert && key ? { clientCertPair: { crt: readPem(cert, "TEMPORAL_TLS_CERT_PATH"), key: readPem(key, "TEMPORAL_TLS_KEY_PATH") } } : {}),
        ...(ca ? { serverRootCACertificate: readPem(ca, "TEMPORAL_TLS_CA_PATH") } : {}),
        ...(serverName ? { serverNameOverride: serverName } : {}),
      }
    : undefined;
  const security = [apiKey ? "api-key" : "", cert ? "mtls" : "", !apiKey && !cert && wantsTls ? "tls" : ""].filter(Boolean).join("+") || "off";

  const workflowBundlePath = nonEmpty(env, "METATRAIN_WORKFLOW_BUNDLE");
  if (workflowBundlePath !== undefined && !existsSync(workflowBundlePath)) {
    throw new WorkerConfigError(`METATRAIN_WORKFLOW_BUNDLE=${workflowBundlePath} does not exist; build it with bundleWorkflowCode or unset it to bundle at startup`);
  }
  const logLevel = (nonEmpty(env, "METATRAIN_LOG_LEVEL") ?? "INFO").toUpperCase();
  if (!["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].includes(logLevel)) throw new WorkerConfigError(`METATRAIN_LOG_LEVEL="${logLevel}" must be TRACE, DEBUG, INFO, WARN or ERROR`);

  return {
    role: role as Role,
    address: nonEmpty(env, "TEMPORAL_ADDRESS") ?? "127.0.0.1:7233",
    namespace: nonEmpty(env, "TEMPORAL_NAMESPACE") ?? "default",
    storeUri,
    tls,
    apiKey,
    security,
    gpuConcurrency: positiveInt(env, "METATRAIN_GPU_CONCURRENCY", 1, 1),
    workflowBundlePath,
    shutdownGraceSeconds: positiveInt(env, "METATRAIN_SHUTDOWN_GRACE_SECONDS", 25, 0),
    simulatedTaskMs: positiveInt(env, "METATRAIN_SIMULATED_TASK_MS", 0, 0),
    logLevel: logLevel as LogLevel,
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
  Runtime.install({ logger: new DefaultLogger(cfg.logLevel), shutdownSignals: ["SIGINT", "SIGTERM"] });
  let running = false;
  let signals = 0;
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      signals++;
      if (!running) {
        say(`${sig} before the workers started: exiting`);
        process.exit(EXIT.ok);
      } else if (signals === 1) say(`${sig}: draining (in-flight tasks get ${cfg.shutdownGraceSeconds}s); send it again to force exit`);
      else {
        fail(`${sig} again: exiting without waiting for in-flight tasks (they are retried elsewhere)`);
        process.exit(EXIT.failed);
      }
    });
  }

  let store: Awaited<ReturnType<typeof openStore>>;
  try {
    store = await openStore(cfg.storeUri, env);
  } catch (e) {
    if (!isStoreError(e)) throw e;
    fail(`METATRAIN_STORE: ${e.message}${e.suggestion ? `; ${e.suggestion}` : ""}`);
    return EXIT.config;
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

  let connection: NativeConnection;
  try {
    connection = await NativeConnection.connect({ address: cfg.address, tls: cfg.tls, ...(cfg.apiKey ? { apiKey: cfg.apiKey } : {}) });
  } catch (e) {
    fail(
      `cannot connect to Temporal at ${cfg.address} (namespace ${cfg.namespace}, tls ${cfg.security}): ${firstLine(e)}. ` +
        `Start a local server with "temporal server start-dev", or set TEMPORAL_ADDRESS (and the TLS or API-key variables) to your cluster.`,
    );
    return EXIT.connection;
  }
  say(`connected to Temporal at ${cfg.address} namespace=${cfg.namespace} tls=${cfg.security} store=${store.describe()}`);

  const acts = createActivities({
    store,
    log: activityLog,
    backendName: () => backend.backend,
    // Benchmarks only (bench/orchestration.ts): a fixed delay per task standing in for GPU compute.
    simulatedTaskMs: cfg.simulatedTaskMs,
  });
  const common = { connection, namespace: cfg.namespace, shutdownGraceTime: `${cfg.shutdownGraceSeconds}s` } satisfies Partial<WorkerOptions>;
  const workers: Worker[] = [];
  const queues: string[] = [];
  try {
    if (cfg.role !== "coordinator") {
      workers.push(
        await Worker.create({
          ...common,
          taskQueue: TASK_QUEUES.gpu,
          activities: { runShard: acts.runShard, evaluate: acts.evaluate },
          maxConcurrentActivityTaskExecutions: cfg.gpuConcurrency,
        }),
      );
      queues.push(TASK_QUEUES.gpu);
    }
    if (cfg.role !== "gpu") {
      let workflows: Pick<WorkerOptions, "workflowBundle" | "workflowsPath">;
      if (cfg.workflowBundlePath !== undefined) workflows = { workflowBundle: { codePath: cfg.workflowBundlePath } };
      else {
        const workflowsPath = fileURLToPath(new URL("../workflows/index.ts", import.meta.url));
        if (!existsSync(workflowsPath)) throw new WorkerConfigError(`the workflows module ${workflowsPath} is missing; set METATRAIN_WORKFLOW_BUNDLE to a prebuilt bundle`);
        workflows = { workflowsPath }; // bundled here, at startup
      }
      workers.push(
        await Worker.create({
          ...common,
          ...workflows,
          taskQueue: TASK_QUEUES.coordinator,
          activities: { initRun: acts.initRun, outerStep: acts.outerStep, writeCheckpoint: acts.writeCheckpoint, loadCheckpoint: acts.loadCheckpoint },
        }),
      );
      queues.push(TASK_QUEUES.coordinator);
    }
  } catch (e) {
    fail(`cannot start the ${cfg.role} worker: ${firstLine(e)}`);
    // Workers created but never run hold no tasks: nothing to drain; the process exits next.
    await connection.close().catch(() => {});
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
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) {
    fail(`worker failed: ${firstLine(failed.reason)}`);
    return EXIT.failed;
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
