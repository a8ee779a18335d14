// `metatrain config [file] [--preset NAME] [--set k=v …]`: validate and print a resolved run config.
import type { Command } from "commander";

export const collect = (v: string, prev: string[]): string[] => [...prev, v];

export function registerConfig(program: Command): void {
  program
    .command("config")
    .argument("[file]", "run config, YAML or JSON")
    .description("validate a run config (file, preset, --set overrides) and print it with every default filled in")
    .option("--preset <name>", "start from a preset (see `metatrain presets`)")
    .option("--set <key=value>", "override one key, e.g. --set innerLr=0.1 (repeatable)", collect, [])
    .option("--json", "print JSON instead of YAML")
    .action(async (file: string | undefined, opts: { preset?: string; set: string[]; json?: boolean }) => {
      const [{ resolveConfig }, { stringify }] = await Promise.all([import("../config.js"), import("yaml")]);
      const cfg = resolveConfig({ file, preset: opts.preset, set: opts.set });
      process.stdout.write(opts.json ? JSON.stringify(cfg, null, 2) + "\n" : stringify(cfg));
    });
}
