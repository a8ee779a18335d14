// `metatrain eval <checkpoint> [--tasks 600] [--steps N] [--json]`: fine-tune a checkpoint on held-out tasks, here, and report accuracy or MSE with a 95% CI.
import type { Command } from "commander";
import type { MeanCI } from "../../contracts/activities.js";
import { intOption } from "../errors.js";

/** `eval --json`. Documented in docs/cli.md. */
export interface EvalJson {
  checkpoint: string;
  runId: string;
  iteration: number;
  algorithm: string;
  task: string;
  model: string;
  /** `accuracy` (classification) or `mse` (sinusoid regression): what `postAdaptation` measures. */
  metric: "accuracy" | "mse";
  split: string;
  tasks: number;
  innerLr: number;
  /** Test-time SGD steps of the headline result. */
  steps: number;
  batchNorm: "none" | "transductive" | "per-example";
  backend: string;
  /** The headline: after `steps` steps of adaptation, mean and half-width of its 95% CI. */
  postAdaptation: MeanCI;
  /** The initialisation before any adaptation (0 steps), same metric. */
  preAdaptation: MeanCI;
  /** Every step count measured (0 and `steps`): loss, and accuracy for classification. */
  results: { steps: number; loss: MeanCI; accuracy?: MeanCI }[];
  seconds: number;
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .argument("<checkpoint>", "<store>/runs/<id>/checkpoints/latest.json, …/<iteration>/manifest.json, or a run id (METATRAIN_STORE)")
    .description("evaluate a checkpoint in this process on held-out tasks: fine-tune for N steps, report accuracy (classification) or MSE (regression) with a 95% CI")
    .option("--tasks <n>", "held-out tasks", "600")
    .option("--steps <n>", "test-time SGD steps (default: the run's evalSteps)")
    .option("--json", "print the result object (see docs/cli.md)")
    .action(async (arg: string, opts: { tasks: string; steps?: string; json?: boolean }) => {
      const tasks = intOption("--tasks", opts.tasks, 1, 100_000);
      const steps0 = opts.steps === undefined ? undefined : intOption("--steps", opts.steps, 0, 10_000);
      const { loadCheckpoint, loadCheckpointParams } = await import("../store.js");
      const ckpt = await loadCheckpoint(arg);
      const config = ckpt.manifest.config;
      const steps = steps0 ?? config.evalSteps;
      // TensorFlow.js and the engine load only here.
      const [{ selectBackend }, { build }, { deriveSeed, Stream }, { dispose }] = await Promise.all([
        import("../../meta/backend.js"),
        import("../../activities/build.js"),
        import("../../meta/rng.js"),
        import("../../meta/params.js"),
      ]);
      process.env.TF_CPP_MIN_LOG_LEVEL ??= "2"; // the native backend's INFO lines are not for CLI users
      const backend = await selectBackend("auto", process.env);
      const { learner, setup } = build(config);
      const model = setup.model;
      const params = await loadCheckpointParams(ckpt);
      const t0 = performance.now();
      const progress = !opts.json && process.stderr.isTTY;
      let r;
      try {
        r = await learner.evaluate(setup, params, {
          tasks,
          steps: [0, steps],
          // The held-out stream the run's own evaluations use, so the numbers compare.
          seed: deriveSeed(config.seed, Stream.evalTask),
          split: "test",
          onTask: progress ? (done, total) => process.stderr.write(`\r\x1b[2Kevaluating: ${done}/${total} tasks`) : undefined,
        });
      } finally {
        dispose(params);
        if (progress) process.stderr.write("\r\x1b[2K");
      }
      const cls = config.task.family !== "sinusoid";
      const at = (n: number) => r.results.find((x) => x.steps === n)!;
      const head = (x: { loss: MeanCI; accuracy?: MeanCI }) => (cls ? x.accuracy! : x.loss);
      const out: EvalJson = {
        checkpoint: ckpt.manifestUri,
        runId: ckpt.manifest.runId,
        iteration: ckpt.manifest.iteration,
        algorithm: config.algorithm,
        task: config.task.family,
        model: model.name,
        metric: cls ? "accuracy" : "mse",
        split: r.split,
        tasks,
        innerLr: config.innerLr,
        steps,
        batchNorm: r.batchNorm,
        backend: backend.backend,
        postAdaptation: head(at(steps)),
        preAdaptation: head(at(0)),
        results: r.results,
        seconds: (performance.now() - t0) / 1000,
      };
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      const fmt = (m: MeanCI) => (cls ? `${(100 * m.mean).toFixed(2)}% ± ${(100 * m.ci95).toFixed(2)}%` : `${m.mean.toFixed(4)} ± ${m.ci95.toFixed(4)}`);
      const what = cls ? "accuracy" : "MSE";
      process.stdout.write(
        [
          `checkpoint ${out.checkpoint}`,
          `  run ${out.runId}, iteration ${out.iteration}: ${out.algorithm}, ${out.task}, ${out.model}${out.batchNorm !== "none" ? ` (batch norm: ${out.batchNorm})` : ""}`,
          `${tasks} held-out tasks (${out.split} split), SGD α = ${out.innerLr}, ${what} with 95% CI, backend ${out.backend}:`,
          `  before adaptation (0 steps): ${fmt(out.preAdaptation)}`,
          `  after ${steps} step${steps === 1 ? "" : "s"}:${" ".repeat(Math.max(1, 16 - String(steps).length - (steps === 1 ? 0 : 1)))}${fmt(out.postAdaptation)}`,
        ].join("\n") + "\n",
      );
    });
}
