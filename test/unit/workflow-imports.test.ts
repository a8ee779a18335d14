// Workflow code must stay deterministic and small: no Node built-ins, no tfjs, no AWS SDK, no
// activity/client/worker SDK packages, no prom-client anywhere in what workflows/ imports (type-only
// imports are erased and do not count). Two checks: the static import graph from workflows/, which
// names the chain of files to any forbidden import, and the real bundle that coordinators load.
import { test } from "node:test";
import assert from "node:assert/strict";
import { builtinModules } from "node:module";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { bundleWorkflowCode, DefaultLogger } from "@temporalio/worker";
import { findWorkflowsPath } from "../../scripts/bundle-workflows.js";
import { REPO_ROOT } from "../harness/workers.js";

/** What workflow code may not import, bare specifier by bare specifier. */
const FORBIDDEN: { test: (spec: string) => boolean; why: string }[] = [
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

/**
 * The source with comments and template-literal text blanked (line breaks kept, so `^` anchors still
 * work), quoted strings kept: a commented-out import, or import-like text in a template, is not an
 * import. Templates nest through `${ … }`. Regex literals are not told apart: one holding a quote
 * could only make the check stricter (a comment kept as code).
 */
export function codeOnly(src: string): string {
  let out = "";
  let i = 0;
  const braces: number[] = []; // per enclosing `${`: the `{` still open inside it
  const blank = (text: string) => text.replace(/[^\n]/g, " ");
  /** Copy a string body from `i` up to its end, or up to a template literal's next `${`. */
  const body = (quote: string): void => {
    const start = i;
    while (i < src.length) {
      const c = src[i]!;
      if (c === "\\") i += 2;
      else if (c === quote) {
        i++;
        break;
      } else if (quote !== "`" && c === "\n") break; // unterminated: ends at the line end
      else if (quote === "`" && c === "$" && src[i + 1] === "{") {
        i += 2;
        braces.push(0);
        break;
      } else i++;
    }
    const text = src.slice(start, i);
    out += quote === "`" ? blank(text) : text;
  };
  while (i < src.length) {
    const c = src[i]!;
    if (c === "/" && src[i + 1] === "/") {
      while (i < src.length && src[i] !== "\n") i++;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end === -1 ? src.length : end + 2;
      out += blank(src.slice(i, stop));
      i = stop;
    } else if (c === '"' || c === "'" || c === "`") {
      out += c;
      i++;
      body(c);
    } else if (c === "}" && braces.at(-1) === 0) {
      braces.pop(); // the end of a `${ … }`: back in the template literal
      out += c;
      i++;
      body("`");
    } else {
      if (braces.length > 0 && (c === "{" || c === "}")) braces[braces.length - 1]! += c === "{" ? 1 : -1;
      out += c;
      i++;
    }
  }
  return out;
}

const NAME = String.raw`[\w$]+`;
/** An import or export clause: `X`, `* as X`, `{ a, type b, c as d }`, `X, { … }`, `X, * as Y`, `*`. */
const CLAUSE = String.raw`(?:${NAME}\s*,\s*)?(?:\*(?:\s*as\s+${NAME})?|\{[\w$\s,]*\}|${NAME})`;
const SPEC = String.raw`(?<q>["'])(?<spec>[^"'\n]+)\k<q>`;
// A declaration starts a line or follows `;` or `}`; the strict clause grammar keeps one statement's
// match from running on into the next (as `[^;]*` would, over `export type X = Y` without a `;`).
const FROM = new RegExp(String.raw`(?:^|[;}])\s*(?:import|export)\s+(?<type>type\s+)?(?<clause>${CLAUSE})\s*from\s*${SPEC}`, "gm");
const BARE = new RegExp(String.raw`(?:^|[;}])\s*import\s*${SPEC}`, "gm");
const CALL = new RegExp(String.raw`\b(?:import|require)\s*\(\s*${SPEC}\s*[,)]`, "g");

/** Value imports and re-exports of a TypeScript source (type-only ones are erased, so skipped). */
export function valueImports(source: string): string[] {
  const src = codeOnly(source);
  const out: string[] = [];
  for (const m of src.matchAll(FROM)) {
    if (m.groups!.type) continue; // import type … / export type …
    // `import { type A, type B } from`: only types, erased. (`import {} from` counts: stricter.)
    const names = /^\{([^}]*)\}$/.exec(m.groups!.clause!.trim())?.[1]!.split(",").map((x) => x.trim()).filter(Boolean);
    if (names && names.length > 0 && names.every((x) => /^type\s/.test(x))) continue;
    out.push(m.groups!.spec!);
  }
  for (const m of src.matchAll(BARE)) out.push(m.groups!.spec!); // import "./side-effect.js"
  for (const m of src.matchAll(CALL)) out.push(m.groups!.spec!); // import("…"), require("…")
  return out;
}

/** The source file a relative specifier names, as tsx and the workflow bundler resolve it (`.js` → `.ts`). */
function resolveRelative(from: string, spec: string): string | undefined {
  const base = resolve(dirname(from), spec);
  const candidates = /\.[cm]?js$/.test(base)
    ? [base.replace(/js$/, "ts"), base.replace(/js$/, "tsx"), base]
    : [base, `${base}.ts`, `${base}.tsx`, `${base}.js`, join(base, "index.ts"), join(base, "index.js")];
  return candidates.find((c) => statSync(c, { throwIfNoEntry: false })?.isFile());
}

export interface ForbiddenImport {
  /** The files from an entry point to the one that imports `spec`. */
  chain: string[];
  spec: string;
  why: string;
}

/** Every forbidden import reachable from `entries`, with the chain of files that leads to it. */
export function forbiddenImports(entries: readonly string[]): ForbiddenImport[] {
  const found: ForbiddenImport[] = [];
  const seen = new Set<string>();
  const visit = (file: string, chain: string[]) => {
    if (seen.has(file)) return;
    seen.add(file);
    if (!/\.[cm]?[jt]sx?$/.test(file)) return; // JSON and other assets import nothing
    for (const spec of valueImports(readFileSync(file, "utf8"))) {
      if (spec.startsWith(".") || spec.startsWith("/")) {
        const target = resolveRelative(file, spec);
        // An import the walker cannot follow is a hole in the check, so it fails too.
        if (target === undefined) found.push({ chain, spec, why: "does not resolve to a file, so the check cannot see past it" });
        else visit(target, [...chain, target]);
        continue;
      }
      const bad = FORBIDDEN.find((f) => f.test(spec));
      if (bad) found.push({ chain, spec, why: bad.why });
    }
  };
  for (const e of entries) visit(e, [e]);
  return found;
}

/** Every `.ts` file under `dir` (sub-folders too): each one is a possible workflow entry point. */
function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => d.isFile() && d.name.endsWith(".ts") && !d.name.endsWith(".d.ts"))
    .map((d) => join(d.parentPath, d.name))
    .sort();
}

const rel = (p: string) => p.replace(`${REPO_ROOT}/`, "");
const report = (bad: ForbiddenImport[], root = REPO_ROOT) => bad.map((b) => `${b.chain.map((c) => c.replace(`${root}/`, "")).join(" → ")} imports '${b.spec}': ${b.why}`);

test("nothing the workflows import reaches Node built-ins, tfjs, the AWS SDK or non-workflow SDK packages", () => {
  const entries = sourcesUnder(join(REPO_ROOT, "workflows"));
  assert.ok(entries.some((e) => rel(e) === "workflows/index.ts"), "workflows/index.ts is the bundle's entry point");
  assert.deepEqual(report(forbiddenImports(entries)), []);
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
    const bad = forbiddenImports([join(dir, "wf.ts")]);
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
