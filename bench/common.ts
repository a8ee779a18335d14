// Shared benchmark plumbing: backend from the command line or environment, machine description,
// medians, progress lines and a JSON record of every result under bench/results/.
import { mkdirSync, writeFileSync } from "node:fs";
import type * as tf from "@tensorflow/tfjs";
import { cpus, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { selectBackend, describeBackend, type BackendChoice, type BackendPreference } from "../meta/backend.js";

export const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), "results");

/** `--name value` or `--name=value` from argv, else the default. */
export function arg(name: string, def: string): string {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === `--${name}`) return argv[i + 1] ?? def;
    if (a.startsWith(`--${name}=`)) return a.slice(name.length + 3);
  }
  return def;
}
export const numArg = (name: string, def: number): number => Number(arg(name, String(def)));

/** `--temporal-dynamic key=value,key=value`: dev-server dynamic config (values as JSON: numbers, booleans, "strings"). */
export function temporalDynamicArg(): Record<string, string | number | boolean> {
  return Object.fromEntries(
    arg("temporal-dynamic", "")
      .split(",")
      .filter(Boolean)
      .map((kv) => {
        const eq = kv.indexOf("=");
        if (eq <= 0) throw new Error(`--temporal-dynamic expects key=value, got '${kv}'`);
        return [kv.slice(0, eq), JSON.parse(kv.slice(eq + 1)) as string | number | boolean];
      }),
  );
}

export async function setupBackend(): Promise<BackendChoice> {
  const choice = await selectBackend(arg("backend", "auto") as BackendPreference, process.env);
  log(describeBackend(choice));
  return choice;
}

export function machine(): Record<string, string | number> {
  const c = cpus();
  return {
    cpu: c[0]?.model ?? "unknown",
    cores: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function log(msg: string): void {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

/** Write one result record as bench/results/<name>.json and echo it. */
export function record(name: string, data: unknown): void {
  mkdirSync(RESULTS_DIR, { recursive: true });
  const file = join(RESULTS_DIR, `${name}.json`);
  writeFileSync(file, JSON.stringify(data, null, 2) + "\n");
  log(`wrote ${file}`);
  console.log(JSON.stringify(data, null, 2));
}

/** µs a call of `f` (an op and what it returns, disposed), over `n` calls after 10 to warm up; waits for the first result's values each call. */
export function opMicros(f: () => tf.Tensor[], n = 100): number {
  for (let i = 0; i < 10; i++) disposeAll(f());
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = f();
    r[0]!.dataSync();
    disposeAll(r);
  }
  return ((performance.now() - t0) / n) * 1000;
}
const disposeAll = (ts: tf.Tensor[]) => ts.forEach((t) => t.dispose());
