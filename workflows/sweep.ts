// A hyperparameter sweep as one durable workflow: each trial is a child run of the meta-training
// workflow (same config schema, same checkpoints), successive halving decides which trials go on.
//
// Rung k trains every surviving trial to budgets[k] iterations — rung 0 from fresh parameters,
// later rungs as a new child run resuming from the trial's last checkpoint — at most
// `concurrency` child runs at once; then the best ⌊n/eta⌋ by held-out score go on (accuracy, or
// −loss for regression; ties to the lower trial index), the rest are stopped. Every decision is a
// pure function of the spec and the children's results in this history, so a coordinator or
// server crash replays to the same decisions and the same winner.
import { ApplicationFailure, defineQuery, executeChild, isCancellation, log, setHandler, workflowInfo } from "@temporalio/workflow";
import type { MetaTrainingResult } from "../contracts/activities.js";
import { TASK_QUEUES } from "../contracts/queues.js";
import {
  SweepSpecSchema,
  promote,
  rungBudgets,
  survivors,
  sweepTrials,
  trialConfig,
  trialRunId,
  type SweepInput,
  type SweepProgress,
  type SweepResult,
  type TrialStatus,
} from "../contracts/sweep.js";
import { ErrorTypes, innermostMessage } from "../contracts/errors.js";
import type { metaTrainingWorkflow } from "./meta-training.js";

export const sweepProgressQuery = defineQuery<SweepProgress>("sweepProgress");

/** A child run's held-out score: accuracy when it has one, else −loss (higher is better). */
function scoreOf(r: MetaTrainingResult): number {
  const e = r.evaluation;
  if (!e) return Number.NaN;
  return e.accuracy ? e.accuracy.mean : -e.loss.mean;
}

export async function sweepWorkflow(input: SweepInput): Promise<SweepResult> {
  const parsed = SweepSpecSchema.safeParse(input?.spec);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`invalid sweep spec: ${parsed.error.issues.map((i) => `${i.path.join(".") || "spec"}: ${i.message}`).join("; ")}`, ErrorTypes.InvalidRunConfig);
  }
  const spec = parsed.data;
  const { sweepId } = input;
  const budgets = rungBudgets(spec);
  const trials: TrialStatus[] = sweepTrials(spec).map((t) => ({ ...t, state: "pending", runs: [], scores: [], iteration: 0 }));
  const progress: SweepProgress = { sweepId, rung: 0, budgets, metric: "held-out accuracy (regression: −loss)", trials };
  setHandler(sweepProgressQuery, () => progress);

  let alive = trials.map((t) => t.index);
  for (let rung = 0; rung < budgets.length; rung++) {
    progress.rung = rung;
    const budget = budgets[rung]!;
    // At most `concurrency` child runs at once, started in trial order.
    let next = 0;
    let running = 0;
    const runTrial = async (index: number): Promise<void> => {
      const t = trials[index]!;
      const runId = trialRunId(sweepId, index, rung);
      t.state = "running";
      t.runs.push(runId);
      try {
        const r = await executeChild<typeof metaTrainingWorkflow>("metaTrainingWorkflow", {
          workflowId: runId,
          taskQueue: TASK_QUEUES.coordinator,
          args: [{ runId, config: trialConfig(spec, t, budget), ...(t.checkpoint ? { resumeFrom: t.checkpoint } : {}) }],
          // The sweep's runs share the gpu queue fairly with other work where the server balances
          // by fairness key (children and their activities inherit it); elsewhere the concurrency
          // limit bounds the sweep's share.
          priority: { fairnessKey: sweepId.slice(0, 64) },
        });
        t.scores.push(scoreOf(r));
        t.iteration = r.iteration;
        t.checkpoint = r.lastCheckpointKey || t.checkpoint;
        t.state = rung === budgets.length - 1 ? "finished" : "pending";
      } catch (e) {
        if (isCancellation(e)) throw e;
        t.state = "failed";
        t.scores.push(Number.NaN);
        t.error = innermostMessage(e);
        log.warn("trial failed", { sweepId, trial: index, rung, error: t.error });
      }
    };
    await new Promise<void>((resolve, reject) => {
      const pump = (): void => {
        while (running < spec.concurrency && next < alive.length) {
          const index = alive[next++]!;
          running++;
          runTrial(index).then(
            () => {
              running--;
              if (next >= alive.length && running === 0) resolve();
              else pump();
            },
            reject,
          );
        }
        if (alive.length === 0) resolve();
      };
      pump();
    });
    const scored = alive.map((index) => ({ index, score: trials[index]!.scores[rung] ?? Number.NaN }));
    if (rung === budgets.length - 1) {
      const [winner] = promote(scored, 1);
      if (winner === undefined) throw ApplicationFailure.nonRetryable(`every trial of sweep ${sweepId} failed; first: ${trials.find((t) => t.error)?.error ?? "?"}`, ErrorTypes.SweepFailed);
      progress.winner = winner;
      log.info("sweep finished", { sweepId, winner, values: trials[winner]!.values, score: trials[winner]!.scores.at(-1) });
      return { ...progress, winner };
    }
    const keep = promote(scored, survivors(alive.length, spec.eta));
    for (const index of alive) if (!keep.includes(index) && trials[index]!.state !== "failed") trials[index]!.state = "stopped";
    log.info("rung done", { sweepId, rung, budget, kept: keep, history: workflowInfo().historyLength });
    alive = keep;
  }
  throw ApplicationFailure.nonRetryable("unreachable: a sweep has at least one rung");
}
