// The Gaussian MLP policy of MAML §5.3 (rllab's GaussianMLPPolicy as cbfinn/maml_rl configures it):
// the mean is an observation → 100 → 100 → action ReLU MLP with a linear output, the standard
// deviation a learned, state-independent vector exp(logstd). Weights Glorot-uniform and biases zero
// (Lasagne's defaults, which rllab uses), logstd initialised to log 1 = 0. `forward` gives the mean.
import * as tf from "@tensorflow/tfjs";
import { z } from "zod";
import { mlp, uniformTensor, type Model, type ModelSpec } from "../models.js";
import type { Params } from "../params.js";
import { Rng } from "../rng.js";

/** The name of the policy's log standard deviation parameter, shape [actions]. */
export const LOG_STD = "logstd";

export interface GaussianMlpOptions {
  observations: number;
  actions: number;
  /** Hidden widths. Default [100, 100] (MAML §5.3). */
  hidden?: readonly number[];
  /** Initial log standard deviation. Default 0 (σ = 1, rllab's init_std = 1). */
  initLogStd?: number;
}

/** A Gaussian policy: `forward(params, obs)` is the mean [n, actions]; `params[LOG_STD]` the log σ. */
export function gaussianMlp(o: GaussianMlpOptions): Model {
  const sizes = [o.observations, ...(o.hidden ?? [100, 100]), o.actions];
  const net = mlp({ sizes });
  return {
    name: `gaussian-mlp-${sizes.join("-")}`,
    inputShape: [o.observations],
    outputs: o.actions,
    batchNorm: "none",
    init(seed: number): Params {
      const rng = new Rng(seed);
      const p: Params = {};
      for (let l = 0; l < sizes.length - 1; l++) {
        const [fanIn, fanOut] = [sizes[l]!, sizes[l + 1]!];
        p[`dense${l}/kernel`] = uniformTensor(rng, [fanIn, fanOut], Math.sqrt(6 / (fanIn + fanOut)));
        p[`dense${l}/bias`] = tf.zeros([fanOut]);
      }
      p[LOG_STD] = tf.fill([o.actions], o.initLogStd ?? 0);
      return p;
    },
    forward: (params, x) => net.forward(params, x),
  };
}

export const gaussianMlpSpec: ModelSpec<{ kind: "gaussian-mlp"; hidden: number[]; initLogStd: number }> = {
  kind: "gaussian-mlp",
  schema: z.object({
    kind: z.literal("gaussian-mlp").describe("Gaussian policy: ReLU MLP mean (linear output) and a learned state-independent log standard deviation (MAML §5.3, rllab GaussianMLPPolicy)."),
    hidden: z.array(z.number().int().min(1).max(4096)).min(1).max(8).default([100, 100]).describe("gaussian-mlp hidden layer widths (MAML §5.3: 100, 100)."),
    initLogStd: z.number().min(-10).max(5).default(0).describe("gaussian-mlp initial log standard deviation (rllab: log 1 = 0)."),
  }),
  summary: "Gaussian MLP policy, 100-100 ReLU mean and learned log σ (MAML §5.3)",
  fits: ["rl"],
  build: (o, f) => gaussianMlp({ observations: f.inputShape[0]!, actions: f.outputs, hidden: o.hidden, initLogStd: o.initLogStd }),
};
