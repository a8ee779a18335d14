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
      const sweep = await withTemporal(async (s) => ((await sweeps.isSweep(s, runId)) ? sweeps.describeSweep(s, runId) : undefined));
      if (sweep) {
        process.stdout.write(opts.json ? `${JSON.stringify(sweep, null, 2)}\n` : `${sweeps.sweepLines(sweep).join("\n")}\n`);
        return;
      }
      const r = await withTemporal((s) => describeRun(s, runId));
      if (opts.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      else printStatus(r);
    });
}
