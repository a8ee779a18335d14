// Workflow code must stay deterministic and small: no Node built-ins, no tfjs, no AWS SDK, no
// activity/client/worker SDK packages, no prom-client anywhere in what workflows/ imports (type-only
// imports are erased and do not count). Two checks: the static import graph from workflows/, which
// names the chain of files to any forbidden import, and the real bundle that coordinators load.
import { test } from "node:test";
import assert from "node:assert/strict";
import { builtinModules } from "node:module";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bundleWorkflowCode, DefaultLogger } from "@temporalio/worker";
import { findWorkflowsPath } from "../../scripts/bundle-workflows.js";
import { REPO_ROOT } from "../harness/workers.js";
import { forbiddenImports, report, valueImports, type Forbidden } from "../helpers/imports.js";

/** What workflow code may not import, bare specifier by bare specifier. */
const FORBIDDEN: Forbidden[] = [
  { test: (s) => s.startsWith("node:") || builtinModules.includes(s.split("/")[0]!), why: "a Node built-in (non-deterministic, and absent from the workflow sandbox)" },
  { test: (s) => s.startsWith("@tensorflow/"), why: "TensorFlow.js (tensors never enter workflow code)" },
  { test: (s) => s.startsWith("@aws-sdk/"), why: "the AWS SDK (I/O belongs in activities)" },
  // The SDK's own list (bundler.js `disallowedModules`) has these too: Node-only parts of the SDK.
  {
    test: (s) => /^@temporalio\/(activity|client|worker|testing|core-bridge)(\/|$)/.test(s) || /^@temporalio\/common\/lib\/internal-non-workflow(\/|$)/.test(s),
    why: "a Temporal SDK package that is not @temporalio/workflow",
  },
  { test: (s) => s === "prom-client" || s.startsWith("prom-client/"), why: "prom-client (workflows report through sinks)" },
];

/** Every `.ts` file under `dir` (sub-folders too): each one is a possible workflow entry point. */
function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && d.name.endsWith(".ts") && !d.name.endsWith(".d.ts"))
    .map((d) => join(d.parentPath, d.name))
    .sort();
}

const rel = (p: string) => p.replace(`${REPO_ROOT}/`, "");

test("nothing the workflows import reaches Node built-ins, tfjs, the AWS SDK or non-workflow SDK packages", () => {
  const entries = sourcesUnder(join(REPO_ROOT, "workflows"));
  assert.ok(entries.some((e) => rel(e) === "workflows/index.ts"), "workflows/index.ts is the bundle's entry point");
  assert.deepEqual(report(forbiddenImports(entries, { forbidden: FORBIDDEN })), []);
});

test("the check catches a forbidden import two files away, and ignores type-only imports and comments", () => {
  const dir = mkdtempSync(join(tmpdir(), "metatrain-imports-"));
  try {
    writeFileSync(
      join(dir, "wf.ts"),
      [
        'import type { X } from "@tensorflow/tfjs";',
        'import { type Y } from "node:fs";',
        'export type { Z } from "@aws-sdk/client-s3";',
        '// import { readFileSync } from "node:fs";',
        '/* import { S3Client } from "@aws-sdk/client-s3"; */',
        'const s = "http://example.com/* not a comment */";',
        "export type Alias = X", // no `;`: the next import must still be seen on its own
        'import {\n  helper,\n  type Other,\n} from "./helper.js";',
        "",
      ].join("\n"),
    );
    writeFileSync(join(dir, "helper.ts"), 'export { z } from "./deep.js";\nexport * from "./missing.js";\n');
    writeFileSync(join(dir, "deep.ts"), 'import { readFileSync } from "node:fs";\nimport * as tf from "@tensorflow/tfjs";\nimport "path";\nconst m = await import("prom-client");\n');
    const bad = forbiddenImports([join(dir, "wf.ts")], { forbidden: FORBIDDEN });
    assert.deepEqual(report(bad, dir), [
      `wf.ts → helper.ts → deep.ts imports 'node:fs': ${FORBIDDEN[0]!.why}`,
      `wf.ts → helper.ts → deep.ts imports '@tensorflow/tfjs': ${FORBIDDEN[1]!.why}`,
      `wf.ts → helper.ts → deep.ts imports 'path': ${FORBIDDEN[0]!.why}`,
      `wf.ts → helper.ts → deep.ts imports 'prom-client': ${FORBIDDEN[4]!.why}`,
      "wf.ts → helper.ts imports './missing.js': does not resolve to a file, so the check cannot see past it",
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the import parser: clauses of every shape, and what counts as type-only", () => {
  const src = [
    'import D from "a";',
    'import * as NS from "b";',
    'import D2, { x as y } from "c";',
    'import { type T, v } from "d";',
    'import type from "e";', // a default import named `type`
    'export * from "f";',
    'export * as g from "g";',
    'import {} from "h";',
    'import type * as TT from "no1";',
    'import { type A, type B } from "no2";',
    'export type * from "no3";',
    "const t = `${`a${1}`} import x from 'no4'`; import i from \"i\";",
  ].join("\n");
  assert.deepEqual(valueImports(src), ["a", "b", "c", "d", "e", "f", "g", "h", "i"]);
});

// Bundling takes about 2 s here (webpack over workflows/index.ts, contracts/, zod and the SDK), so the
// real thing runs too: it catches what the walker cannot see (imports inside packages), and the SDK's
// bundler itself refuses most Node built-ins. Module ids in the bundle are paths (webpack's
// development mode, as the SDK sets it), so a forbidden package would show up as node_modules/<name>.
test("the real workflow bundle has no tfjs, AWS SDK, prom-client or non-workflow SDK modules", { timeout: 120_000 }, async (t) => {
  const started = performance.now();
  const workflowsPath = findWorkflowsPath(); // what scripts/bundle-workflows.ts bundles for the images
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: new DefaultLogger("WARN") });
  t.diagnostic(`bundled in ${((performance.now() - started) / 1000).toFixed(1)} s, ${(code.length / 1024).toFixed(0)} KiB`);
  const packages = [...new Set([...code.matchAll(/node_modules\/((?:@[\w.-]+\/)?[\w.-]+)/g)].map((m) => m[1]!))].sort();
  // Without these the checks below would pass vacuously (say, if module ids stopped being paths).
  assert.ok(code.includes(`./${rel(workflowsPath)}`), "the bundle names its modules by path");
  assert.ok(packages.includes("@temporalio/workflow"), `packages in the bundle: ${packages.join(", ")}`);
  assert.deepEqual(
    packages.filter((p) => FORBIDDEN.some((f) => f.test(p))),
    [],
    `packages in the bundle: ${packages.join(", ")}`,
  );
});
