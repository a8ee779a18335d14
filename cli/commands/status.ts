// `metatrain status <run> [--json]`: where a run stands — progress, latest metrics, evaluation, last checkpoint.
import type { Command } from "commander";

export function registerStatus(program: Command): void {
  program
    .command("status")
    .argument("<run>", "run id")
    .description("a run's state, iteration, last meta-batch's pre/post-adaptation loss, last evaluation and checkpoint")
    .option("--json", "print the status object (see docs/cli.md)")
    .action(async (runId: string, opts: { json?: boolean }) => {
      const [{ describeRun }, { withTemporal }, { printStatus }] = await Promise.all([import("../runs.js"), import("../temporal.js"), import("../watch.js")]);
      const r = await withTemporal((s) => describeRun(s, runId));
      if (opts.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      else printStatus(r);
    });
}
