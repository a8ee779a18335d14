// Temporal's own cost of a round, for benchmarks: a workflow that fans out N no-op activities on the
// gpu queue and awaits them all, round after round — the shape of a meta-iteration with nothing of
// ours in it (no store, no tensors, no outer step). bench/orchestration.ts runs it beside the
// meta-training workflow on the same server and workers, so every figure there is also a ratio to it.
import { continueAsNew, proxyActivities, proxyLocalActivities } from "@temporalio/workflow";
import { TASK_QUEUES } from "../contracts/queues.js";
import { MAX_CONCURRENT_SHARDS } from "./meta-training.js";

/** The floor's one activity, registered by gpu and coordinator workers (workers/main.ts). */
export interface FloorActivities {
  /** Sleep `ms` (0: return at once) and return; stands for a shard whose compute is `ms`. */
  noop(input: { ms: number }): Promise<void>;
}

/** What the floor runs. */
export interface FloorInput {
  rounds: number;
  /** Activities per round. */
  shards: number;
  /** Sleep per activity, ms (default 0). */
  activityMs?: number;
  /** Rounds per execution before continuing as new (default: all of them in one). */
  continueAsNewEvery?: number;
  /** Rounds already done by earlier executions (set by continue-as-new). */
  done?: number;
  /**
   * After each round, one no-op as a local activity on the coordinator (default false): Temporal's
   * cost of the meta-training workflow's local outer step, with nothing of ours in it.
   */
  localStep?: boolean;
}

const { noop } = proxyActivities<FloorActivities>({
  taskQueue: TASK_QUEUES.gpu,
  startToCloseTimeout: "10 minutes",
  retry: { maximumAttempts: 3 },
});

const local = proxyLocalActivities<FloorActivities>({ startToCloseTimeout: "1 minute", retry: { maximumAttempts: 3 } });

/**
 * One round: every no-op at once, or — past the server's 2,000 pending activities per execution —
 * a sliding window of the meta-training workflow's own width (MAX_CONCURRENT_SHARDS).
 */
async function round(shards: number, ms: number): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < shards) {
      next++;
      await noop({ ms });
    }
  };
  await Promise.all(Array.from({ length: Math.min(MAX_CONCURRENT_SHARDS, shards) }, lane));
}

/** Fan out `shards` no-ops per round for `rounds` rounds; returns the rounds done. */
export async function orchestrationFloorWorkflow(input: FloorInput): Promise<number> {
  const every = input.continueAsNewEvery ?? input.rounds;
  let done = input.done ?? 0;
  for (let inThisRun = 0; done < input.rounds; done++, inThisRun++) {
    if (inThisRun === every) await continueAsNew<typeof orchestrationFloorWorkflow>({ ...input, done });
    await round(input.shards, input.activityMs ?? 0);
    if (input.localStep) await local.noop({ ms: 0 });
  }
  return done;
}
