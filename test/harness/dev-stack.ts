// Test harness: `metatrain dev` (the embedded local stack a new user starts) as a child process on
// free loopback ports, ready when it says so, and the environment that points CLI children at it.
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { join } from "node:path";
import { findTemporal, freePort } from "./temporal.js";
import { REPO_ROOT, killChild, spawnTracked } from "./workers.js";

export const METATRAIN_BIN = join(REPO_ROOT, "bin", "metatrain.mjs");

/** Why the suite must skip (no Temporal CLI here), false to run; with CI set a missing CLI is an error. */
export function skipUnlessTemporalCli(): string | false {
  if (findTemporal() !== undefined) return false;
  const ci = process.env.CI;
  if (ci && ci !== "false" && ci !== "0") throw new Error("the Temporal CLI is not installed but CI is set: run `npm run setup:services` first");
  return "the Temporal CLI is not installed: run `npm run setup:services`";
}

/** This process's environment without anything that would point the CLI elsewhere. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || /^(TEMPORAL_|METATRAIN_|AWS_)/.test(k)) continue;
    env[k] = v;
  }
  env.TF_CPP_MIN_LOG_LEVEL = "2";
  return env;
}

export interface DevStack {
  child: ChildProcess;
  ports: { port: number; uiPort: number; metricsPort: number; sdkMetricsPort: number };
  /** Everything it printed so far. */
  output(): string;
  /** The environment for CLI children: clean, plus TEMPORAL_ADDRESS and METATRAIN_STORE of this stack. */
  env: Record<string, string>;
  storeUri: string;
  stop(): Promise<void>;
}

/**
 * Start `metatrain dev --dir <dir>/stack` and wait (up to 4 minutes) until it is ready. The Temporal
 * SDK metrics port is a free one in METATRAIN_TEMPORAL_METRICS_PORT, unless `temporalMetricsPortFlag`
 * is given: then it is passed as `--temporal-metrics-port` (e.g. "0") and the variable is unset.
 */
export async function startDevStack(dir: string, cwd = dir, o: { temporalMetricsPortFlag?: string } = {}): Promise<DevStack> {
  const ports = { port: await freePort(), uiPort: await freePort(), metricsPort: await freePort(), sdkMetricsPort: await freePort() };
  const base = cleanEnv();
  const flag = o.temporalMetricsPortFlag;
  const child = spawnTracked(
    process.execPath,
    [
      METATRAIN_BIN, "dev", "--dir", join(dir, "stack"), "--port", String(ports.port), "--ui-port", String(ports.uiPort), "--metrics-port", String(ports.metricsPort), "--quiet",
      ...(flag !== undefined ? ["--temporal-metrics-port", flag] : []),
    ],
    { cwd, env: { ...base, TEMPORAL_CLI_PATH: findTemporal()!, ...(flag === undefined ? { METATRAIN_TEMPORAL_METRICS_PORT: String(ports.sdkMetricsPort) } : {}) } },
  );
  let out = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
  const deadline = Date.now() + 4 * 60_000;
  while (!/local stack ready/.test(out)) {
    if (child.exitCode !== null) assert.fail(`metatrain dev exited (${child.exitCode}) before it was ready:\n${out}`);
    if (Date.now() > deadline) assert.fail(`metatrain dev was not ready within 4 minutes:\n${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  const storeUri = `file://${join(dir, "stack", "store")}`;
  return {
    child,
    ports,
    output: () => out,
    env: { ...base, TEMPORAL_ADDRESS: `127.0.0.1:${ports.port}`, METATRAIN_STORE: storeUri },
    storeUri,
    stop: async () => {
      if (child.exitCode === null) await killChild(child, "SIGINT", 60_000);
    },
  };
}
