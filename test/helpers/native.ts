// Test helper: tfjs-node's native backend for the tests that need it. Call at the top level of a
// test file, before its tests are declared, so a missing backend shows as skipped with its reason —
// unless METATRAIN_REQUIRE_NATIVE=1 (set by .ci/run), when the file fails instead.
import * as tf from "@tensorflow/tfjs";
import { selectBackend } from "../../meta/backend.js";

/** Selects the native backend; returns the options that skip a test where it is absent. */
export async function nativeBackendOrSkip(): Promise<() => { skip: string | false }> {
  let native: string | undefined;
  try {
    await selectBackend("tfjs-node", {});
    native = tf.getBackend();
  } catch (e) {
    if (process.env.METATRAIN_REQUIRE_NATIVE === "1") throw e;
  }
  return () => ({ skip: native === "tensorflow" ? false : "the native backend is not installed (npm run setup:native)" });
}
