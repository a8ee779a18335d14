// Choose the TensorFlow.js backend: `auto` takes the first that loads of tfjs-node-gpu, tfjs-node,
// wasm, cpu; METATRAIN_BACKEND overrides. The native packages are optional and may be absent.
import * as tf from "@tensorflow/tfjs";
import { registerWasmKernels } from "./wasm-kernels.js";
import { registerHigherOrderGradients } from "./gradients.js";

export type BackendPreference = "auto" | "tfjs-node-gpu" | "tfjs-node" | "wasm" | "cpu";
export const BACKEND_PREFERENCES: readonly BackendPreference[] = ["auto", "tfjs-node-gpu", "tfjs-node", "wasm", "cpu"];

export interface BackendChoice {
  /** What was asked for (after the environment override). */
  requested: BackendPreference;
  /** tfjs backend name in use: `tensorflow` (native, CPU or GPU), `wasm` or `cpu`. */
  backend: string;
  /** Which candidate won, e.g. `tfjs-node`. */
  candidate: Exclude<BackendPreference, "auto">;
  /** Why each earlier candidate was passed over. */
  skipped: { candidate: string; reason: string }[];
}

const ORDER: Exclude<BackendPreference, "auto">[] = ["tfjs-node-gpu", "tfjs-node", "wasm", "cpu"];

async function tryCandidate(c: Exclude<BackendPreference, "auto">): Promise<string> {
  switch (c) {
    case "tfjs-node-gpu":
    case "tfjs-node": {
      // Importing the binding registers the `tensorflow` backend on the shared tfjs-core.
      await import(c === "tfjs-node" ? "@tensorflow/tfjs-node" : "@tensorflow/tfjs-node-gpu" as string);
      if (!(await tf.setBackend("tensorflow"))) throw new Error("backend 'tensorflow' failed to initialise");
      return "tensorflow";
    }
    case "wasm": {
      await import("@tensorflow/tfjs-backend-wasm");
      if (!(await tf.setBackend("wasm"))) throw new Error("backend 'wasm' failed to initialise");
      // wasm lacks Conv2DBackpropFilter: without it Conv4 cannot train there.
      registerWasmKernels();
      return "wasm";
    }
    case "cpu":
      if (!(await tf.setBackend("cpu"))) throw new Error("backend 'cpu' failed to initialise");
      return "cpu";
  }
}

function shortReason(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0]!.slice(0, 200);
}

/**
 * Select and initialise a backend. `env.METATRAIN_BACKEND`, when set, overrides `preference`.
 * An explicit choice that fails to load is an error (naming the cause), never a silent fallback.
 */
export async function selectBackend(
  preference: BackendPreference = "auto",
  env: Record<string, string | undefined> = {},
): Promise<BackendChoice> {
  const override = env.METATRAIN_BACKEND;
  if (override !== undefined && override !== "" && !BACKEND_PREFERENCES.includes(override as BackendPreference)) {
    throw new Error(`METATRAIN_BACKEND='${override}' is not one of ${BACKEND_PREFERENCES.join(", ")}`);
  }
  const requested = (override || preference) as BackendPreference;
  // PROD only silences tfjs's own console advice (e.g. "install our node backend"): metatrain
  // reports its backend choice itself (describeBackend), and a worker's logs stay one line per event.
  tf.enableProdMode();
  // Every process that trains selects a backend: register the lean and higher-order gradients here,
  // so first-order learners get the leaner gradients too (same values; meta/gradients.ts).
  registerHigherOrderGradients();
  const candidates = requested === "auto" ? ORDER : [requested];
  const skipped: BackendChoice["skipped"] = [];
  for (const c of candidates) {
    try {
      const backend = await tryCandidate(c);
      await tf.ready();
      return { requested, backend, candidate: c, skipped };
    } catch (e) {
      if (requested !== "auto") {
        throw new Error(`backend '${c}' could not be loaded: ${shortReason(e)}. Use METATRAIN_BACKEND=auto to fall back, or see docs/native-backend.md.`);
      }
      skipped.push({ candidate: c, reason: shortReason(e) });
    }
  }
  throw new Error(`no TensorFlow.js backend could be loaded: ${skipped.map((s) => `${s.candidate}: ${s.reason}`).join("; ")}`);
}

/** One line for logs: `backend wasm (auto; skipped tfjs-node-gpu: …, tfjs-node: …)`. */
export function describeBackend(c: BackendChoice): string {
  const skipped = c.skipped.length ? `; skipped ${c.skipped.map((s) => `${s.candidate}: ${s.reason}`).join(", ")}` : "";
  return `backend ${c.backend} via ${c.candidate} (${c.requested}${skipped})`;
}
