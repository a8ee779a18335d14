// `metatrain pause <run> [--json]`: pause a run before its next meta-iteration (the one in flight finishes).
import type { Command } from "commander";

export function registerPause(program: Command): void {
  program
    .command("pause")
    .argument("<run>", "run id")
    .description("pause a run before its next meta-iteration (the one in flight finishes)")
    .option("--json", "print {runId, signal, iteration, iterations}")
    .action(async (runId: string, opts: { json?: boolean }) => (await import("../steer.js")).steer(runId, "pause", opts.json));
}
