// Test helper: a registered learner's shard runner over a hand-made model and task kind. Reptile
// defaults here to plain SGD on the whole support set, the inner loop the older tests derive by hand.
import { runnerFor as engineRunnerFor } from "../../meta/run-config.js";

export function runnerFor(o: Parameters<typeof engineRunnerFor>[0]): ReturnType<typeof engineRunnerFor> {
  return engineRunnerFor({ ...o, options: o.options ?? (o.algorithm === "reptile" ? { innerOptimizer: "sgd" } : undefined) });
}
