// `metatrain export <checkpoint> --out DIR [--json]`: the meta-learned initialisation as TensorFlow.js files (tf.io weights; a Layers model.json where possible).
import { readdirSync, statSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Command } from "commander";
import { CliError, ExitCodes } from "../errors.js";

export function registerExport(program: Command): void {
  program
    .command("export")
    .argument("<checkpoint>", "<store>/runs/<id>/checkpoints/latest.json, …/<iteration>/manifest.json, or a run id (METATRAIN_STORE)")
    .description("write the meta-learned initialisation for TensorFlow.js: weights.bin + weights_manifest.json (tf.io), model.json (tf.loadLayersModel; models without batch norm) and metatrain.json")
    .requiredOption("--out <dir>", "output directory (created; must be empty or absent unless --force)")
    .option("--force", "write into a directory that is not empty")
    .option("--json", "print metatrain.json's content")
    .action(async (arg: string, opts: { out: string; force?: boolean; json?: boolean }) => {
      const out = resolve(opts.out);
      checkOutDir(opts.out, out, opts.force ?? false);
      const { loadCheckpoint, loadCheckpointParams } = await import("../store.js");
      const ckpt = await loadCheckpoint(arg);
      const [{ selectBackend }, { build }, { writeExport }, { dispose }, { modelParamsOf }] = await Promise.all([
        import("../../meta/backend.js"),
        import("../../activities/build.js"),
        import("../export-model.js"),
        import("../../meta/params.js"),
        import("../../meta/algorithms/learner.js"),
      ]);
      process.env.TF_CPP_MIN_LOG_LEVEL ??= "2"; // the native backend's INFO lines are not for CLI users
      await selectBackend("auto", process.env);
      const model = build(ckpt.manifest.config).setup.model;
      const params = await loadCheckpointParams(ckpt);
      let d;
      try {
        // The model's own parameters: what the learner owns beyond them (step sizes, …) is not part of the model.
        d = await writeExport(out, model, modelParamsOf(params), { runId: ckpt.manifest.runId, iteration: ckpt.manifest.iteration, checkpoint: ckpt.manifestUri, config: ckpt.manifest.config });
      } finally {
        dispose(params);
      }
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(d, null, 2)}\n`);
        return;
      }
      const lines = [
        `exported ${ckpt.manifestUri}`,
        `  (run ${d.runId}, iteration ${d.iteration}, ${d.model.name}, ${d.parameters.length} parameter tensors) to ${out}:`,
        `  ${d.files.weights} + ${d.files.weightsManifest}   tf.io weights, named as the model's parameters (tf.io.decodeWeights / tf.io.loadWeights)`,
        d.files.layersModel
          ? `  ${d.files.layersModel}                          tf.loadLayersModel('file://${out}/${d.files.layersModel}') (or over http in a browser)`
          : `  (no model.json: ${d.layersModelNote})`,
        `  metatrain.json                      the model, task, config and how to adapt it (SGD α = ${d.adaptation.innerLr}, ${d.adaptation.steps} steps)`,
      ];
      process.stdout.write(`${lines.join("\n")}\n`);
    });
}

/** A path's kind: a directory, something else, absent, or under a file (ENOTDIR). */
function pathKind(p: string): "dir" | "file" | "absent" | "under-file" {
  try {
    return statSync(p).isDirectory() ? "dir" : "file";
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return "absent";
    if (code === "ENOTDIR") return "under-file";
    throw e;
  }
}

/** `--out` must be a directory that is absent or empty (or any directory with --force), under directories, before anything is read. */
function checkOutDir(given: string, out: string, force: boolean): void {
  const kind = pathKind(out);
  if (kind === "file") {
    throw new CliError(`--out ${given} is a file, not a directory`, ExitCodes.badInput, "give a directory to write the export into (absent or empty; it is created)");
  }
  if (kind === "dir" && !force && readdirSync(out).length > 0) {
    throw new CliError(`--out ${given} is not empty`, ExitCodes.badInput, "choose a new directory, or pass --force to overwrite the export files in it");
  }
  if (kind === "under-file" || kind === "absent") {
    // Creating --out fails with ENOTDIR when one of its ancestors is a file: name that file.
    let p = dirname(out);
    while (dirname(p) !== p && pathKind(p) !== "file" && pathKind(p) !== "dir") p = dirname(p);
    if (pathKind(p) === "file") throw new CliError(`--out ${given} is under ${p}, which is a file`, ExitCodes.badInput, "give a directory path whose parents are directories");
  }
}
