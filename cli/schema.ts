// The run-config schema read back at run time: each settable key's type, allowed values and default,
// for error messages ("allowed: an integer from 1 to 1000") and the README's configuration reference.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { z } from "zod";
import { RunConfigSchema, parseRunConfig } from "../contracts/config.js";

/** One settable key of the run config. */
export interface ConfigKeyDoc {
  /** Dotted key as `--set` takes it, e.g. `task.shots`. */
  key: string;
  /** The task family it applies to, for keys whose meaning or range depends on it. */
  family?: "sinusoid" | "omniglot";
  /** Allowed values in words: `integer 1–1000`, `number > 0`, `maml \| fomaml \| reptile`, `boolean`. */
  allowed: string;
  /** Default as JSON text, or `—` when the key is optional without a default. */
  default: string;
  /** What it means (from the JSDoc in contracts/config.ts, else a short fallback). */
  meaning: string;
}

// zod 4 internals we read: def.type, def.innerType, def.checks, minValue/maxValue, options.
type AnyZod = z.ZodType & { def: Record<string, unknown>; minValue?: number | null; maxValue?: number | null; isInt?: boolean; options?: unknown[] };

function unwrap(s: AnyZod): AnyZod {
  let cur = s;
  for (let i = 0; i < 10; i++) {
    const t = cur.def.type as string;
    if (t === "default" || t === "optional" || t === "nullable" || t === "prefault") cur = cur.def.innerType as AnyZod;
    else break;
  }
  return cur;
}

const fmt = (n: number): string => (Math.abs(n) >= 1e6 && Number.isInteger(n) ? n.toLocaleString("en-US").replace(/,/g, "_") : String(n));

/** Allowed values of a leaf schema, in words. */
export function allowedOf(schema: z.ZodType): string {
  const s = unwrap(schema as AnyZod);
  const type = s.def.type as string;
  if (type === "boolean") return "boolean";
  if (type === "string") return "string";
  if (type === "literal") return (s.def.values as unknown[]).map((v) => String(v)).join(" | ");
  if (type === "enum") return (s.options ?? []).map(String).join(" | ");
  if (type === "number") {
    const checks = ((s.def.checks as { _zod: { def: { check: string; value: number; inclusive?: boolean } } }[] | undefined) ?? []).map((c) => c._zod.def);
    let lo: { v: number; incl: boolean } | undefined;
    let hi: { v: number; incl: boolean } | undefined;
    for (const c of checks) {
      if (c.check === "greater_than") lo = { v: c.value, incl: c.inclusive ?? false };
      if (c.check === "less_than") hi = { v: c.value, incl: c.inclusive ?? false };
    }
    const isInt = s.isInt === true || s.def.format === "safeint" || checks.some((c) => (c as { format?: string }).format === "safeint");
    if (isInt) {
      const min = lo ? (lo.incl ? lo.v : lo.v + 1) : undefined;
      const max = hi && hi.v < Number.MAX_SAFE_INTEGER ? (hi.incl ? hi.v : hi.v - 1) : undefined;
      if (min !== undefined && max !== undefined) return `integer ${fmt(min)}–${fmt(max)}`;
      if (min !== undefined) return `integer ≥ ${fmt(min)}`;
      if (max !== undefined) return `integer ≤ ${fmt(max)}`;
      return "integer";
    }
    const parts: string[] = [];
    if (lo) parts.push(`${lo.incl ? "≥" : ">"} ${fmt(lo.v)}`);
    if (hi && Number.isFinite(hi.v)) parts.push(`${hi.incl ? "≤" : "<"} ${fmt(hi.v)}`);
    if (lo && hi && Number.isFinite(hi.v)) return `number in ${lo.incl ? "[" : "("}${fmt(lo.v)}, ${fmt(hi.v)}${hi.incl ? "]" : ")"}`;
    return parts.length ? `number ${parts.join(" and ")}` : "number";
  }
  return type;
}

type Shape = Record<string, z.ZodType>;

function shapeOf(schema: z.ZodType): Shape {
  return (unwrap(schema as AnyZod) as unknown as { shape: Shape }).shape;
}

/** The task-family variants of the `task` union, by family name. */
function taskVariants(): Record<"sinusoid" | "omniglot", Shape> {
  const union = unwrap(shapeOf(RunConfigSchema).task as AnyZod);
  const out: Partial<Record<"sinusoid" | "omniglot", Shape>> = {};
  for (const opt of union.def.options as z.ZodType[]) {
    const shape = shapeOf(opt);
    const fam = String((unwrap(shape.family as AnyZod).def.values as unknown[])[0]) as "sinusoid" | "omniglot";
    out[fam] = shape;
  }
  return out as Record<"sinusoid" | "omniglot", Shape>;
}

/** The leaf schema of a dotted key (for the task union, the variant of `family`, default sinusoid). */
export function leafSchema(key: string, family: "sinusoid" | "omniglot" = "sinusoid"): z.ZodType | undefined {
  const parts = key.split(".");
  let shape: Shape = shapeOf(RunConfigSchema);
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (i === 0 && p === "task" && parts.length > 1) {
      const v = taskVariants();
      shape = v[family][parts[1]!] ? v[family] : v[family === "sinusoid" ? "omniglot" : "sinusoid"];
      continue;
    }
    const s = shape[p];
    if (!s) return undefined;
    if (i === parts.length - 1) return s;
    shape = shapeOf(s);
  }
  return undefined;
}

// ---- documentation ---------------------------------------------------------------------------------

/** Which schema constant in contracts/config.ts holds the keys under each prefix. */
const SCHEMA_OF_PREFIX: Record<string, string> = {
  "": "RunConfigSchema",
  model: "ModelSchema",
  failurePolicy: "FailurePolicySchema",
  timeouts: "TimeoutsSchema",
};

/** Meanings for keys the schema's source leaves without a JSDoc comment. */
const FALLBACK_MEANING: Record<string, string> = {
  algorithm: "`maml` (second-order MAML), `fomaml` (first-order MAML) or `reptile`.",
  "task.family": "Task family: `sinusoid` regression (MAML §5.1) or `omniglot` N-way K-shot classification.",
  "task.ways": "N: classes per task.",
  "task.shots": "K: support examples per class.",
  "task.queryShots": "Query examples per class.",
  evalTasks: "Held-out tasks per evaluation.",
};

/** JSDoc comments of the keys of each `export const XSchema = z.object({...})` in a source file. */
export function jsdocByKey(source: string): Map<string, Map<string, string>> {
  const out = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  let pending: string[] | undefined;
  let inComment = false;
  let comment: string[] = [];
  for (const line of source.split("\n")) {
    const head = /^export const (\w+Schema) = z/.exec(line);
    if (head) {
      current = new Map();
      out.set(head[1]!, current);
      pending = undefined;
      continue;
    }
    const t = line.trim();
    if (inComment) {
      const end = t.endsWith("*/");
      const body = t.replace(/\*\/$/, "").replace(/^\*\s?/, "").trim();
      if (body) comment.push(body);
      if (end) {
        inComment = false;
        pending = comment;
      }
      continue;
    }
    const single = /^\/\*\*\s*(.*?)\s*\*\/$/.exec(t);
    if (single) {
      pending = [single[1]!];
      continue;
    }
    if (t.startsWith("/**")) {
      inComment = true;
      comment = [];
      const body = t.slice(3).trim();
      if (body) comment.push(body);
      continue;
    }
    const key = /^(\w+):/.exec(t);
    if (key && current && pending) current.set(key[1]!, pending.join(" "));
    pending = undefined;
  }
  return out;
}

function flatten(o: Record<string, unknown>, prefix = ""): [string, unknown][] {
  const out: [string, unknown][] = [];
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === "object" && !Array.isArray(v)) out.push(...flatten(v as Record<string, unknown>, key));
    else out.push([key, v]);
  }
  return out;
}

/** Every settable key with allowed values, default and meaning, in schema order. */
export function configDocs(): ConfigKeyDoc[] {
  const source = readFileSync(fileURLToPath(new URL("../contracts/config.ts", import.meta.url)), "utf8");
  const docs = jsdocByKey(source);
  const variants = taskVariants();
  const defaults = {
    sinusoid: new Map(flatten(parseRunConfig({}) as unknown as Record<string, unknown>)),
    omniglot: new Map(flatten(parseRunConfig({ task: { family: "omniglot" }, model: { kind: "omniglot-mlp" } }) as unknown as Record<string, unknown>)),
  };
  const meaningOf = (key: string, schemaName: string, leaf: string): string => {
    const text = docs.get(schemaName)?.get(leaf) ?? FALLBACK_MEANING[key] ?? "";
    return text.replace(/\|/g, "\\|");
  };
  const out: ConfigKeyDoc[] = [];
  const top = shapeOf(RunConfigSchema);
  for (const [k, s] of Object.entries(top)) {
    if (k === "task") {
      for (const fam of ["sinusoid", "omniglot"] as const) {
        const schemaName = fam === "sinusoid" ? "SinusoidTaskSchema" : "OmniglotTaskSchema";
        for (const [leaf, ls] of Object.entries(variants[fam])) {
          const key = `task.${leaf}`;
          const d = defaults[fam].get(key);
          out.push({ key, family: fam, allowed: allowedOf(ls), default: d === undefined ? (leaf === "family" ? JSON.stringify(fam) : "—") : JSON.stringify(d), meaning: meaningOf(key, schemaName, leaf) });
        }
      }
      continue;
    }
    const inner = unwrap(s as AnyZod);
    if ((inner.def.type as string) === "object") {
      for (const [leaf, ls] of Object.entries(shapeOf(inner))) {
        const key = `${k}.${leaf}`;
        out.push({ key, allowed: allowedOf(ls), default: JSON.stringify(defaults.sinusoid.get(key)), meaning: meaningOf(key, SCHEMA_OF_PREFIX[k] ?? "", leaf) });
      }
      continue;
    }
    out.push({ key: k, allowed: allowedOf(s), default: JSON.stringify(defaults.sinusoid.get(k)), meaning: meaningOf(k, "RunConfigSchema", k) });
  }
  return out;
}

/** The configuration reference as a Markdown table (what `npm run docs:config` puts in the README). */
export function configReferenceMarkdown(): string {
  const rows = configDocs().map((d) => `| \`${d.key}\`${d.family ? ` (${d.family})` : ""} | ${d.allowed.replace(/\|/g, "\\|")} | \`${d.default}\` | ${d.meaning} |`);
  return ["| key | allowed | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}
