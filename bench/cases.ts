// The inner-loop benchmark cases, defined once: bench/throughput.ts times them on tfjs backends,
// bench/vs-torch.ts times them on tfjs and (through bench/torch-reference.py) on PyTorch.
import { conv4, omniglotMlp, sinusoidMlp, type Model } from "../meta/models.js";
import { sinusoidFamily } from "../meta/tasks/sinusoid.js";
import { omniglotFamily } from "../meta/tasks/omniglot.js";
import { loadOmniglot } from "../storage/datasets.js";
import type { TaskFamily } from "../meta/tasks/types.js";
import * as tf from "@tensorflow/tfjs";
import type { Params } from "../meta/params.js";
import { runnerFor, type RunConfigInput } from "../meta/run-config.js";
import type { Task } from "../meta/tasks/types.js";
import { alphaKey } from "../meta/algorithms/meta-sgd.js";
import { dispose } from "../meta/params.js";
import { median } from "./common.js";

/** The architecture of a case as plain JSON, enough for another framework to build the same net. */
export type ModelSpecJson =
  | { kind: "mlp"; sizes: number[]; batchNorm: boolean }
  | { kind: "conv4"; inputShape: [number, number, number]; filters: number; outputs: number; downsample: "maxpool"; batchNorm: boolean; /** false: the embedding alone (metric learners). Default true. */ classifier?: boolean };

export interface BenchCase {
  /** Short id used in result files and tables. */
  id: string;
  label: string;
  model: Model;
  spec: ModelSpecJson;
  family: TaskFamily;
  innerSteps: number;
  innerLr: number;
  /** Tasks per shard. */
  shard: number;
  /** The algorithms timed on this case (of BENCH_ALGORITHMS). */
  algorithms: readonly string[];
  /** Config the learners' checks need beyond the model passed in (the embedding case's task and model kind). */
  config?: RunConfigInput;
}

/**
 * The algorithms both frameworks implement for these cases. Reptile: plain SGD on the whole
 * support set. Meta-SGD: α = innerLr everywhere (its default), second order. ANIL: the head (the
 * last linear layer) adapted, second order. Prototypical networks: on the embedding case only.
 */
export const BENCH_ALGORITHMS = ["maml", "fomaml", "reptile", "meta-sgd", "anil", "protonet"] as const;
/** The gradient-based learners, timed on the classifier cases. */
const GRADIENT_BASED = ["maml", "fomaml", "reptile", "meta-sgd", "anil"];

/**
 * The cases of issue 14's table: sinusoid (MAML §5.1), the Omniglot MLP with batch norm and
 * Conv4 (64 filters, max-pool, batch norm), both 5-way 1-shot with 15 queries and 5 inner steps.
 * `shard` is the MLP cases' shard size; Conv4 runs shards of `conv4Shard` (default 2).
 */
export function benchCases(o: { shard?: number; conv4?: boolean; conv4Shard?: number } = {}): BenchCase[] {
  const shard = o.shard ?? 32;
  const omni = omniglotFamily(loadOmniglot(), { ways: 5, shots: 1, queryShots: 15, split: "vinyals" });
  const out: BenchCase[] = [
    { id: "sinusoid", label: "sinusoid 1-40-40-1, K=10, 1 step", model: sinusoidMlp(), spec: { kind: "mlp", sizes: [1, 40, 40, 1], batchNorm: false }, family: sinusoidFamily({ shots: 10 }), innerSteps: 1, innerLr: 0.01, shard, algorithms: GRADIENT_BASED },
    { id: "omniglot-mlp", label: "omniglot MLP 784-256-128-64-64-5 (BN), 5-way 1-shot, 15 query, 5 steps", model: omniglotMlp(5), spec: { kind: "mlp", sizes: [784, 256, 128, 64, 64, 5], batchNorm: true }, family: omni, innerSteps: 5, innerLr: 0.4, shard, algorithms: GRADIENT_BASED },
  ];
  if (o.conv4) {
    out.push({ id: "omniglot-conv4", label: "omniglot Conv4 (64, maxpool, BN), 5-way 1-shot, 15 query, 5 steps", model: conv4({ outputs: 5, taskBatched: true }), spec: { kind: "conv4", inputShape: [28, 28, 1], filters: 64, outputs: 5, downsample: "maxpool", batchNorm: true }, family: omni, innerSteps: 5, innerLr: 0.4, shard: o.conv4Shard ?? 2, algorithms: GRADIENT_BASED });
    // Prototypical networks' hot path: the Conv4-64 embedding of an episode's support and query
    // images in one batch and the query loss over distances to the prototypes (no inner loop).
    out.push({ id: "omniglot-conv4-embedding", label: "omniglot Conv4-64 embedding (maxpool, BN), 5-way 1-shot, 15 query", model: conv4({ outputs: 5, classifier: false }), spec: { kind: "conv4", inputShape: [28, 28, 1], filters: 64, outputs: 5, downsample: "maxpool", batchNorm: true, classifier: false }, family: omni, innerSteps: 1, innerLr: 0.01 /* unused: no inner loop */, shard: o.conv4Shard ?? 2, algorithms: ["protonet"], config: { task: { family: "omniglot", ways: 5, shots: 1, queryShots: 15 }, model: { kind: "conv4-embedding", downsample: "maxpool", batchNorm: true, filters: 64 } } });
  }
  return out;
}

/** A case's initial meta-parameters for `algorithm`: the model's, plus Meta-SGD's step sizes. */
export function benchParams(c: BenchCase, algorithm: string): Params {
  const theta = c.model.init(3);
  if (algorithm !== "meta-sgd") return theta;
  const out: Params = { ...theta };
  for (const k of Object.keys(theta)) out[alphaKey(k)] = tf.fill(theta[k]!.shape, c.innerLr);
  return out;
}

/** The case `id` (of benchCases, Conv4 cases built when the id names them) that times every one of `algorithms`; else an error naming the choices. */
export function benchCase(id: string, algorithms: readonly string[]): BenchCase {
  const cases = benchCases({ conv4: id.includes("conv4") });
  const c = cases.find((x) => x.id === id);
  if (!c) throw new Error(`no case '${id}': one of ${cases.map((x) => x.id).join(", ")}`);
  const missing = algorithms.filter((a) => !c.algorithms.includes(a));
  if (missing.length) throw new Error(`case '${id}' times ${c.algorithms.join(", ")}, not '${missing.join(", ")}'`);
  return c;
}

/** The tasks of one benchmark shard of `c` (seed 7, training split, iteration 0). */
export const benchShardTasks = (c: BenchCase): Task[] => Array.from({ length: c.shard }, (_, i) => c.family.task(7, "train", 0, i));

/** `algorithm`'s shard runner on case `c` as the benchmarks time it (Reptile: plain SGD on the whole support set). */
export function benchRunner(c: BenchCase, algorithm: string, batchTasks: boolean): ReturnType<typeof runnerFor> {
  return runnerFor({
    algorithm, model: c.model, kind: c.family.kind, innerSteps: c.innerSteps, innerLr: c.innerLr, batchTasks, classes: c.family.outputs,
    ...(c.config ? { config: c.config } : {}),
    ...(algorithm === "reptile" ? { options: { innerOptimizer: "sgd" } } : {}),
  });
}

/** A setting of the code under test (a kernel, a threshold), applied before each shard it times. */
export interface BenchVariant {
  name: string;
  apply: () => void;
}

/**
 * ms a shard of each of `algorithms` on case `c` under each variant, alternated shard by shard in
 * this process (two warm-up shards each first), so the host's drift hits every variant alike:
 * medians of `rounds`, one line per algorithm with each variant's ratio to the first.
 */
export async function alternateShards(c: BenchCase, algorithms: readonly string[], variants: readonly BenchVariant[], o: { rounds: number; batched: boolean }): Promise<Record<string, Record<string, number>>> {
  const out: Record<string, Record<string, number>> = {};
  for (const algorithm of algorithms) {
    const tasks = benchShardTasks(c);
    const theta = benchParams(c, algorithm);
    const runner = benchRunner(c, algorithm, o.batched);
    const shard = async (v: BenchVariant) => {
      v.apply();
      const t0 = performance.now();
      dispose((await runner.runShard(theta, tasks)).sum);
      return performance.now() - t0;
    };
    for (const v of variants) for (let i = 0; i < 2; i++) await shard(v);
    const times = variants.map(() => [] as number[]);
    for (let r = 0; r < o.rounds; r++) for (const [i, v] of variants.entries()) times[i]!.push(await shard(v));
    const ms = times.map(median);
    out[algorithm] = Object.fromEntries(variants.map((v, i) => [v.name, ms[i]!]));
    console.log(`  ${algorithm}${runner.batched ? "" : " (one by one)"}: ` + variants.map((v, i) => `${v.name} ${ms[i]!.toFixed(0)} ms (${(ms[i]! / ms[0]!).toFixed(2)}×)`).join(", "));
    dispose(theta);
  }
  return out;
}
