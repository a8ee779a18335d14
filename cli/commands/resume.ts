// `metatrain resume <run> [--json]`: resume a paused run.
import type { Command } from "commander";
import { steer } from "../steer.js";

export function registerResume(program: Command): void {
  program
    .command("resume")
    .argument("<run>", "run id")
    .description("resume a paused run")
    .option("--json", "print {runId, signal, iteration, iterations}")
    .action((runId: string, opts: { json?: boolean }) => steer(runId, "resume", opts.json));
}
