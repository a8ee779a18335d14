// Test harness: worker processes (`node --import tsx workers/main.ts --role R`) started, awaited
// until they print `worker ready`, killed on demand, and always killed when the test process ends.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { dirname, isAbsolute, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository root (this file is test/harness/workers.ts). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

// ---- every child a harness starts, killed when the test process ends -----------------------------

const live = new Set<ChildProcess>();
let cleanupInstalled = false;

function killHard(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  try {
    // Children run in their own process group (detached), so this also reaches anything they spawned.
    process.kill(-child.pid, "SIGKILL");
  } catch {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** SIGKILL every child still running (synchronous: safe in an `exit` handler). */
export function killAllChildren(): void {
  for (const c of live) killHard(c);
  live.clear();
}

function installCleanup(): void {
  if (cleanupInstalled) return;
  cleanupInstalled = true;
  // `exit` covers normal ends and uncaught errors; the signals cover a test runner that stops us.
  process.once("exit", killAllChildren);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      killAllChildren();
      process.kill(process.pid, sig); // handlers are `once`: this time the default action ends us
    });
  }
}

/** Spawn a child in its own process group, registered for cleanup at exit. */
export function spawnTracked(command: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): ChildProcess {
  installCleanup();
  const child = spawn(command, args, { cwd: opts.cwd ?? REPO_ROOT, env: opts.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** Resolves when the child has exited (at once if it already has). */
export function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((res) => child.once("exit", (code, signal) => res({ code, signal })));
}

/** Send `signal` and wait for the exit; after `graceMs` a SIGKILL follows. */
export async function killChild(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = exitOf(child);
  try {
    child.kill(signal);
  } catch {
    // already gone
  }
  const timer = signal === "SIGKILL" ? undefined : setTimeout(() => killHard(child), graceMs);
  await exited;
  if (timer) clearTimeout(timer);
}

// ---- worker processes ----------------------------------------------------------------------------

export type WorkerRole = "gpu" | "coordinator" | "all";

/** Options of `startWorker`. */
export interface StartWorkerOptions {
  role: WorkerRole;
  /**
   * Environment on top of this process's: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, METATRAIN_STORE,
   * METATRAIN_BACKEND and the AWS_* variables of the store. Unless given here, the harness sets
   * METATRAIN_METRICS_PORT and METATRAIN_TEMPORAL_METRICS_PORT to free ports (so that several
   * workers run side by side), METATRAIN_METRICS_HOST to 127.0.0.1 and METATRAIN_WORKER_NAME to `name`.
   */
  env: Record<string, string>;
  /** Name in logs and errors. Default `<role>-<n>`. */
  name?: string;
  /** How long to wait for `worker ready`, ms. Default 180000 (a coordinator bundles workflows first). */
  readyTimeoutMs?: number;
  /**
   * Entry script, relative to the repository root. Default $METATRAIN_WORKER_ENTRY, else
   * `workers/main.ts` (the variable lets the same tests run against another worker build).
   */
  entry?: string;
}

/** A running worker process. */
export interface WorkerProcess {
  readonly name: string;
  readonly role: WorkerRole;
  readonly pid: number;
  /** Port of its /metrics and /healthz (METATRAIN_METRICS_PORT). */
  readonly metricsPort: number;
  /** Port of its Temporal SDK /metrics (METATRAIN_TEMPORAL_METRICS_PORT). */
  readonly temporalMetricsPort: number;
  /** Everything it printed so far (stdout and stderr, interleaved as received). */
  log(): string;
  /** Whether the process is still running. */
  alive(): boolean;
  /** Resolves at exit. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Send a signal and wait for the exit (SIGKILL after 10 s for other signals). Default SIGTERM. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Wait until the log matches `pattern`; rejects with the log on timeout or exit. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
}

/** Ready line the worker prints once its pollers run. */
export const WORKER_READY = /worker ready/;

let counter = 0;

/** A free TCP port on 127.0.0.1 (bound by the OS, then released). */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((res, rej) => srv.once("error", rej).listen(0, "127.0.0.1", () => res()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((res) => srv.close(() => res()));
  return port;
}

/** Exit code of workers/main.ts for a configuration error (a metrics port taken is one). */
const EXIT_CONFIG = 3;

/**
 * Start a worker process and wait until it prints `worker ready`; rejects with its log if it does not.
 * A metrics port picked here and taken by someone else before the worker bound it is picked again.
 */
export async function startWorker(opts: StartWorkerOptions): Promise<WorkerProcess> {
  const name = opts.name ?? `${opts.role}-${++counter}`;
  const portsGiven = opts.env.METATRAIN_METRICS_PORT !== undefined || opts.env.METATRAIN_TEMPORAL_METRICS_PORT !== undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await startWorkerOnce(opts, name);
    } catch (e) {
      const raced = e instanceof PortRaceError && !portsGiven && attempt < 3;
      if (!raced) throw e;
    }
  }
}

class PortRaceError extends Error {}

async function startWorkerOnce(opts: StartWorkerOptions, name: string): Promise<WorkerProcess> {
  const entry = opts.entry ?? process.env.METATRAIN_WORKER_ENTRY ?? "workers/main.ts";
  const script = isAbsolute(entry) ? entry : join(REPO_ROOT, entry);
  const metricsPort = opts.env.METATRAIN_METRICS_PORT ?? String(await freePort());
  let temporalMetricsPort = opts.env.METATRAIN_TEMPORAL_METRICS_PORT ?? String(await freePort());
  while (temporalMetricsPort === metricsPort) temporalMetricsPort = String(await freePort());
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    METATRAIN_METRICS_HOST: "127.0.0.1",
    METATRAIN_WORKER_NAME: name,
    ...opts.env,
    METATRAIN_METRICS_PORT: metricsPort,
    METATRAIN_TEMPORAL_METRICS_PORT: temporalMetricsPort,
  };
  const child = spawnTracked(process.execPath, ["--import", "tsx", script, "--role", opts.role], { env });
  let text = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    text += chunk.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on("data", onData);
  child.stderr!.on("data", onData);
  const exited = exitOf(child);
  void exited.then(() => {
    for (const l of listeners) l();
  });

  const waitForLog = (pattern: RegExp, timeoutMs = 60_000): Promise<RegExpMatchArray> =>
    new Promise((res, rej) => {
      const check = (): void => {
        const m = pattern.exec(text);
        if (m) return done(() => res(m));
        if (child.exitCode !== null || child.signalCode !== null) {
          return done(() => rej(new Error(`worker ${name} exited (code ${child.exitCode}, signal ${child.signalCode}) before printing ${pattern}; its log:\n${text}`)));
        }
      };
      const timer = setTimeout(() => done(() => rej(new Error(`worker ${name} did not print ${pattern} within ${timeoutMs} ms; its log:\n${text}`))), timeoutMs);
      const done = (f: () => void): void => {
        clearTimeout(timer);
        listeners.delete(check);
        f();
      };
      listeners.add(check);
      check();
    });

  const worker: WorkerProcess = {
    name,
    role: opts.role,
    pid: child.pid ?? -1,
    metricsPort: Number(metricsPort),
    temporalMetricsPort: Number(temporalMetricsPort),
    log: () => text,
    alive: () => child.exitCode === null && child.signalCode === null,
    exited,
    kill: (signal = "SIGTERM") => killChild(child, signal),
    waitForLog,
  };
  try {
    await waitForLog(WORKER_READY, opts.readyTimeoutMs ?? 180_000);
  } catch (e) {
    await killChild(child, "SIGKILL");
    if (child.exitCode === EXIT_CONFIG && /port .* is in use/.test(text)) throw new PortRaceError(`worker ${name}: a metrics port was taken meanwhile:\n${text}`);
    throw e;
  }
  return worker;
}

/**
 * A worker's environment on the test services: the Temporal server's address and namespace, the
 * store `storeUri` with `storeEnv` (the AWS_* variables of an S3 store), the pure-JS `cpu` backend.
 */
export function workerEnv(temporal: { address: string; namespace: string }, storeUri: string, storeEnv: Record<string, string> = {}): Record<string, string> {
  return {
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: temporal.namespace,
    METATRAIN_STORE: storeUri,
    METATRAIN_BACKEND: "cpu",
    ...storeEnv,
  };
}

/** A set of workers started together and stopped together (`stopAll` in an `after` hook). */
export class WorkerPool {
  readonly workers: WorkerProcess[] = [];

  constructor(private readonly env: () => Record<string, string>) {}

  /** Start one worker with the pool's environment (plus `extraEnv`). */
  async start(role: WorkerRole, extra: Omit<StartWorkerOptions, "role" | "env"> & { extraEnv?: Record<string, string> } = {}): Promise<WorkerProcess> {
    const { extraEnv, ...rest } = extra;
    const w = await startWorker({ ...rest, role, env: { ...this.env(), ...extraEnv } });
    this.workers.push(w);
    return w;
  }

  /** Live workers, optionally of one role. */
  alive(role?: WorkerRole): WorkerProcess[] {
    return this.workers.filter((w) => w.alive() && (role === undefined || w.role === role));
  }

  /** Start workers of `role` until `n` are alive (replacing killed ones). */
  async ensure(role: WorkerRole, n: number): Promise<void> {
    const missing = n - this.alive(role).length;
    await Promise.all(Array.from({ length: Math.max(0, missing) }, () => this.start(role)));
  }

  /** Every worker's log, headed by its name and pid (for failure messages). */
  logs(): string {
    return this.workers.map((w) => `===== ${w.name} (pid ${w.pid}${w.alive() ? "" : ", exited"}) =====\n${w.log()}`).join("\n");
  }

  /** Stop every worker (SIGTERM, SIGKILL after 10 s). */
  async stopAll(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await Promise.all(this.workers.map((w) => w.kill(signal)));
  }
}
