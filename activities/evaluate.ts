// The evaluation activity (gpu queue): the learner's own test-time rule on held-out tasks.
import type { EvaluateInput, EvaluationSummary } from "../contracts/activities.js";
import { deriveSeed, Stream } from "../meta/rng.js";
import { parseRunConfig } from "../meta/run-config.js";
import { evaluationRecordKey } from "../storage/keys.js";
import { RECORD_FORMAT } from "../storage/record.js";
import { cancellation, nonFiniteLoss } from "./errors.js";
import type { ActivityKit } from "./ports.js";

/** `evaluate(input)`: `evalTasks` held-out tasks at `evalSteps` test-time steps, mean with a 95% CI. */
export function evaluateActivity(kit: ActivityKit) {
  const { log, context, builds, cache, now, putRecord } = kit;
  async function evaluate(input: EvaluateInput): Promise<EvaluationSummary> {
    const { iteration } = input;
    const ctx = context();
    const config = parseRunConfig(input.config);
    const { learner, setup } = builds.get(config);
    const lease = await cache.acquire(input.paramsKey);
    try {
      const r = await learner.evaluate(setup, lease.params, {
        tasks: config.evalTasks,
        steps: [config.evalSteps],
        // One held-out task stream per run, the same at every iteration, so evaluations compare.
        seed: deriveSeed(config.seed, Stream.evalTask),
        split: "test",
        onTask: (done, total) => {
          if (ctx.signal.aborted) throw cancellation(ctx.signal);
          ctx.heartbeat({ iteration, evaluated: done, of: total });
        },
      });
      const res = r.results[0]!;
      if (!Number.isFinite(res.loss.mean) || (res.accuracy && !Number.isFinite(res.accuracy.mean))) {
        throw nonFiniteLoss(`evaluation of iteration ${iteration} (${config.evalSteps} test-time steps)`);
      }
      log("evaluate", { runId: input.runId, iteration, loss: res.loss.mean, accuracy: res.accuracy?.mean });
      const accuracy = res.accuracy ? { accuracy: res.accuracy } : {};
      // Fixed key per (run, iteration): a retried evaluation rewrites the same record.
      await putRecord(evaluationRecordKey(input.runId, iteration), {
        format: RECORD_FORMAT, kind: "evaluation", runId: input.runId, iteration, steps: res.steps, loss: res.loss, ...accuracy, endedAt: now().getTime(),
      });
      return { iteration, steps: res.steps, loss: res.loss, ...accuracy, batchNorm: r.batchNorm };
    } finally {
      lease.release();
    }
  }
  return evaluate;
}
