// The activities of a meta-training run as a factory over ports (a blob store, a log, the activity
// context, metrics); one file per activity group, all sharing one kit; the worker wires real ports.
import type { MetaTrainingActivities } from "../contracts/activities.js";
import { checkpointActivities } from "./checkpoints.js";
import { isStoreAccessDenied, toActivityFailure, workerStoreAccessDenied } from "./errors.js";
import { evaluateActivity } from "./evaluate.js";
import { activityKit, type ActivityDeps } from "./ports.js";
import { runShardActivity } from "./shards.js";
import { initRunActivity, outerStepActivity } from "./state.js";

export { ActivityErrorTypes } from "./errors.js";
export { build, FILE_DATA } from "./build.js";
export { CHECKPOINT_FORMAT, type LatestPointer } from "./checkpoints.js";
export type { ActivityContext, ActivityDeps, ActivityLog } from "./ports.js";

/** Run `fn`, mapping whatever it throws through the one error mapping. */
const mapped =
  <I, O>(fn: (input: I) => Promise<O>) =>
  async (input: I): Promise<O> => {
    try {
      return await fn(input);
    } catch (e) {
      throw toActivityFailure(e);
    }
  };

/** A gpu activity: a store refusal is this worker's problem (reported, and retried elsewhere), not the run's. */
const onGpuWorker =
  <I, O>(fn: (input: I) => Promise<O>, denied: ActivityDeps["onStoreAccessDenied"]) =>
  async (input: I): Promise<O> => {
    try {
      return await fn(input);
    } catch (e) {
      if (denied && isStoreAccessDenied(e)) {
        denied.report(e);
        throw workerStoreAccessDenied(e, denied.worker);
      }
      throw toActivityFailure(e);
    }
  };

/** Every activity of a run over the given ports; errors leave as typed ApplicationFailures (see errors.ts). */
export function createActivities(deps: ActivityDeps): MetaTrainingActivities {
  const kit = activityKit(deps);
  const { writeCheckpoint, loadCheckpoint } = checkpointActivities(kit);
  return {
    initRun: mapped(initRunActivity(kit)),
    runShard: onGpuWorker(runShardActivity(kit), deps.onStoreAccessDenied),
    outerStep: mapped(outerStepActivity(kit)),
    writeCheckpoint: mapped(writeCheckpoint),
    evaluate: onGpuWorker(evaluateActivity(kit), deps.onStoreAccessDenied),
    loadCheckpoint: mapped(loadCheckpoint),
  };
}
