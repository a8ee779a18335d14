// Second-order MAML meta-gradients on classification, through the product's own models (the
// Omniglot-style MLP with batch norm, and Conv4 with batch norm and max-pooling), against finite
// differences. These exercise the gradients meta/gradients.ts registers (conv, max-pool, softmax).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { runnerFor } from "../helpers/learners.js";
import { conv4, mlp, type Model } from "../../meta/models.js";
import { dispose } from "../../meta/params.js";
import type { Task } from "../../meta/tasks/types.js";
import { dot, randomDirection, shifted, useCpu } from "../helpers/tf.js";
import { postLoss, randomTask } from "../helpers/classification.js";

before(useCpu);

/**
 * Relative errors of MAML's and first-order MAML's directional derivatives against central
 * differences along `dirs` random unit directions. ε = 1e-3: float32 rounding of a loss near
 * 1 is ~1e-7, i.e. ~1e-4 in the quotient, and the O(ε²) truncation is smaller still. ReLU and
 * max-pool make the loss piecewise smooth; a kink inside ±ε would spoil one direction, so the
 * caller allows for that explicitly.
 */
async function fdErrors(model: Model, task: Task, k: number, lr: number, dirs: number, eps = 1e-3) {
  const theta = model.init(21);
  const maml = runnerFor({ algorithm: "maml", model, kind: "classification", innerSteps: k, innerLr: lr });
  const fo = runnerFor({ algorithm: "fomaml", model, kind: "classification", innerSteps: k, innerLr: lr });
  const g2 = (await maml.runShard(theta, [task])).sum;
  const g1 = (await fo.runShard(theta, [task])).sum;
  const second: number[] = [];
  const first: number[] = [];
  for (let d = 0; d < dirs; d++) {
    const v = randomDirection(theta, 300 + d);
    const plus = shifted(theta, v, eps);
    const minus = shifted(theta, v, -eps);
    const fd = (postLoss(model, plus, task, k, lr) - postLoss(model, minus, task, k, lr)) / (2 * eps);
    const scale = Math.max(5e-2, Math.abs(fd));
    if (process.env.FD_DEBUG) console.log({ fd, maml: dot(g2, v), fo: dot(g1, v) });
    second.push(Math.abs(dot(g2, v) - fd) / scale);
    first.push(Math.abs(dot(g1, v) - fd) / scale);
    dispose(v, plus, minus);
  }
  dispose(theta, g1, g2);
  return { second, first };
}

test("MAML meta-gradient, MLP with batch norm, 3-way classification, 2 inner steps", async () => {
  const model = mlp({ sizes: [64, 32, 16, 3], batchNorm: true, inputShape: [8, 8, 1] });
  const { second, first } = await fdErrors(model, randomTask(5, 3, 2, [8, 8, 1]), 2, 0.5, 4);
  assert.ok(Math.max(...second) < 2e-2, `MAML vs finite differences: ${second}`);
  assert.ok(Math.max(...first) > 5 * Math.max(...second), `first-order should differ: ${first} vs ${second}`);
});

test("MAML meta-gradient, Conv4 (4 filters, batch norm, max-pool), 3-way, 1 inner step", async () => {
  const model = conv4({ inputShape: [16, 16, 1], outputs: 3, filters: 4 });
  const { second, first } = await fdErrors(model, randomTask(6, 3, 2, [16, 16, 1]), 1, 0.1, 4, 1e-4);
  // At most one of four directions may cross a ReLU or max-pool kink; the rest must agree.
  const good = second.filter((e) => e < 2e-2).length;
  assert.ok(good >= 3, `MAML vs finite differences on Conv4: ${second}`);
  assert.ok(Math.max(...first) > 5 * Math.min(...second), `first-order should differ: ${first} vs ${second}`);
});

test("MAML meta-gradient, Conv4 with stride-2 convolutions and batch norm", async () => {
  // 32×32 inputs leave 2×2 maps after four stride-2 convs, so the last batch norm averages 24
  // values per channel rather than 6 (with 6 its variance can be tiny and the loss steep).
  const model = conv4({ inputShape: [32, 32, 1], outputs: 3, filters: 4, downsample: "stride" });
  const { second } = await fdErrors(model, randomTask(7, 3, 2, [32, 32, 1]), 1, 0.1, 4, 1e-4);
  const good = second.filter((e) => e < 2e-2).length;
  assert.ok(good >= 3, `MAML vs finite differences on strided Conv4: ${second}`);
});
