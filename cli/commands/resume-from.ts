// `metatrain resume-from <checkpoint-uri> [--run-id ID] [--set key=value …] [--watch] [--json]`: a new run from a stored checkpoint.
import type { Command } from "commander";
import { secondsOption, setExitCode } from "../errors.js";
import { checkRunId, newRunId, startRun } from "./submit.js";
import { collect } from "./config.js";

export function registerResumeFrom(program: Command): void {
  program
    .command("resume-from")
    .argument("<checkpoint>", "<store>/runs/<id>/checkpoints/latest.json, …/checkpoints/<iteration>/manifest.json, or a run id (its latest checkpoint in METATRAIN_STORE)")
    .description("start a new run from a stored checkpoint: its iteration, parameters, optimizer state and config (the checkpoint must be in the workers' store)")
    .option("--run-id <id>", "the new run's id (default: <old id>-from-<iteration>-<date>-<time>-<4 hex>)")
    .option("--set <key=value>", "change the checkpoint's config, e.g. --set iterations=2000 to train longer (repeatable)", collect, [])
    .option("--watch", "follow the new run until it ends")
    .option("--interval <seconds>", "with --watch: poll interval", "1")
    .option("--json", "print JSON as `submit --json` does")
    .action(async (arg: string, opts: { runId?: string; set: string[]; watch?: boolean; interval: string; json?: boolean }) => {
      const intervalMs = secondsOption("--interval", opts.interval) * 1000;
      const [{ resolveConfig }, { checkResumable, displayStoreUri, loadCheckpoint, storeUriFromEnv }, { withTemporal }] = await Promise.all([
        import("../config.js"),
        import("../store.js"),
        import("../temporal.js"),
      ]);
      const ckpt = await loadCheckpoint(arg);
      const workersStore = displayStoreUri(storeUriFromEnv());
      if (displayStoreUri(ckpt.ref.storeUri) !== workersStore && !opts.json) {
        process.stderr.write(`note: the checkpoint is in ${displayStoreUri(ckpt.ref.storeUri)} but METATRAIN_STORE is ${workersStore}; the workers read it from their own store\n`);
      }
      // Without --set, the workflow takes the config from the checkpoint itself.
      const config = opts.set.length ? resolveConfig({ base: ckpt.manifest.config, set: opts.set }) : null;
      const runIdGiven = opts.runId === undefined ? undefined : checkRunId(opts.runId);
      await checkResumable(ckpt, config);
      const runId = runIdGiven ?? checkRunId(newRunId(`${ckpt.manifest.runId.slice(0, 24)}-from-${ckpt.manifest.iteration}`));
      const cfg = config ?? ckpt.manifest.config;
      const code = await withTemporal((s) =>
        startRun(s, runId, config, ckpt.manifestKey, { json: opts.json, watch: opts.watch, intervalMs },
          `started run ${runId} from ${ckpt.manifestUri} (iteration ${ckpt.manifest.iteration} of ${cfg.iterations}, ${cfg.algorithm}, ${cfg.task.family})`, cfg),
      );
      setExitCode(code);
    });
}
