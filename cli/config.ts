// Resolve a run config from a YAML/JSON file, a preset and `--set key=value` overrides, in that
// order, validated by the shared schema; unknown names get the nearest valid one.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { PRESETS, findPreset } from "../meta/algorithms/registry.js";
import { RunConfigSchema, parseRunConfig, type RunConfig, type RunConfigInput } from "../meta/run-config.js";
import { CliError, ExitCodes, nearest } from "./errors.js";
import { allowedOf, configKeys, leafSchema, unionDefaults, variantsWithKey } from "./schema.js";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** `3` → 3, `true` → true, `[1,2]` → [1,2], anything else stays a string. */
function parseValue(raw: string): Json {
  try {
    return JSON.parse(raw) as Json;
  } catch {
    return raw;
  }
}

/**
 * The mapping a YAML/JSON file holds (an empty file: {}), or a CliError (exit 2) that names the
 * file and what is wrong: unreadable, not YAML, or not a mapping. `what` names the file's kind
 * ("config file"), `of` what its keys are ("config keys").
 */
export function readYamlMapping(file: string, what: string, of: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new CliError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, ExitCodes.badInput);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text);
  } catch (e) {
    throw new CliError(`${what} ${file} is not valid YAML/JSON: ${(e as Error).message.split("\n")[0]}`, ExitCodes.badInput);
  }
  if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) {
    throw new CliError(`${what} ${file} must hold a mapping of ${of}`, ExitCodes.badInput);
  }
  return (parsed ?? {}) as Record<string, unknown>;
}

function setPath(obj: Record<string, Json>, path: string[], value: Json): void {
  let o = obj;
  for (const p of path.slice(0, -1)) {
    if (typeof o[p] !== "object" || o[p] === null || Array.isArray(o[p])) o[p] = {};
    o = o[p] as Record<string, Json>;
  }
  o[path[path.length - 1]!] = value;
}

export interface ConfigSources {
  /** A config to start from (below preset, file and overrides), e.g. a checkpoint's. Default `{}`. */
  base?: RunConfigInput;
  file?: string;
  preset?: string;
  set?: string[];
}

function getPath(obj: unknown, path: readonly PropertyKey[]): unknown {
  let o = obj;
  for (const p of path) o = o && typeof o === "object" ? (o as Record<PropertyKey, unknown>)[p] : undefined;
  return o;
}

export function resolveConfig(src: ConfigSources): RunConfig {
  let cfg: Record<string, Json> = src.base ? (structuredClone(src.base) as Record<string, Json>) : {};
  if (src.preset) {
    const p = findPreset(src.preset);
    if (!p) {
      const near = nearest(src.preset, PRESETS.map((x) => x.name));
      throw new CliError(`unknown preset '${src.preset}'${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput, "`metatrain presets` lists them");
    }
    cfg = deepMerge(cfg, structuredClone(p.config) as Record<string, Json>);
  }
  if (src.file) cfg = deepMerge(cfg, readYamlMapping(src.file, "config file", "config keys") as Record<string, Json>);
  const keys = configKeys();
  for (const kv of src.set ?? []) {
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new CliError(`--set expects key=value, got '${kv}'`, ExitCodes.badInput);
    const key = kv.slice(0, eq);
    if (!keys.includes(key)) {
      const near = nearest(key, keys);
      throw new CliError(`unknown config key '${key}'${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput, "the README's configuration reference lists every key");
    }
    setPath(cfg, key.split("."), parseValue(kv.slice(eq + 1)));
  }
  // Nested objects of the schema drop unknown keys silently: catch misspelt nested keys here.
  const leafKeys = (o: Record<string, Json>, prefix: string): string[] =>
    Object.entries(o).flatMap(([k, v]) => (v && typeof v === "object" && !Array.isArray(v) ? leafKeys(v as Record<string, Json>, `${prefix}${k}.`) : [`${prefix}${k}`]));
  const strays = leafKeys(cfg, "").filter((k) => k.includes(".") && !keys.includes(k));
  if (strays.length) {
    const u = strays[0]!;
    const near = nearest(u, keys) ?? nearest(u.split(".").pop()!, keys);
    throw new CliError(`unknown config key '${u}'${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput, "the README's configuration reference lists every key");
  }
  // `--set task.shots=5` alone selects the default family, as a config without `task` does.
  for (const [k, u] of unionDefaults()) {
    const o = cfg[k];
    if (o && typeof o === "object" && !Array.isArray(o) && o[u.discriminator] === undefined) o[u.discriminator] = u.default;
  }
  const r = RunConfigSchema.safeParse(cfg);
  if (r.success) return parseRunConfig(cfg);
  // One line per problem, each naming the key, the value given and what is allowed.
  const str = (v: unknown) => (typeof v === "string" ? v : undefined);
  const choice = { task: str(getPath(cfg, ["task", "family"])), model: str(getPath(cfg, ["model", "kind"])) };
  const problems: string[] = [];
  const unknown: string[] = [];
  for (const issue of r.error.issues) {
    const key = issue.path.map(String).join(".");
    if (issue.code === "unrecognized_keys") {
      for (const k of issue.keys) unknown.push(key ? `${key}.${k}` : k);
      continue;
    }
    const leaf = key ? leafSchema(key, choice) : undefined;
    const inner = leaf ? (leaf as unknown as { def: { type: string; innerType?: { def: { type: string } } } }) : undefined;
    const isObject = inner && (inner.def.type === "object" || inner.def.innerType?.def.type === "object" || inner.def.innerType?.def.type === "union");
    if (leaf && !isObject && issue.code !== "custom") {
      problems.push(`${key}=${JSON.stringify(getPath(cfg, issue.path))} is not allowed (allowed: ${allowedOf(leaf)})`);
    } else {
      problems.push(`${key || "(config)"}: ${issue.message}`);
    }
  }
  const unions = unionDefaults();
  for (const u of unknown.reverse()) {
    // A key of another variant (`task.ways` on sinusoid): say whose key it is, not "did you mean" itself.
    const [head, leaf] = u.split(".");
    const union = head !== undefined && leaf !== undefined && !u.slice(head.length + 1).includes(".") ? unions.get(head) : undefined;
    const owners = union ? variantsWithKey(head!, leaf!) : [];
    if (union && owners.length) {
      const chosen = String(getPath(cfg, [head!, union.discriminator]));
      problems.unshift(`${u} is not a key of ${head}.${union.discriminator} ${chosen} (it belongs to ${owners.join(", ")}); remove it or set ${head}.${union.discriminator}`);
      continue;
    }
    const near = nearest(u, keys) ?? nearest(u.split(".").pop()!, keys);
    problems.unshift(`unknown config key '${u}'${near ? ` (did you mean '${near}'?)` : ""}`);
  }
  const suggestion = unknown.length ? "the README's configuration reference lists every key" : "the README's configuration reference gives every key's allowed values";
  throw new CliError(`invalid config: ${problems.join("; ")}`, ExitCodes.badInput, suggestion);
}

function deepMerge(a: Record<string, Json>, b: Record<string, Json>): Record<string, Json> {
  const out: Record<string, Json> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && av && typeof av === "object" && !Array.isArray(av) ? deepMerge(av as Record<string, Json>, v as Record<string, Json>) : v;
  }
  return out;
}
