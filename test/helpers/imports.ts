// The static import graph of TypeScript sources: value imports (type-only ones are erased), followed
// file to file, and the chains that reach a forbidden package (test/unit/workflow-imports.test.ts:
// what workflow code may not import; test/unit/cli.test.ts: what the CLI may not load at start-up).
import { readFileSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { REPO_ROOT } from "../harness/workers.js";

/** A package a check forbids, and why (said in the failure). */
export interface Forbidden {
  test: (spec: string) => boolean;
  why: string;
}

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

/**
 * Value imports and re-exports of a TypeScript source (type-only ones are erased, so skipped);
 * `staticOnly`: without `import("…")` and `require("…")` calls (what loading the module itself loads).
 */
export function valueImports(source: string, staticOnly = false): string[] {
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
  if (!staticOnly) for (const m of src.matchAll(CALL)) out.push(m.groups!.spec!); // import("…"), require("…")
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

/**
 * Every forbidden import reachable from `entries`, with the chain of files that leads to it.
 * `staticOnly`: follow static imports only (what loading the entries loads, not what they load later).
 */
export function forbiddenImports(entries: readonly string[], opts: { forbidden: readonly Forbidden[]; staticOnly?: boolean }): ForbiddenImport[] {
  const { forbidden } = opts;
  const found: ForbiddenImport[] = [];
  const seen = new Set<string>();
  const visit = (file: string, chain: string[]) => {
    if (seen.has(file)) return;
    seen.add(file);
    if (!/\.[cm]?[jt]sx?$/.test(file)) return; // JSON and other assets import nothing
    for (const spec of valueImports(readFileSync(file, "utf8"), opts.staticOnly)) {
      if (spec.startsWith(".") || spec.startsWith("/")) {
        const target = resolveRelative(file, spec);
        // An import the walker cannot follow is a hole in the check, so it fails too.
        if (target === undefined) found.push({ chain, spec, why: "does not resolve to a file, so the check cannot see past it" });
        else visit(target, [...chain, target]);
        continue;
      }
      const bad = forbidden.find((f) => f.test(spec));
      if (bad) found.push({ chain, spec, why: bad.why });
    }
  };
  for (const e of entries) visit(e, [e]);
  return found;
}

/** One line per forbidden import: the chain of files (relative to `root`), the specifier and why. */
export const report = (bad: ForbiddenImport[], root = REPO_ROOT) => bad.map((b) => `${b.chain.map((c) => c.replace(`${root}/`, "")).join(" → ")} imports '${b.spec}': ${b.why}`);
