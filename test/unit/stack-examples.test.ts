// Episode tensors built in JS (meta/losses.ts): the same values as tfjs's oneHot + stack, no leaks.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { stackExamples, toTensors, disposeExamples } from "../../meta/losses.js";
import { Rng } from "../../meta/rng.js";
import type { Examples } from "../../meta/tasks/types.js";
import { useCpu } from "../helpers/tf.js";

before(useCpu);

function examples(seed: number, kind: "classification" | "regression"): Examples {
  const rng = new Rng(seed);
  return {
    x: Float32Array.from({ length: 6 * 4 }, () => rng.normal()),
    xShape: [6, 2, 2],
    y: kind === "classification" ? Int32Array.from({ length: 6 }, () => rng.int(3)) : Float32Array.from({ length: 6 * 2 }, () => rng.normal()),
  };
}

for (const kind of ["classification", "regression"] as const) {
  test(`${kind}: stacked and single-task tensors equal tf.oneHot + tf.stack exactly`, () => {
    const outputs = kind === "classification" ? 3 : 2;
    const parts = [1, 2, 3].map((s) => examples(s, kind));
    const before = tf.memory().numTensors;
    const got = stackExamples(parts, kind, outputs);
    tf.tidy(() => {
      const x = tf.stack(parts.map((p) => tf.tensor(p.x, p.xShape)));
      const y = tf.stack(parts.map((p) => (kind === "classification" ? tf.cast(tf.oneHot(tf.tensor1d(p.y as Int32Array, "int32"), outputs), "float32") : tf.tensor(p.y as Float32Array, [6, outputs]))));
      assert.deepEqual(got.x.shape, x.shape);
      assert.deepEqual(got.x.dataSync(), x.dataSync());
      assert.deepEqual(got.y.shape, y.shape);
      assert.deepEqual(got.y.dataSync(), y.dataSync());
      if (kind === "classification") {
        assert.deepEqual(got.labels!.shape, [3, 6]);
        assert.deepEqual(Array.from(got.labels!.dataSync()), parts.flatMap((p) => Array.from(p.y)));
      }
      const one = toTensors(parts[1]!, kind, outputs);
      assert.deepEqual(one.y.dataSync(), tf.unstack(y)[1]!.dataSync());
      disposeExamples(one);
    });
    disposeExamples(got);
    assert.equal(tf.memory().numTensors, before);
  });
}

test("tasks of different shapes are refused, saying which", () => {
  const a = examples(1, "classification");
  const b = { ...examples(2, "classification"), xShape: [6, 4] };
  assert.throws(() => stackExamples([a, b], "classification", 3), /\[6,4\] and \[6,2,2\]/);
});
