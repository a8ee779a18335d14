// Prebuild the Temporal workflow bundle that coordinator images load through METATRAIN_WORKFLOW_BUNDLE,
// so a worker starts without webpack and without the TypeScript sources:
//
//   node dist/scripts/bundle-workflows.js [--out dist/workflow-bundle.js]     (in an image build, after tsc)
//   node --import tsx scripts/bundle-workflows.ts --out /tmp/workflow-bundle.js (from the sources)
//
// Bundles `workflows/index` next to this file: the compiled `.js` when run from `dist/`, the `.ts`
// source when run with tsx. Exit codes: 0 written, 1 bundling failed, 3 bad arguments.
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleWorkflowCode } from "@temporalio/worker";

/** Default output path, relative to the working directory (the image's WORKDIR). */
export const DEFAULT_BUNDLE_OUT = "dist/workflow-bundle.js";

/** The workflows module beside this script: compiled `.js` first, then the `.ts` source. */
export function findWorkflowsPath(): string {
  for (const ext of [".js", ".ts"]) {
    const p = fileURLToPath(new URL(`../workflows/index${ext}`, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`no workflows/index.js or workflows/index.ts next to ${fileURLToPath(import.meta.url)}; run tsc first or run this script from the sources with tsx`);
}

function parseOut(argv: readonly string[]): string {
  let out = DEFAULT_BUNDLE_OUT;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--out" && argv[i + 1] !== undefined) out = argv[++i]!;
    else if (a.startsWith("--out=")) out = a.slice("--out=".length);
    else throw new Error(`unknown argument "${a}"; usage: bundle-workflows [--out FILE] (default ${DEFAULT_BUNDLE_OUT})`);
  }
  return resolve(out);
}

async function main(argv: readonly string[]): Promise<number> {
  let out: string;
  try {
    out = parseOut(argv);
  } catch (e) {
    console.error(`bundle-workflows: ${(e as Error).message}`);
    return 3;
  }
  const workflowsPath = findWorkflowsPath();
  const { code } = await bundleWorkflowCode({ workflowsPath });
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, code);
  console.log(`bundle-workflows: wrote ${out} (${(code.length / 1024).toFixed(0)} KiB) from ${workflowsPath}`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  main(process.argv.slice(2)).then(
    (rc) => process.exit(rc),
    (e: unknown) => {
      console.error(`bundle-workflows: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
      process.exit(1);
    },
  );
}
