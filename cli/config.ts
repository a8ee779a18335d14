// Resolve a run config from a YAML/JSON file, a preset and `--set key=value` overrides, in that
// order, validated by the shared schema; unknown names get the nearest valid one.
import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { InvalidRunConfigError, parseRunConfig, type RunConfig } from "../contracts/config.js";
import { PRESETS, findPreset } from "../contracts/presets.js";
import { CliError, ExitCodes, nearest } from "./errors.js";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Every settable dotted key, taken from fully defaulted configs of each task family. */
export function configKeys(): string[] {
  const keys = new Set<string>();
  const walk = (o: unknown, prefix: string) => {
    for (const [k, v] of Object.entries(o as Record<string, unknown>)) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) walk(v, key);
      else keys.add(key);
    }
  };
  walk(parseRunConfig({}), "");
  walk(parseRunConfig({ task: { family: "omniglot" }, model: { kind: "omniglot-mlp" } }), "");
  keys.add("task.dataDir");
  return [...keys].sort();
}

/** `3` → 3, `true` → true, `[1,2]` → [1,2], anything else stays a string. */
function parseValue(raw: string): Json {
  try {
    return JSON.parse(raw) as Json;
  } catch {
    return raw;
  }
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
  file?: string;
  preset?: string;
  set?: string[];
}

export function resolveConfig(src: ConfigSources): RunConfig {
  let cfg: Record<string, Json> = {};
  if (src.preset) {
    const p = findPreset(src.preset);
    if (!p) {
      const near = nearest(src.preset, PRESETS.map((x) => x.name));
      throw new CliError(`unknown preset '${src.preset}'${near ? ` (did you mean '${near}'?)` : ""}`, ExitCodes.badInput, "`metatrain presets` lists them");
    }
    cfg = structuredClone(p.config) as Record<string, Json>;
  }
  if (src.file) {
    let text: string;
    try {
      text = readFileSync(src.file, "utf8");
    } catch (e) {
      throw new CliError(`cannot read config file ${src.file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, ExitCodes.badInput);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (e) {
      throw new CliError(`config file ${src.file} is not valid YAML/JSON: ${(e as Error).message.split("\n")[0]}`, ExitCodes.badInput);
    }
    if (parsed !== null && (typeof parsed !== "object" || Array.isArray(parsed))) {
      throw new CliError(`config file ${src.file} must hold a mapping of config keys`, ExitCodes.badInput);
    }
    cfg = deepMerge(cfg, (parsed ?? {}) as Record<string, Json>);
  }
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
  try {
    return parseRunConfig(cfg);
  } catch (e) {
    if (e instanceof InvalidRunConfigError) {
      const unknown = e.problems.map((p) => /Unrecognized key: "?([^"]+)"?/.exec(p)?.[1]).filter(Boolean) as string[];
      const hint = unknown.length ? unknown.map((u) => `'${u}'${nearest(u, keys.map((k) => k.split(".").pop()!)) ? ` (did you mean '${nearest(u, keys.map((k) => k.split(".").pop()!))}'?)` : ""}`).join(", ") : undefined;
      throw new CliError(`invalid config: ${e.problems.join("; ")}`, ExitCodes.badInput, hint ? `unknown keys: ${hint}` : undefined);
    }
    throw e;
  }
}

function deepMerge(a: Record<string, Json>, b: Record<string, Json>): Record<string, Json> {
  const out: Record<string, Json> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    const av = out[k];
    out[k] = v && typeof v === "object" && !Array.isArray(v) && av && typeof av === "object" && !Array.isArray(av) ? deepMerge(av as Record<string, Json>, v as Record<string, Json>) : v;
  }
  return out;
}
