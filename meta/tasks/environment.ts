// Task families over an environment (task kind `rl`): a task is a goal drawn from
// (seed, split, iteration, taskIndex) plus the seed its rollouts draw their noise from. The
// environment file supplies the dynamics; this file is the one place that turns it into a family.
import { z } from "zod";
import type { Environment } from "../envs/types.js";
import { deriveSeed, Rng, Stream } from "../rng.js";
import type { Examples, FamilySpec, Task, TaskFamily, TaskSplit } from "./types.js";

const SPLIT_TAG: Record<TaskSplit, number> = { train: Stream.trainTask, val: Stream.valTask, test: Stream.evalTask };

const noExamples = (observationSize: number): Examples => ({ x: new Float32Array(0), xShape: [0, observationSize], y: new Float32Array(0) });

/** The task family of an environment: pure, each task one goal and one rollout seed. */
export function environmentFamily(env: Environment): TaskFamily {
  return {
    name: env.name,
    kind: "rl",
    inputShape: [env.observationSize],
    outputs: env.actionSize,
    env,
    task(seed: number, split: TaskSplit, iteration: number, taskIndex: number): Task {
      const goal = env.sampleGoal(new Rng(deriveSeed(seed, SPLIT_TAG[split], iteration, taskIndex)));
      return {
        support: noExamples(env.observationSize),
        query: noExamples(env.observationSize),
        goal,
        // The same derivation as every family's adaptation stream: rollouts (meta/rl/rollouts.ts)
        // derive one stream per rollout batch from it, so a retried task samples the same actions.
        seed: deriveSeed(seed, Stream.adaptation, SPLIT_TAG[split], iteration, taskIndex),
      };
    },
  };
}

/**
 * The registry entry of an environment: `task.family: <family>` plus the environment's own options
 * (`shape`: zod fields with defaults), built into an `environmentFamily`.
 */
export function environmentSpec<F extends string, S extends z.ZodRawShape>(o: {
  family: F;
  /** What `task.family: <family>` means, for the schema's help. */
  describe: string;
  summary: string;
  shape: S;
  build: (options: z.infer<z.ZodObject<S>>) => Environment;
}): FamilySpec<{ family: F } & z.infer<z.ZodObject<S>>> {
  return {
    family: o.family,
    schema: z.object({ family: z.literal(o.family).describe(o.describe), ...o.shape }),
    kind: "rl",
    summary: o.summary,
    shape(options) {
      const env = o.build(options);
      return { inputShape: [env.observationSize], outputs: env.actionSize };
    },
    build: (options) => environmentFamily(o.build(options)),
  };
}
