// `metatrain list [--json] [--limit N]`: every run in the namespace, newest first, with its state and progress.
import type { Command } from "commander";
import { intOption } from "../errors.js";
import type { RunStatusJson } from "../runs.js";

/** One item of `list --json`: a run's status without its config and Temporal details. */
export type RunListItem = Omit<RunStatusJson, "config" | "temporal">;

export function registerList(program: Command): void {
  program
    .command("list")
    .description("all runs, newest first: state, iteration, last post-adaptation loss, last checkpoint")
    .option("--limit <n>", "at most this many runs", "50")
    .option("--json", "print a JSON array of run objects (the status object less `config` and `temporal`)")
    .action(async (opts: { limit: string; json?: boolean }) => {
      const limit = intOption("--limit", opts.limit, 1, 1000);
      const [{ describeRun, listRunIds }, { withTemporal }, { listSweeps }] = await Promise.all([import("../runs.js"), import("../temporal.js"), import("../sweeps.js")]);
      const runs = await withTemporal(async (s) => {
        const ids = await listRunIds(s, limit);
        // A few at a time: each costs a describe, a history page and a query or result.
        const out: RunListItem[] = [];
        for (let i = 0; i < ids.length; i += 8) {
          const batch = await Promise.all(ids.slice(i, i + 8).map((r) => describeRun(s, r.runId, { startedAt: r.startedAt }).catch(() => undefined)));
          for (const r of batch) {
            if (!r) continue;
            const { config: _c, temporal: _t, ...item } = r;
            out.push(item);
          }
        }
        return out;
      });
      const sweeps = await withTemporal((s) => listSweeps(s, limit));
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(runs, null, 2)}\n`);
        return;
      }
      const sweepLines = sweeps.map((w) => `sweep ${w.sweepId}  ${w.status}  started ${w.startedAt.toISOString().replace("T", " ").slice(0, 19)} (metatrain status ${w.sweepId})`);
      if (runs.length === 0) {
        process.stdout.write("no runs yet: start one with `metatrain submit --preset sinusoid-maml`\n");
        return;
      }
      const rows = runs.map((r) => [
        r.runId,
        r.status,
        r.iteration === null ? "?" : `${r.iteration}/${r.iterations ?? "?"}`,
        r.latest ? r.latest.postLoss.toFixed(4) : "",
        r.latest?.postAccuracy !== undefined ? `${(100 * r.latest.postAccuracy).toFixed(1)}%` : "",
        r.startedAt?.replace("T", " ").slice(0, 19) ?? "",
      ]);
      const head = ["RUN", "STATUS", "ITERATION", "POST-LOSS", "POST-ACC", "STARTED (UTC)"];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      for (const r of [head, ...rows]) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()}\n`);
      if (sweepLines.length) process.stdout.write(`\n${sweepLines.join("\n")}\n`);
    });
}
