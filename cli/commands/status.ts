// `metatrain status <run> [--json]`: where a run stands — progress, latest metrics, evaluation, last checkpoint.
import type { Command } from "commander";

export function registerStatus(program: Command): void {
  program
    .command("status")
    .argument("<run>", "run id (or sweep id)")
    .description("a run's state, iteration, last meta-batch's pre/post-adaptation loss, last evaluation and checkpoint")
    .option("--json", "print the status object (see docs/cli.md)")
    .action(async (runId: string, opts: { json?: boolean }) => {
      const [{ describeRun }, { withTemporal }, { printStatus }, sweeps] = await Promise.all([import("../runs.js"), import("../temporal.js"), import("../watch.js"), import("../sweeps.js")]);
      // One connection for both questions: is it a sweep, and what is its (or the run's) state.
      const got = await withTemporal(async (s) => ((await sweeps.isSweep(s, runId)) ? { kind: "sweep" as const, sweep: await sweeps.describeSweep(s, runId) } : { kind: "run" as const, run: await describeRun(s, runId) }));
      if (got.kind === "sweep") {
        process.stdout.write(opts.json ? `${JSON.stringify(got.sweep, null, 2)}\n` : `${sweeps.sweepLines(got.sweep).join("\n")}\n`);
        return;
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(got.run, null, 2)}\n`);
      else printStatus(got.run);
    });
}
