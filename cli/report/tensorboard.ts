// A run's record as TensorBoard scalars: one event file per run under <dir>/<runId>/, the same
// numbers the HTML report draws (tags below), step = iteration.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { iterationTimes, type RunHistory } from "../../storage/record.js";
import { eventFile, type ScalarPoint } from "./tfevents.js";

/** Every scalar of a run's record, in step order per tag. */
export function historyScalars(h: RunHistory): ScalarPoint[] {
  const out: ScalarPoint[] = [];
  const add = (tag: string, step: number, value: number | undefined, wallMs: number): void => {
    if (value !== undefined && Number.isFinite(value)) out.push({ tag, step, value, wallTime: wallMs / 1000 });
  };
  const times = iterationTimes(h.iterations);
  h.iterations.forEach((r, i) => {
    add("train/loss_before_adaptation", r.iteration, r.preLoss, r.endedAt);
    add("train/loss_after_adaptation", r.iteration, r.postLoss, r.endedAt);
    add("train/accuracy_before_adaptation", r.iteration, r.preAccuracy, r.endedAt);
    add("train/accuracy_after_adaptation", r.iteration, r.postAccuracy, r.endedAt);
    add("train/meta_lr", r.iteration, r.metaLr, r.endedAt);
    add("train/step_size", r.iteration, r.stepSize, r.endedAt);
    add("time/iteration_seconds", r.iteration, times[i]!.seconds, r.endedAt);
    add("time/compute_seconds", r.iteration, times[i]!.compute, r.endedAt);
    add("time/orchestration_seconds", r.iteration, times[i]!.orchestration, r.endedAt);
    add("time/slowest_shard_seconds", r.iteration, Math.max(0, ...r.shards.map((s) => s.seconds)), r.endedAt);
  });
  for (const e of h.evaluations) {
    add("eval/loss", e.iteration, e.loss.mean, e.endedAt);
    add("eval/loss_ci95", e.iteration, e.loss.ci95, e.endedAt);
    add("eval/accuracy", e.iteration, e.accuracy?.mean, e.endedAt);
    add("eval/accuracy_ci95", e.iteration, e.accuracy?.ci95, e.endedAt);
  }
  return out;
}

/** Write `<dir>/<runId>/events.out.tfevents.0.metatrain` (replacing one written before); returns its path. */
export function writeTensorboard(dir: string, h: RunHistory, now: Date): string {
  const runDir = join(dir, h.runId);
  mkdirSync(runDir, { recursive: true });
  // A fixed name per run: writing again replaces the file rather than doubling every point.
  const path = join(runDir, "events.out.tfevents.0.metatrain");
  writeFileSync(path, eventFile(historyScalars(h), now.getTime() / 1000));
  return path;
}
