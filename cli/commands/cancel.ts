// `metatrain cancel <run> [--json]`: stop a run: abandon the iteration in flight, checkpoint the last completed one, end the run (status cancelled).
import type { Command } from "commander";

export function registerCancel(program: Command): void {
  program
    .command("cancel")
    .argument("<run>", "run id")
    .description("stop a run: abandon the iteration in flight, checkpoint the last completed one, end the run (status cancelled)")
    .option("--json", "print {runId, signal, iteration, iterations}")
    .action(async (runId: string, opts: { json?: boolean }) => (await import("../steer.js")).steer(runId, "cancel", opts.json));
}
