// `metatrain resume <run> [--json]`: resume a paused run.
import type { Command } from "commander";

export function registerResume(program: Command): void {
  program
    .command("resume")
    .argument("<run>", "run id")
    .description("resume a paused run")
    .option("--json", "print {runId, signal, iteration, iterations}")
    .action(async (runId: string, opts: { json?: boolean }) => (await import("../steer.js")).steer(runId, "resume", opts.json));
}
