// Workflow code must stay deterministic and small: no Node built-ins, no tfjs, no AWS SDK, no
// activity/client/worker SDK packages, no prom-client anywhere in what workflows/ imports (type-only
// imports are erased and do not count). Walks the static import graph from workflows/*.ts.
import { test } from "node:test";
import assert from "node:assert/strict";
import { builtinModules } from "node:module";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { REPO_ROOT } from "../harness/workers.js";

const FORBIDDEN: { test: (spec: string) => boolean; why: string }[] = [
  { test: (s) => s.startsWith("node:") || builtinModules.includes(s.split("/")[0]!), why: "a Node built-in (non-deterministic, and absent from the workflow sandbox)" },
  { test: (s) => s.startsWith("@tensorflow/"), why: "TensorFlow.js (tensors never enter workflow code)" },
  { test: (s) => s.startsWith("@aws-sdk/"), why: "the AWS SDK (I/O belongs in activities)" },
  { test: (s) => /^@temporalio\/(activity|client|worker)(\/|$)/.test(s), why: "a Temporal SDK package that is not @temporalio/workflow" },
  { test: (s) => s === "prom-client", why: "prom-client (workflows report through sinks)" },
];

/** Value imports and re-exports of a TypeScript source (type-only ones are erased, so skipped). */
export function valueImports(source: string): string[] {
  const out: string[] = [];
  const re = /^\s*(import|export)\s+(type\s+)?([^'";]*?)\s*from\s*["']([^"']+)["']|^\s*import\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/gm;
  for (let m; (m = re.exec(source)); ) {
    if (m[5] || m[6]) {
      out.push((m[5] ?? m[6])!);
      continue;
    }
    if (m[2]) continue; // import type … / export type …
    // `import { type A, type B } from`: only types, erased.
    const clause = m[3]!.trim();
    const named = /^\{([^}]*)\}$/.exec(clause);
    if (named && named[1]!.split(",").map((x) => x.trim()).filter(Boolean).every((x) => x.startsWith("type "))) continue;
    out.push(m[4]!);
  }
  return out;
}

/** Every forbidden import reachable from `entries`, with the chain of files that leads to it. */
export function forbiddenImports(entries: readonly string[]): { chain: string[]; spec: string; why: string }[] {
  const found: { chain: string[]; spec: string; why: string }[] = [];
  const seen = new Set<string>();
  const visit = (file: string, chain: string[]) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of valueImports(readFileSync(file, "utf8"))) {
      if (spec.startsWith(".")) {
        const target = resolve(dirname(file), spec.replace(/\.js$/, ".ts"));
        visit(target, [...chain, target]);
        continue;
      }
      const bad = FORBIDDEN.find((f) => f.test(spec));
      if (bad) found.push({ chain, spec, why: bad.why });
    }
  };
  for (const e of entries) visit(e, [e]);
  return found;
}

const rel = (p: string) => p.replace(`${REPO_ROOT}/`, "");

test("nothing the workflows import reaches Node built-ins, tfjs, the AWS SDK or non-workflow SDK packages", () => {
  const dir = join(REPO_ROOT, "workflows");
  const entries = readdirSync(dir).filter((f) => f.endsWith(".ts")).map((f) => join(dir, f));
  assert.ok(entries.length > 0);
  const bad = forbiddenImports(entries);
  assert.deepEqual(
    bad.map((b) => `${b.chain.map(rel).join(" → ")} imports '${b.spec}': ${b.why}`),
    [],
  );
});

test("the check catches a forbidden import two files away, and ignores type-only imports", () => {
  const dir = mkdtempSync(join(tmpdir(), "metatrain-imports-"));
  try {
    writeFileSync(join(dir, "wf.ts"), 'import type { X } from "@tensorflow/tfjs";\nimport { type Y } from "node:fs";\nimport { helper } from "./helper.js";\n');
    writeFileSync(join(dir, "helper.ts"), 'export { z } from "./deep.js";\n');
    writeFileSync(join(dir, "deep.ts"), 'import { readFileSync } from "node:fs";\nimport * as tf from "@tensorflow/tfjs";\n');
    const bad = forbiddenImports([join(dir, "wf.ts")]);
    assert.deepEqual(bad.map((b) => [b.chain.map((c) => c.replace(`${dir}/`, "")).join(" → "), b.spec]), [
      ["wf.ts → helper.ts → deep.ts", "node:fs"],
      ["wf.ts → helper.ts → deep.ts", "@tensorflow/tfjs"],
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
