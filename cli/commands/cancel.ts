// `metatrain cancel <run> [--json]`: stop a run: abandon the iteration in flight, checkpoint the last completed one, end the run (status cancelled).
import type { Command } from "commander";
import { steer } from "../steer.js";

export function registerCancel(program: Command): void {
  program
    .command("cancel")
    .argument("<run>", "run id")
    .description("stop a run: abandon the iteration in flight, checkpoint the last completed one, end the run (status cancelled)")
    .option("--json", "print {runId, signal, iteration, iterations}")
    .action((runId: string, opts: { json?: boolean }) => steer(runId, "cancel", opts.json));
}
