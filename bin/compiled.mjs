// Whether the `metatrain` command may run the compiled CLI in dist/ rather than the TypeScript.
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** What the CLI (and the worker it starts) is compiled from. */
export const SOURCES = ["cli", "contracts", "meta", "storage", "telemetry", "activities", "workflows", "workers"];

/**
 * True when `npm run build` finished (`dist/.build-stamp`) after the last change to any `.ts` file
 * under `SOURCES` in `root`, so that an edited checkout never runs stale JavaScript; false with
 * METATRAIN_FROM_SOURCE set. The walk stats a few hundred files: milliseconds.
 */
export function compiledIsFresh(root, env = process.env) {
  if (env.METATRAIN_FROM_SOURCE) return false;
  let built;
  try {
    built = statSync(join(root, "dist", ".build-stamp")).mtimeMs;
  } catch {
    return false;
  }
  const newer = (dir) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return false;
    }
    return entries.some((e) => (e.isDirectory() ? newer(join(dir, e.name)) : e.name.endsWith(".ts") && statSync(join(dir, e.name)).mtimeMs > built));
  };
  return !SOURCES.some((d) => newer(join(root, d)));
}
