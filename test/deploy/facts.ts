// Readers for the deploy drift test: facts from the code (with the fallbacks of expected.ts while a
// source is missing) and small parsers for Dockerfiles and compose durations.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { CODE, FALLBACK } from "./expected.js";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));

/** A fact and where it came from (`code: <file>` or `fallback: test/deploy/expected.ts`). */
export interface Fact<T> {
  value: T;
  source: string;
}

const fallback = <T>(value: T, missing: string): Fact<T> => ({ value, source: `fallback in test/deploy/expected.ts (${missing} missing)` });

async function importIfExists(rel: string): Promise<Record<string, unknown> | undefined> {
  const path = join(ROOT, rel);
  if (!existsSync(path)) return undefined;
  return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
}

function filesUnder(rel: string): string[] {
  const path = join(ROOT, rel);
  if (!existsSync(path)) return [];
  if (statSync(path).isFile()) return [path];
  return readdirSync(path, { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
    .map((f) => join(path, f));
}

/** `tsconfig.json` outDir: where `x.ts` compiles to. */
export function outDir(): string {
  const tsconfig = JSON.parse(readFileSync(join(ROOT, "tsconfig.json"), "utf8")) as { compilerOptions?: { outDir?: string } };
  return (tsconfig.compilerOptions?.outDir ?? ".").replace(/^\.\//, "").replace(/\/$/, "");
}

/** The path `node` runs for a TypeScript entry point after `tsc`: `workers/main.ts` → `dist/workers/main.js`. */
export const compiledPath = (tsPath: string): string => `${outDir()}/${tsPath.replace(/\.ts$/, ".js")}`;

export const exists = (rel: string): boolean => existsSync(join(ROOT, rel));

export async function metricsPorts(): Promise<Fact<{ metrics: number; temporal: number }>> {
  const mod = await importIfExists("telemetry/server.ts");
  if (mod && typeof mod.DEFAULT_METRICS_PORT === "number" && typeof mod.DEFAULT_TEMPORAL_METRICS_PORT === "number") {
    return { value: { metrics: mod.DEFAULT_METRICS_PORT, temporal: mod.DEFAULT_TEMPORAL_METRICS_PORT }, source: "code: telemetry/server.ts" };
  }
  return fallback({ metrics: FALLBACK.metricsPort, temporal: FALLBACK.temporalMetricsPort }, "telemetry/server.ts (or its DEFAULT_*_PORT exports)");
}

export async function taskQueues(): Promise<Fact<{ gpu: string; coordinator: string }>> {
  const mod = await importIfExists("contracts/queues.ts");
  const q = mod?.TASK_QUEUES as { gpu?: string; coordinator?: string } | undefined;
  if (!q?.gpu || !q.coordinator) throw new Error("contracts/queues.ts must export TASK_QUEUES { gpu, coordinator }");
  return { value: { gpu: q.gpu, coordinator: q.coordinator }, source: "code: contracts/queues.ts" };
}

export async function timeoutDefaults(): Promise<Fact<{ shard: number; coordinator: number }>> {
  const mod = await importIfExists("contracts/config.ts");
  const schema = mod?.TimeoutsSchema as { parse(v: unknown): { shardStartToCloseSeconds: number; coordinatorStartToCloseSeconds: number } } | undefined;
  if (schema) {
    const t = schema.parse({});
    return { value: { shard: t.shardStartToCloseSeconds, coordinator: t.coordinatorStartToCloseSeconds }, source: "code: contracts/config.ts TimeoutsSchema" };
  }
  return fallback({ shard: FALLBACK.shardStartToCloseSeconds, coordinator: FALLBACK.coordinatorStartToCloseSeconds }, "contracts/config.ts");
}

/** Worker roles: the `ROLES` array of workers/main.ts. */
export function roles(): Fact<string[]> {
  const path = join(ROOT, CODE.workerEntry);
  if (!existsSync(path)) return fallback([...FALLBACK.roles], CODE.workerEntry);
  const m = /\bROLES\b[^=]*=\s*\[([^\]]*)\]/.exec(readFileSync(path, "utf8"));
  if (!m) throw new Error(`${CODE.workerEntry} no longer declares ROLES = [...]: update test/deploy/facts.ts roles()`);
  return { value: [...m[1]!.matchAll(/["']([a-z-]+)["']/g)].map((x) => x[1]!), source: `code: ${CODE.workerEntry}` };
}

/** Presets `metatrain submit --preset` accepts (the learners' registry), when that file exists. */
export async function presetNames(): Promise<Fact<string[]> | undefined> {
  const mod = await importIfExists("meta/algorithms/registry.ts");
  const presets = mod?.PRESETS as { name: string }[] | undefined;
  return presets ? { value: presets.map((p) => p.name), source: "code: meta/algorithms/registry.ts" } : undefined;
}

/**
 * Environment variable names the code reads: string literals and `env.X` / `process.env.X` of
 * METATRAIN_*, TEMPORAL_* and AWS_* names in CODE.envSources.
 */
export function envReadByCode(): Fact<Set<string>> {
  const files = CODE.envSources.flatMap(filesUnder);
  if (!existsSync(join(ROOT, CODE.workerEntry))) {
    return fallback(new Set<string>(FALLBACK.env), CODE.workerEntry);
  }
  const names = new Set<string>();
  const re = /(?:["'`]|\benv\??\.)((?:METATRAIN|TEMPORAL|AWS)_[A-Z0-9_]+)/g;
  for (const f of files) for (const m of readFileSync(f, "utf8").matchAll(re)) names.add(m[1]!);
  return { value: names, source: `code: ${files.length} files under ${CODE.envSources.join(", ")}` };
}

// ---- Dockerfiles ---------------------------------------------------------------------------------

export interface DockerStage {
  from: string;
  name: string | undefined;
  instructions: { op: string; args: string }[];
}

/** Split a Dockerfile into stages of instructions (continuations joined, comments dropped). */
export function parseDockerfile(text: string): DockerStage[] {
  const logical: string[] = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (/^\s*#/.test(line) && cur === "") continue;
    if (/^\s*#/.test(line)) continue; // comment inside a continuation
    if (line.endsWith("\\")) {
      cur += line.slice(0, -1) + " ";
      continue;
    }
    cur += line;
    if (cur.trim() !== "") logical.push(cur.trim());
    cur = "";
  }
  const stages: DockerStage[] = [];
  for (const l of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(l);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const args = m[2]!.trim();
    if (op === "FROM") {
      const fm = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(args)!;
      stages.push({ from: fm[1]!, name: fm[2], instructions: [] });
    } else if (stages.length > 0) stages.at(-1)!.instructions.push({ op, args });
  }
  return stages;
}

/** `ENV a=b c="d e"` pairs of a stage, in order. */
export function stageEnv(stage: DockerStage): Map<string, string> {
  const env = new Map<string, string>();
  for (const i of stage.instructions.filter((x) => x.op === "ENV")) {
    for (const m of i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g)) env.set(m[1]!, m[3] ?? m[2]!);
  }
  return env;
}

/** The JSON (exec) form of ENTRYPOINT / CMD / HEALTHCHECK CMD in a stage (last one wins). */
export function execForm(stage: DockerStage, op: "ENTRYPOINT" | "CMD"): string[] | undefined {
  const last = stage.instructions.filter((x) => x.op === op).at(-1);
  return last ? (JSON.parse(last.args) as string[]) : undefined;
}

/** Compose durations ("1900s", "1m30s", "660s") in seconds. */
export function composeDurationSeconds(d: string | number): number {
  if (typeof d === "number") return d / 1e9; // compose config --format json writes nanoseconds
  let total = 0;
  for (const m of d.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/g)) {
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3600 : m[2] === "m" ? n * 60 : m[2] === "s" ? n : m[2] === "ms" ? n / 1e3 : m[2] === "us" ? n / 1e6 : n / 1e9;
  }
  return total;
}
