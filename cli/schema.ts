// The run-config schema read back at run time: each settable key's type, allowed values, default and
// meaning (the schema's own descriptions), for error messages ("allowed: an integer from 1 to 1000")
// and the README's configuration reference. Variants (task families, model kinds, learner options)
// come from the registries through the schema, so a new learner documents itself.
import type { z } from "zod";
import { RunConfigSchema } from "../meta/run-config.js";

/** One settable key of the run config. */
export interface ConfigKeyDoc {
  /** Dotted key as `--set` takes it, e.g. `task.shots`. */
  key: string;
  /** The variant it belongs to: a task family (`task.*`), a model kind (`model.*`) or a learner (its section). */
  variant?: string;
  /** Allowed values in words: `integer 1–1000`, `number > 0`, `maml \| fomaml \| reptile`, `boolean`. */
  allowed: string;
  /** Default as JSON text, or `—` when the key is optional without a default. */
  default: string;
  /** What it means (the schema's description). */
  meaning: string;
}

// zod 4 internals we read: def.type, def.innerType, def.checks, def.options, def.shape.
type AnyZod = z.ZodType & { def: Record<string, unknown>; description?: string; isInt?: boolean; options?: unknown[] };

const WRAPPERS = new Set(["default", "optional", "nullable", "prefault"]);

function unwrap(s: AnyZod): AnyZod {
  let cur = s;
  for (let i = 0; i < 10 && WRAPPERS.has(cur.def.type as string); i++) cur = cur.def.innerType as AnyZod;
  return cur;
}

/** The first description found from the outside in. */
function describe(s: AnyZod): string {
  let cur: AnyZod | undefined = s;
  for (let i = 0; i < 10 && cur; i++) {
    if (cur.description) return cur.description;
    cur = WRAPPERS.has(cur.def.type as string) ? (cur.def.innerType as AnyZod) : undefined;
  }
  return "";
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

function typeOf(schema: z.ZodType): string {
  return unwrap(schema as AnyZod).def.type as string;
}

/** The variants of a discriminated union, by discriminator value (e.g. `task` by family). */
function variants(union: z.ZodType): Map<string, Shape> {
  const u = unwrap(union as AnyZod);
  const disc = u.def.discriminator as string;
  const out = new Map<string, Shape>();
  for (const opt of u.def.options as z.ZodType[]) {
    const shape = shapeOf(opt);
    out.set(String((unwrap(shape[disc] as AnyZod).def.values as unknown[])[0]), shape);
  }
  return out;
}

/** The discriminator of each union key of the config (`task` → `family`, `model` → `kind`). */
function unions(): Map<string, string> {
  const out = new Map<string, string>();
  for (const [k, s] of Object.entries(shapeOf(RunConfigSchema))) {
    const u = unwrap(s as AnyZod);
    if (u.def.type === "union" && typeof u.def.discriminator === "string") out.set(k, u.def.discriminator);
  }
  return out;
}

/** Which variant a partial config selects for each union key (default: the union's default). */
export type VariantChoice = Record<string, string | undefined>;

/**
 * The leaf schema of a dotted key. For a union key (`task.shots`), the variant named in `choice`
 * (e.g. `{ task: "omniglot" }`), else the first variant that has the key.
 */
export function leafSchema(key: string, choice: VariantChoice = {}): z.ZodType | undefined {
  const parts = key.split(".");
  let shape: Shape = shapeOf(RunConfigSchema);
  const us = unions();
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    const s = shape[p];
    if (!s) return undefined;
    if (i === parts.length - 1) return s;
    if (i === 0 && us.has(p)) {
      const vs = variants(s);
      const chosen = choice[p] !== undefined ? vs.get(choice[p]!) : undefined;
      const next = parts[1]!;
      shape = chosen && chosen[next] ? chosen : ([...vs.values()].find((v) => v[next]) ?? {});
      continue;
    }
    if (typeOf(s) !== "object") return undefined;
    shape = shapeOf(s);
  }
  return undefined;
}

/** The default of a leaf as JSON text, `—` when it has none. */
function defaultOf(s: z.ZodType): string {
  const r = (s as z.ZodType).safeParse(undefined);
  return r.success && r.data !== undefined ? JSON.stringify(r.data) : "—";
}

/** Every settable key with allowed values, default and meaning, in schema order. */
export function configDocs(): ConfigKeyDoc[] {
  const out: ConfigKeyDoc[] = [];
  const us = unions();
  const leaf = (key: string, s: z.ZodType, variant?: string): ConfigKeyDoc => ({
    key,
    ...(variant ? { variant } : {}),
    allowed: allowedOf(s),
    default: defaultOf(s),
    meaning: describe(s as AnyZod).replace(/\|/g, "\\|"),
  });
  for (const [k, s] of Object.entries(shapeOf(RunConfigSchema))) {
    const disc = us.get(k);
    if (disc) {
      for (const [name, shape] of variants(s)) {
        for (const [lk, ls] of Object.entries(shape)) {
          const d = leaf(`${k}.${lk}`, ls, name);
          if (lk === disc) out.push({ ...d, default: JSON.stringify(name), meaning: d.meaning || describe(s as AnyZod).replace(/\|/g, "\\|") });
          else out.push(d);
        }
      }
      continue;
    }
    if (typeOf(s) === "object") {
      // A learner's section is its variant: documented under its name.
      const variant = k === "failurePolicy" || k === "timeouts" ? undefined : k;
      for (const [lk, ls] of Object.entries(shapeOf(s))) out.push(leaf(`${k}.${lk}`, ls, variant));
      continue;
    }
    out.push(leaf(k, s));
  }
  return out;
}

/** Every settable dotted key (each once, whatever its variants). */
export function configKeys(): string[] {
  return [...new Set(configDocs().map((d) => d.key))].sort();
}

/** The configuration reference as a Markdown table (what `npm run docs:config` puts in the README). */
export function configReferenceMarkdown(): string {
  const rows = configDocs().map((d) => `| \`${d.key}\`${d.variant ? ` (${d.variant})` : ""} | ${d.allowed.replace(/\|/g, "\\|")} | \`${d.default}\` | ${d.meaning} |`);
  return ["| key | allowed | default | meaning |", "|---|---|---|---|", ...rows].join("\n");
}

/** Each union key of the config with its discriminator and default variant: `task` → `family`, "sinusoid". */
export function unionDefaults(): Map<string, { discriminator: string; default: string }> {
  const out = new Map<string, { discriminator: string; default: string }>();
  const shape = shapeOf(RunConfigSchema);
  for (const [k, disc] of unions()) {
    const d = (shape[k] as z.ZodType).safeParse(undefined);
    const value = d.success ? (d.data as Record<string, unknown>)[disc] : undefined;
    if (typeof value === "string") out.set(k, { discriminator: disc, default: value });
  }
  return out;
}

/** The variants of a union key that have `leaf` (`task`, `ways` → omniglot, …). */
export function variantsWithKey(unionKey: string, leaf: string): string[] {
  const s = shapeOf(RunConfigSchema)[unionKey];
  return s ? [...variants(s)].filter(([, shape]) => leaf in shape).map(([name]) => name) : [];
}
