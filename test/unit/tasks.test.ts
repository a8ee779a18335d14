// Task families: sinusoid ranges and purity, the generic image-set family, Omniglot's splits on the real data.
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { sinusoidFamily } from "../../meta/tasks/sinusoid.js";
import { imageSetFamily, writeImage, type ImageSet } from "../../meta/tasks/imageset.js";
import { omniglotFamily, omniglotSplits, type OmniglotData } from "../../meta/tasks/omniglot.js";
import { defaultOmniglotDir, loadImageSet, loadOmniglot } from "../../storage/datasets.js";
import type { Task } from "../../meta/tasks/types.js";

const bytesOf = (a: Float32Array | Int32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);
function sameTask(a: Task, b: Task): boolean {
  return (
    bytesOf(a.support.x).equals(bytesOf(b.support.x)) &&
    bytesOf(a.support.y).equals(bytesOf(b.support.y)) &&
    bytesOf(a.query.x).equals(bytesOf(b.query.x)) &&
    bytesOf(a.query.y).equals(bytesOf(b.query.y)) &&
    a.support.xShape.join() === b.support.xShape.join() &&
    a.query.xShape.join() === b.query.xShape.join()
  );
}

test("sinusoid: amplitude, phase and x stay in the paper's ranges", () => {
  const fam = sinusoidFamily({ shots: 10 });
  for (let t = 0; t < 300; t++) {
    const { support, query } = fam.task(7, "train", t, t % 4);
    for (const ex of [support, query]) {
      assert.deepEqual(ex.xShape, [10, 1]);
      for (let i = 0; i < 10; i++) {
        const x = ex.x[i]!;
        assert.ok(x >= -5 && x < 5, `x ${x}`);
        assert.ok(Math.abs(ex.y[i]!) <= 5, `y ${ex.y[i]}`);
      }
    }
  }
  // With 200 points, max |y| of a task is its amplitude to within ~1%: over many tasks it spans ~[0.1, 5].
  const dense = sinusoidFamily({ shots: 200 });
  let maxAmp = 0;
  let minAmp = Infinity;
  for (let t = 0; t < 200; t++) {
    const { support } = dense.task(3, "train", t, 0);
    let m = 0;
    for (const v of support.y) m = Math.max(m, Math.abs(v));
    maxAmp = Math.max(maxAmp, m);
    minAmp = Math.min(minAmp, m);
  }
  assert.ok(maxAmp > 4.8 && maxAmp <= 5, `max amplitude ${maxAmp}`);
  assert.ok(minAmp >= 0.09 && minAmp < 0.5, `min amplitude ${minAmp}`);
});

test("sinusoid: fitted phase lies in [0, π]", () => {
  // Amplitude ≈ max |y|; the phase is then fitted by grid search over [−π, 2π] and must land in [0, π].
  const fam = sinusoidFamily({ shots: 400 });
  for (let t = 0; t < 20; t++) {
    const { support } = fam.task(11, "test", 0, t);
    let amp = 0;
    for (const v of support.y) amp = Math.max(amp, Math.abs(v));
    let best = { err: Infinity, phase: -1 };
    for (let k = -200; k <= 400; k++) {
      const phase = (k / 200) * Math.PI;
      let err = 0;
      for (let i = 0; i < 400; i++) err += (support.y[i]! - amp * Math.sin(support.x[i]! - phase)) ** 2;
      if (err < best.err) best = { err, phase };
    }
    assert.ok(best.phase >= -0.02 && best.phase <= Math.PI + 0.02, `phase ${best.phase}`);
  }
});

test("sinusoid: pure — same arguments same bytes, other task index or split differs", () => {
  const fam = sinusoidFamily();
  assert.ok(sameTask(fam.task(1, "train", 5, 2), sinusoidFamily().task(1, "train", 5, 2)));
  assert.ok(!sameTask(fam.task(1, "train", 5, 2), fam.task(1, "train", 5, 3)));
  assert.ok(!sameTask(fam.task(1, "train", 5, 2), fam.task(1, "test", 5, 2)));
  assert.ok(!sameTask(fam.task(1, "train", 5, 2), fam.task(2, "train", 5, 2)));
});

/** 3×3 images; class c has `perClass` images; image i's pixels are (i·9 + p) mod 256. */
function tinySet(classes: number, perClass: number, h = 3, w = 3): ImageSet {
  const px = h * w;
  const images = new Uint8Array(classes * perClass * px);
  for (let i = 0; i < images.length; i++) images[i] = i % 256;
  return {
    name: "tiny",
    height: h,
    width: w,
    images,
    classes: Array.from({ length: classes }, (_, c) => ({ name: `c${c}`, firstImage: c * perClass, imageCount: perClass })),
  };
}

test("image set: shapes, labels, shot-major order, distinct classes and images", () => {
  const set = tinySet(10, 6);
  const fam = imageSetFamily(set, { name: "tiny", ways: 3, shots: 2, queryShots: 3, splits: { train: [0, 1, 2, 3, 4, 5], val: [], test: [6, 7, 8, 9] } });
  assert.equal(fam.kind, "classification");
  assert.deepEqual(fam.inputShape, [3, 3, 1]);
  assert.equal(fam.outputs, 3);
  for (let t = 0; t < 50; t++) {
    const task = fam.task(9, t % 2 ? "train" : "test", t, 0);
    const d = fam.draw(9, t % 2 ? "train" : "test", t, 0);
    assert.deepEqual(task.support.xShape, [6, 3, 3, 1]);
    assert.deepEqual(task.query.xShape, [9, 3, 3, 1]);
    assert.ok(task.support.y instanceof Int32Array);
    assert.deepEqual([...task.support.y], [0, 1, 2, 0, 1, 2]);
    assert.deepEqual([...task.query.y], [0, 1, 2, 0, 1, 2, 0, 1, 2]);
    const pool = t % 2 ? [0, 1, 2, 3, 4, 5] : [6, 7, 8, 9];
    assert.equal(new Set(d.classes.map((c) => c.classIndex)).size, 3);
    for (let label = 0; label < 3; label++) {
      const ci = d.classes[label]!.classIndex;
      assert.ok(pool.includes(ci));
      assert.equal(d.classes[label]!.rotation, 0);
      const imgs = [...d.support[label]!, ...d.query[label]!];
      assert.equal(new Set(imgs).size, 5);
      for (const i of imgs) assert.ok(i >= ci * 6 && i < ci * 6 + 6);
      // Example j·ways + label holds image support[label][j], bytes / 255.
      for (let j = 0; j < 2; j++) {
        const img = d.support[label]![j]!;
        for (let p = 0; p < 9; p++) {
          assert.equal(task.support.x[(j * 3 + label) * 9 + p], Math.fround(set.images[img * 9 + p]! / 255));
        }
      }
    }
  }
  assert.ok(sameTask(fam.task(4, "train", 1, 1), fam.task(4, "train", 1, 1)));
  assert.ok(!sameTask(fam.task(4, "train", 1, 1), fam.task(4, "train", 1, 2)));
});

test("image set: rotation by k·90° is exact (3×3 example)", () => {
  const set: ImageSet = {
    name: "r",
    height: 3,
    width: 3,
    images: Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    classes: [{ name: "a", firstImage: 0, imageCount: 1 }],
  };
  const expected = [
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
    [3, 6, 9, 2, 5, 8, 1, 4, 7], // 90° counter-clockwise
    [9, 8, 7, 6, 5, 4, 3, 2, 1],
    [7, 4, 1, 8, 5, 2, 9, 6, 3],
  ];
  for (let k = 0; k < 4; k++) {
    const out = new Float32Array(9);
    writeImage(set, 0, k, out, 0);
    assert.deepEqual([...out].map((v) => Math.round(v * 255)), expected[k], `rotation ${k}`);
  }
  // Through the family: 2 base classes with rotations give 8 task classes and rotated pixels.
  const fam = imageSetFamily(tinySet(2, 2), { name: "rot", ways: 8, shots: 1, queryShots: 1, rotations: true, splits: { train: [0, 1], val: [], test: [] } });
  assert.equal(fam.classCount("train"), 8);
  const d = fam.draw(0, "train", 0, 0);
  assert.equal(new Set(d.classes.map((c) => `${c.classIndex}:${c.rotation}`)).size, 8);
  const task = fam.task(0, "train", 0, 0);
  for (let label = 0; label < 8; label++) {
    const want = new Float32Array(9);
    writeImage(fam.set, d.support[label]![0]!, d.classes[label]!.rotation, want, 0);
    assert.deepEqual(task.support.x.subarray(label * 9, label * 9 + 9), want);
  }
});

test("image set: clear errors for too few classes or images, bad indices, empty splits", () => {
  const set = tinySet(4, 3);
  const splits = { train: [0, 1, 2], val: [], test: [3] };
  assert.throws(() => imageSetFamily(set, { name: "e", ways: 2, shots: 1, queryShots: 1, splits }), /split 'test' has 1 classes, fewer than ways = 2/);
  assert.throws(
    () => imageSetFamily(set, { name: "e", ways: 2, shots: 2, queryShots: 2, splits: { train: [0, 1], val: [], test: [] } }),
    /has 3 images, but a task needs shots \+ queryShots = 2 \+ 2 = 4/,
  );
  assert.throws(() => imageSetFamily(set, { name: "e", ways: 2, shots: 1, queryShots: 1, splits: { train: [0, 9], val: [], test: [] } }), /names class 9/);
  assert.throws(() => imageSetFamily(set, { name: "e", ways: 2, shots: 1, queryShots: 1, splits: { train: [0, 0], val: [], test: [] } }), /twice/);
  assert.throws(
    () => imageSetFamily(tinySet(2, 2, 2, 3), { name: "e", ways: 2, shots: 1, queryShots: 1, rotations: true, splits: { train: [0, 1], val: [], test: [] } }),
    /square/,
  );
  const fam = imageSetFamily(set, { name: "e", ways: 2, shots: 1, queryShots: 1, splits: { train: [0, 1], val: [], test: [] } });
  assert.throws(() => fam.task(0, "val", 0, 0), /split 'val' has no classes/);
  assert.throws(
    () => imageSetFamily({ ...set, classes: [{ name: "x", firstImage: 10, imageCount: 5 }] }, { name: "e", ways: 1, shots: 1, queryShots: 0, splits: { train: [0], val: [], test: [] } }),
    /only 12 images/,
  );
});

test("user image set: loads the documented format, rejects bad sizes", () => {
  const dir = mkdtempSync(join(tmpdir(), "metatrain-imageset-"));
  try {
    const px = Uint8Array.from({ length: 5 * 2 * 3 }, (_, i) => i);
    writeFileSync(join(dir, "toy.2x3.u8"), px);
    const classes = [
      { name: "a", firstImage: 0, imageCount: 2 },
      { name: "b", firstImage: 2, imageCount: 3, group: "g" },
    ];
    writeFileSync(join(dir, "toy.index.json"), JSON.stringify({ format: "metatrain-imageset/1", name: "toy", height: 2, width: 3, classes }));
    const set = loadImageSet(join(dir, "toy.index.json"));
    assert.deepEqual([set.name, set.height, set.width, set.images.length], ["toy", 2, 3, 30]);
    assert.deepEqual(set.classes, classes);
    assert.equal(loadImageSet(join(dir, "toy.index.json")), set, "cached");
    const fam = imageSetFamily(set, { name: "toy", ways: 2, shots: 1, queryShots: 1, splits: { train: [0, 1], val: [], test: [] } });
    assert.deepEqual(fam.task(0, "train", 0, 0).support.xShape, [2, 2, 3, 1]);

    writeFileSync(join(dir, "odd.2x3.u8"), new Uint8Array(7));
    writeFileSync(join(dir, "odd.index.json"), JSON.stringify({ name: "odd", height: 2, width: 3, classes: [classes[0]] }));
    assert.throws(() => loadImageSet(join(dir, "odd.index.json")), /7 bytes, not a whole number of 2×3 images/);
    writeFileSync(join(dir, "short.2x3.u8"), new Uint8Array(12));
    writeFileSync(join(dir, "short.index.json"), JSON.stringify({ name: "short", height: 2, width: 3, classes }));
    assert.throws(() => loadImageSet(join(dir, "short.index.json")), /spans images 2\.\.4, but the set has only 2 images/);
    writeFileSync(join(dir, "none.index.json"), JSON.stringify({ name: "none", height: 2, width: 3, classes }));
    assert.throws(() => loadImageSet(join(dir, "none.index.json")), /pixel file .*none\.2x3\.u8 is missing/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const omniglotDir = defaultOmniglotDir();
const haveOmniglot = existsSync(join(omniglotDir, "background.index.json"));
// A developer without the data may skip these; CI has it beside the clone and must never skip.
if (!haveOmniglot && process.env.CI) throw new Error(`Omniglot not found at ${omniglotDir}: CI needs it (set METATRAIN_OMNIGLOT_DIR)`);
const skip = haveOmniglot ? false : `Omniglot not found at ${omniglotDir} (set METATRAIN_OMNIGLOT_DIR)`;

test("omniglot: both sets load with the README's counts", { skip }, () => {
  const data: OmniglotData = loadOmniglot();
  assert.equal(data.background.classes.length, 964);
  assert.equal(data.evaluation.classes.length, 659);
  assert.equal(data.background.images.length, 19280 * 784);
  assert.equal(loadOmniglot().background, data.background, "sets are cached per process");
});

test("omniglot: split counts and disjointness", { skip }, () => {
  const data = loadOmniglot();
  const disjoint = (a: readonly number[], b: readonly number[]): boolean => {
    const s = new Set(a);
    return b.every((i) => !s.has(i));
  };

  const v = omniglotFamily(data, { ways: 5, shots: 1, queryShots: 15, split: "vinyals" });
  assert.equal(v.baseClasses("train").length, 1200);
  assert.equal(v.baseClasses("test").length, 423);
  assert.equal(v.baseClasses("val").length, 0);
  assert.equal(v.classCount("train"), 4800);
  assert.equal(v.classCount("test"), 1692);
  assert.ok(disjoint(v.baseClasses("train"), v.baseClasses("test")));
  assert.equal(new Set([...v.baseClasses("train"), ...v.baseClasses("test")]).size, 1623);

  const vv = omniglotSplits(data, "vinyals", true).splits;
  assert.deepEqual([vv.train.length, vv.val.length, vv.test.length], [1100, 100, 423]);
  assert.deepEqual([...vv.train, ...vv.val], [...v.baseClasses("train")]);
  assert.deepEqual(vv.test, v.baseClasses("test"));

  const be = omniglotFamily(data, { ways: 5, shots: 1, queryShots: 15, split: "background-evaluation" });
  assert.equal(be.rotations, false);
  assert.equal(be.classCount("train"), 964);
  assert.equal(be.classCount("test"), 659);
  assert.ok(be.baseClasses("test").every((i) => i >= 964));
  const bev = omniglotSplits(data, "background-evaluation", true).splits;
  assert.deepEqual([bev.train.length, bev.val.length, bev.test.length], [813, 151, 659]);
  assert.ok(disjoint(bev.train, bev.val) && disjoint(bev.train, bev.test) && disjoint(bev.val, bev.test));

  // Sampled tasks only use their split's characters.
  const train = new Set(v.baseClasses("train"));
  for (let t = 0; t < 50; t++) {
    for (const c of v.draw(1, "train", t, 0).classes) assert.ok(train.has(c.classIndex));
    for (const c of v.draw(1, "test", t, 0).classes) assert.ok(!train.has(c.classIndex));
  }
});

test("omniglot: 5-way 1-shot 15-query task shapes, values, purity", { skip }, () => {
  const data = loadOmniglot();
  const fam = omniglotFamily(data, { ways: 5, shots: 1, queryShots: 15, split: "vinyals" });
  assert.deepEqual(fam.inputShape, [28, 28, 1]);
  assert.equal(fam.outputs, 5);
  const task = fam.task(42, "train", 3, 1);
  assert.deepEqual(task.support.xShape, [5, 28, 28, 1]);
  assert.deepEqual(task.query.xShape, [75, 28, 28, 1]);
  assert.equal(task.support.x.length, 5 * 784);
  assert.equal(task.query.x.length, 75 * 784);
  assert.deepEqual([...task.support.y], [0, 1, 2, 3, 4]);
  assert.equal(task.query.y.length, 75);
  for (const x of [task.support.x, task.query.x]) {
    let max = 0;
    for (const v of x) {
      assert.ok(v >= 0 && v <= 1);
      max = Math.max(max, v);
    }
    assert.equal(max, 1, "ink reaches 1");
  }
  const again = omniglotFamily(loadOmniglot(), { ways: 5, shots: 1, queryShots: 15, split: "vinyals" });
  assert.ok(sameTask(task, again.task(42, "train", 3, 1)));
  assert.ok(!sameTask(task, fam.task(42, "train", 3, 2)));
  assert.ok(!sameTask(task, fam.task(42, "train", 4, 1)));
});
