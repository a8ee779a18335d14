// Workflow sinks that report run-level facts (progress, latest metrics, evaluation, pause/end) from the workflow to this process's metrics.
//
// The workflow owns these facts (round.metrics, evaluations, pause, cancel) but must stay
// deterministic and free of prom-client: it calls `proxySinks<MetatrainSinks>()` (workflow side,
// `import type` only), the worker injects `metricsSinks(metrics)`. Sink calls are skipped during
// replay (`callDuringReplay: false`), so a replayed history does not report stale values.
import type { InjectedSinks } from "@temporalio/worker";
import type { EvaluationReport, MetricsPort, RunProgressReport, RunState } from "./metrics.js";

/** The sinks the workflow may call. Workflow side: `const { metatrainMetrics } = proxySinks<MetatrainSinks>();`. */
export type MetatrainSinks = {
  metatrainMetrics: {
    /** After each meta-iteration's outer step: `{ runId, iteration: s.iteration, iterations: cfg.iterations, latest: round.metrics }`. */
    progress(p: RunProgressReport): void;
    /** After each evaluation: `{ runId, iteration, loss, accuracy }` from the EvaluationSummary. */
    evaluation(e: EvaluationReport): void;
    /** On pause (`paused`), resume (`running`), the end of the run (`finished`, `cancelled`) or a failure (`failed`). */
    state(runId: string, state: RunState): void;
  };
};

/** The worker side: pass as `Worker.create({ ..., sinks: metricsSinks(metrics) })` on the coordinator. */
export function metricsSinks(metrics: MetricsPort): InjectedSinks<MetatrainSinks> {
  return {
    metatrainMetrics: {
      progress: { fn: (_info, p) => metrics.setRunProgress(p), callDuringReplay: false },
      evaluation: { fn: (_info, e) => metrics.observeEvaluation(e), callDuringReplay: false },
      state: { fn: (_info, runId, state) => metrics.setRunState(runId, state), callDuringReplay: false },
    },
  };
}
