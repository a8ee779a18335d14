// Test helpers for classification learners: random image tasks, and the query loss after k plain
// SGD steps computed the textbook way (one task, unbatched forward), the reference finite
// differences are taken of.
import * as tf from "@tensorflow/tfjs";
import type { Model } from "../../meta/models.js";
import type { Params } from "../../meta/params.js";
import { taskLoss, toTensors } from "../../meta/losses.js";
import { Rng } from "../../meta/rng.js";
import type { Task } from "../../meta/tasks/types.js";

/** A random `ways`-way task on [h, w, 1] images: `shots` support and query examples per class. */
export function randomTask(seed: number, ways: number, shots: number, shape: number[]): Task {
  const rng = new Rng(seed);
  const set = () => {
    const n = ways * shots;
    const size = shape.reduce((a, b) => a * b, 1);
    const x = new Float32Array(n * size).map(() => rng.next());
    const y = new Int32Array(n).map((_, i) => i % ways);
    return { x, xShape: [n, ...shape], y };
  };
  return { support: set(), query: set(), seed };
}

/** Query loss of `task` after `k` SGD steps of size `lr` from θ on its support set, one task, unbatched. */
export function postLoss(model: Model, theta: Params, task: Task, k: number, lr: number): number {
  return tf.tidy(() => {
    const s = toTensors(task.support, "classification", model.outputs);
    const q = toTensors(task.query, "classification", model.outputs);
    const keys = Object.keys(theta);
    let phi = keys.map((n) => theta[n]!);
    const lossOn = (x: tf.Tensor, y: tf.Tensor) => (...v: tf.Tensor[]) => {
      const p: Params = {};
      keys.forEach((n, j) => (p[n] = v[j]!));
      return taskLoss("classification", model.forward(p, x), y);
    };
    for (let i = 0; i < k; i++) {
      const g = tf.grads(lossOn(s.x, s.y))(phi);
      phi = phi.map((t, j) => tf.sub(t, tf.mul(g[j]!, lr)));
    }
    return lossOn(q.x, q.y)(...phi).dataSync()[0]!;
  });
}
