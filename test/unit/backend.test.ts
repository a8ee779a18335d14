// Backend selection: explicit choices, the environment override, and clear errors.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { describeBackend, selectBackend } from "../../meta/backend.js";

after(async () => {
  await tf.setBackend("cpu");
});

test("an explicit cpu choice is honoured and reported", async () => {
  const c = await selectBackend("cpu", {});
  assert.equal(c.backend, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.match(describeBackend(c), /backend cpu via cpu/);
});

test("METATRAIN_BACKEND overrides the configured preference", async () => {
  const c = await selectBackend("cpu", { METATRAIN_BACKEND: "wasm" });
  assert.equal(c.requested, "wasm");
  assert.equal(c.backend, "wasm");
  assert.equal(tf.getBackend(), "wasm");
});

test("an unknown METATRAIN_BACKEND is an error naming the allowed values", async () => {
  await assert.rejects(selectBackend("auto", { METATRAIN_BACKEND: "cuda" }), /METATRAIN_BACKEND='cuda' is not one of auto, tfjs-node-gpu, tfjs-node, wasm, cpu/);
});

test("auto takes the first candidate that loads and says why it skipped the others", async () => {
  const c = await selectBackend("auto", {});
  const order = ["tfjs-node-gpu", "tfjs-node", "wasm", "cpu"];
  assert.deepEqual(c.skipped.map((s) => s.candidate), order.slice(0, order.indexOf(c.candidate)));
  for (const s of c.skipped) assert.ok(s.reason.length > 0);
  assert.equal(tf.getBackend(), c.backend);
});

test("an explicit native choice either loads or fails with a message saying what to do", async () => {
  try {
    const c = await selectBackend("tfjs-node-gpu", {});
    assert.equal(c.backend, "tensorflow");
  } catch (e) {
    assert.match((e as Error).message, /backend 'tfjs-node-gpu' could not be loaded: .+METATRAIN_BACKEND=auto/);
  }
});
