// `metatrain sweep [sweep.yaml] [--preset P] [--grid k=v1,v2 …] [--random k=lo..hi[:log] …] [--watch]`:
// a hyperparameter sweep with successive halving over child runs (workflows/sweep.ts).
import type { Command } from "commander";
import { CliError, ExitCodes, intOption, secondsOption, setExitCode } from "../errors.js";
import { collect } from "./config.js";
import { interruptSignal } from "./watch.js";

interface SweepOpts {
  preset?: string;
  set: string[];
  grid: string[];
  random: string[];
  samples?: string;
  eta?: string;
  minIterations?: string;
  maxIterations?: string;
  concurrency?: string;
  seed?: string;
  sweepId?: string;
  watch?: boolean;
  interval: string;
  json?: boolean;
}

export function registerSweep(program: Command): void {
  program
    .command("sweep")
    .argument("[file]", "sweep file, YAML or JSON: preset, config, set, grid {key: [values]}, random {key: lo..hi[:log]}, samples, eta, minIterations, maxIterations, concurrency, seed")
    .description(
      "tune hyperparameters: every trial is a run of the same config with the swept keys set; successive halving trains all of them for " +
        "minIterations, keeps the best 1/eta by held-out score (accuracy, or −loss), trains those eta× longer from their checkpoints, … up to maxIterations",
    )
    .option("--preset <name>", "the base config's preset (see `metatrain presets`)")
    .option("--set <key=value>", "change the base config (repeatable)", collect, [])
    .option("--grid <key=v1,v2,…>", "sweep a key over values (repeatable; trials are the grid's product)", collect, [])
    .option("--random <key=lo..hi[:log]>", "draw a key from a range, log-uniformly with :log (repeatable; --samples draws per grid point)", collect, [])
    .option("--samples <n>", "random draws per grid point (default 1)")
    .option("--eta <n>", "keep the best 1/eta of the trials at each rung (default 3)")
    .option("--min-iterations <n>", "iterations of the first rung (default maxIterations/eta²)")
    .option("--max-iterations <n>", "iterations the best trials reach (default: the config's iterations)")
    .option("--concurrency <n>", "trial runs at once (default 2)")
    .option("--seed <n>", "seed of the random draws (default: the config's seed)")
    .option("--sweep-id <id>", "the sweep's id (default: sweep-<preset or algorithm>-<date>-<time>-<4 hex>); trial runs are <id>-t<trial>-r<rung>")
    .option("--watch", "follow the sweep until it ends; exit 0 when it found a winner, 1 when it failed")
    .option("--interval <seconds>", "with --watch: poll interval", "2")
    .option("--json", "print {sweepId, executionRunId, trials, budgets}; with --watch, the final status object")
    .action(async (file: string | undefined, opts: SweepOpts) => {
      if (file === undefined && opts.preset === undefined) {
        throw new CliError("no base config given: sweep needs a sweep file or --preset", ExitCodes.badInput, "e.g. metatrain sweep --preset sinusoid-maml --grid innerLr=0.005,0.01,0.02");
      }
      const int = (flag: string, v: string | undefined, lo: number, hi: number) => (v === undefined ? undefined : intOption(flag, v, lo, hi));
      const [{ resolveSweep, checkSweepId, startSweep, watchSweep, sweepExitCode }, { sweepTrials, rungBudgets }, { withTemporal }, { newRunId }] = await Promise.all([
        import("../sweeps.js"),
        import("../../contracts/sweep.js"),
        import("../temporal.js"),
        import("./submit.js"),
      ]);
      const spec = resolveSweep({
        file,
        preset: opts.preset,
        set: opts.set,
        grid: opts.grid,
        random: opts.random,
        samples: int("--samples", opts.samples, 1, 1000),
        eta: int("--eta", opts.eta, 2, 10),
        minIterations: int("--min-iterations", opts.minIterations, 1, 10_000_000),
        maxIterations: int("--max-iterations", opts.maxIterations, 1, 10_000_000),
        concurrency: int("--concurrency", opts.concurrency, 1, 100),
        seed: int("--seed", opts.seed, 0, 0xffffffff),
      });
      const base = spec.base as { algorithm: string; task: { family: string } };
      const sweepId = checkSweepId(opts.sweepId ?? newRunId(`sweep-${opts.preset ?? `${base.task.family}-${base.algorithm}`}`.slice(0, 24)));
      const intervalMs = secondsOption("--interval", opts.interval) * 1000;
      const trials = sweepTrials(spec).length;
      const budgets = rungBudgets(spec);
      await withTemporal(async (s) => {
        const executionRunId = await startSweep(s, sweepId, spec);
        if (opts.json && !opts.watch) {
          process.stdout.write(`${JSON.stringify({ sweepId, executionRunId, trials, budgets }, null, 2)}\n`);
          return;
        }
        if (!opts.json) process.stdout.write(`started sweep ${sweepId}: ${trials} trials, rungs of ${budgets.join(" → ")} iterations, ${spec.concurrency} at once, on ${s.settings.address}\n${sweepId}\n`);
        if (!opts.watch) return;
        setExitCode(sweepExitCode(await watchSweep(s, sweepId, { json: opts.json, intervalMs, signal: interruptSignal() })));
      });
    });
}
