// `metatrain cancel <run> [--json]`: stop a run: abandon the iteration in flight, checkpoint the last completed one, end the run (status cancelled).
import type { Command } from "commander";

export function registerCancel(program: Command): void {
  program
    .command("cancel")
    .argument("<run>", "run id (or sweep id)")
    .description("stop a run: abandon the iteration in flight, checkpoint the last completed one, end the run (status cancelled)")
    .option("--json", "print {runId, signal, iteration, iterations}")
    .action(async (runId: string, opts: { json?: boolean }) => {
      const [{ withTemporal }, sweeps, { steerIn }] = await Promise.all([import("../temporal.js"), import("../sweeps.js"), import("../steer.js")]);
      // One connection: a sweep gets Temporal cancellation, which its running trials receive as
      // well; a run gets the cancel signal (it checkpoints, then ends).
      await withTemporal(async (s) => {
        if (!(await sweeps.isSweep(s, runId))) return steerIn(s, runId, "cancel", opts.json);
        await s.client.workflow.getHandle(runId).cancel();
        process.stdout.write(opts.json ? `${JSON.stringify({ sweepId: runId, cancel: "requested" })}\n` : `cancel requested for sweep ${runId}: its running trials are cancelled, no new ones start\n`);
      });
    });
}
