// `metatrain report <run…> [--out report.html] [--tensorboard DIR]`: a run's (or several runs') record as one self-contained HTML file and/or TensorBoard scalars.
import { writeFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Command } from "commander";
import { isStoreError } from "../../storage/blobstore.js";
import { latestCheckpointKey } from "../../storage/keys.js";
import { readRunHistory } from "../../storage/record.js";
import { CliError, ExitCodes } from "../errors.js";
// Rendering (Vega), the paper figures (the learner registry, so TensorFlow.js) and TensorBoard are
// imported when the command runs: `metatrain --help` and every other command start without them.
import type { ReportRun } from "../report/html.js";
import { displayStoreUri, openCliStore, parseCheckpointRef, storeCliError } from "../store.js";

export function registerReport(program: Command): void {
  program
    .command("report")
    .argument("<run...>", "run ids (in METATRAIN_STORE) or <store>/runs/<id> URIs; several runs overlay their curves")
    .description(
      "report runs from their records in the store (no Temporal needed): learning curves before/after adaptation, held-out evaluations with 95% CIs, " +
        "time per iteration (compute vs orchestration), shard durations per worker, the config and the preset's published figure",
    )
    .option("--out <file.html>", "write one self-contained HTML file (inline SVG, no network)")
    .option("--tensorboard <dir>", "write TensorBoard event files, <dir>/<run>/events.out.tfevents.0.metatrain (then: tensorboard --logdir <dir>)")
    .addHelpText("after", "\nExamples:\n  metatrain report sinusoid-maml-1 --out report.html\n  metatrain report run-a run-b --out compare.html --tensorboard ./tb")
    .action(async (args: string[], opts: { out?: string; tensorboard?: string }) => {
      if (opts.out === undefined && opts.tensorboard === undefined) {
        throw new CliError("report needs --out <file.html>, --tensorboard <dir>, or both", ExitCodes.badInput, "e.g. metatrain report <run> --out report.html");
      }
      const [{ renderReport }, { writeTensorboard }] = await Promise.all([import("../report/html.js"), import("../report/tensorboard.js")]);
      const runs: ReportRun[] = [];
      for (const arg of args) runs.push(await readRun(arg));
      const now = new Date();
      if (opts.out !== undefined) {
        const out = resolve(opts.out);
        writeOrFail(out, await renderReport(runs, now));
        process.stdout.write(`wrote ${out} (${runs.map((r) => `${r.history.runId}: ${r.history.iterations.length} iterations, ${r.history.evaluations.length} evaluations`).join("; ")})\n`);
      }
      if (opts.tensorboard !== undefined) {
        const dir = resolve(opts.tensorboard);
        for (const r of runs) {
          let path: string;
          try {
            path = writeTensorboard(dir, r.history, now);
          } catch (e) {
            throw new CliError(`cannot write TensorBoard files under ${dir}: ${(e as Error).message}`, ExitCodes.badInput, "give a directory you can write to");
          }
          process.stdout.write(`wrote ${path}\n`);
        }
        process.stdout.write(`view with: tensorboard --logdir ${dir}\n`);
      }
    });
}

/** A run's record (and, from its latest checkpoint, its config) from the store the argument names. */
async function readRun(arg: string): Promise<ReportRun> {
  const ref = parseCheckpointRef(arg);
  const store = await openCliStore(ref.storeUri);
  const where = displayStoreUri(ref.storeUri);
  let history;
  try {
    history = await readRunHistory(store, ref.runId);
  } catch (e) {
    if (isStoreError(e) && e.code === "BLOB_NOT_FOUND") {
      throw new CliError(`no record of run '${ref.runId}' in ${where}`, ExitCodes.notFound, "check the run id (metatrain list) and METATRAIN_STORE (the workers' store), or give <store>/runs/<id>");
    }
    throw storeCliError(e, `cannot read the record of run '${ref.runId}'`);
  }
  let config: unknown;
  try {
    const pointer = JSON.parse(new TextDecoder().decode(await store.get(latestCheckpointKey(ref.runId)))) as { manifestKey?: string };
    if (typeof pointer.manifestKey === "string") config = (JSON.parse(new TextDecoder().decode(await store.get(pointer.manifestKey))) as { config?: unknown }).config;
  } catch (e) {
    // A run that has not checkpointed yet has a record but no config to show: the report says so.
    if (!(isStoreError(e) && e.code === "BLOB_NOT_FOUND")) throw storeCliError(e, `cannot read the latest checkpoint of run '${ref.runId}'`);
  }
  const paper = config === undefined ? undefined : (await import("../report/paper.js")).paperFigureFor(config);
  return { history, store: where, ...(config === undefined ? {} : { config }), ...(paper ? { paper } : {}) };
}

function writeOrFail(path: string, text: string): void {
  try {
    writeFileSync(path, text);
  } catch (e) {
    throw new CliError(`cannot write ${path}: ${(e as Error).message}`, ExitCodes.badInput, "give --out a file path in a directory that exists and that you can write to");
  }
}
