// Test harness: a real Prometheus (Debian package `prometheus`) on a free loopback port scraping given targets, promtool, and a check that every dashboard panel's PromQL returns data.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { findExecutable } from "../../cli/executables.js";
import { freePort } from "./temporal.js";

const INSTALL_HINT = "run `bash scripts/install-services.sh` (it apt-installs Debian's `prometheus`, which brings `promtool`), or set METATRAIN_PROMETHEUS_BIN / METATRAIN_PROMTOOL_BIN";


const findBinary = (name: string, envVar: string): string | undefined =>
  findExecutable(name, envVar, process.env, [...(process.env.PATH ?? "").split(delimiter).filter(Boolean), "/usr/bin", "/usr/local/bin"]);

/** The prometheus executable: $METATRAIN_PROMETHEUS_BIN, else `prometheus` on PATH or in /usr/bin. */
export const findPrometheus = (): string | undefined => findBinary("prometheus", "METATRAIN_PROMETHEUS_BIN");
/** The promtool executable: $METATRAIN_PROMTOOL_BIN, else `promtool` on PATH or in /usr/bin. */
export const findPromtool = (): string | undefined => findBinary("promtool", "METATRAIN_PROMTOOL_BIN");

/**
 * For `describe(..., { skip })`: false when prometheus and promtool are installed, else the reason
 * to skip. Under CI (env CI set) a missing binary is a failure, so the tests cannot silently vanish.
 */
export function skipUnlessPrometheus(): string | false {
  const missing = [findPrometheus() ? undefined : "prometheus", findPromtool() ? undefined : "promtool"].filter(Boolean);
  if (missing.length === 0) return false;
  const ci = process.env.CI;
  if (ci !== undefined && ci !== "" && ci !== "false" && ci !== "0") {
    throw new Error(`${missing.join(" and ")} not installed but CI is set: ${INSTALL_HINT} before the tests`);
  }
  return `${missing.join(" and ")} not installed: ${INSTALL_HINT}`;
}

/** Run promtool with `args` (e.g. `["check", "rules", "infra/prometheus/rules.yml"]`). */
export function runPromtool(args: string[], opts: { cwd?: string } = {}): { status: number | null; output: string } {
  const bin = findPromtool();
  if (!bin) throw new Error(`promtool not found: ${INSTALL_HINT}`);
  const r = spawnSync(bin, args, { encoding: "utf8", timeout: 60_000, cwd: opts.cwd });
  return { status: r.status, output: `${r.stdout ?? ""}${r.stderr ?? ""}` };
}

/** One scrape job of the generated config. */
export interface ScrapeJob {
  /** The `job` label (dashboard and rules select on `metatrain-gpu`, `metatrain-coordinator`, `temporal-sdk`). */
  job: string;
  /** `host:port` of each target. */
  targets: string[];
  /** Extra labels on every series of the job's targets. */
  labels?: Record<string, string>;
}

export interface StartPrometheusOptions {
  jobs: ScrapeJob[];
  /** Scrape and rule-evaluation interval, seconds. Default 1. */
  intervalSeconds?: number;
  /** Absolute paths of rule files to load. Default none. */
  ruleFiles?: string[];
  /** How long to wait for /-/ready, ms. Default 30000. */
  startTimeoutMs?: number;
}

/** One series of an instant or range query result. */
export interface PromSeries {
  metric: Record<string, string>;
  /** Instant queries: [unix seconds, "value"]. */
  value?: [number, string];
  /** Range queries: [[unix seconds, "value"], …]. */
  values?: [number, string][];
}

export interface PrometheusTestServer {
  /** http://127.0.0.1:<port> */
  url: string;
  binary: string;
  /** Directory of the generated config and the TSDB. */
  dir: string;
  /** Instant query (`/api/v1/query`); throws on a PromQL error with Prometheus's message. */
  query(expr: string, time?: number): Promise<PromSeries[]>;
  /** Range query (`/api/v1/query_range`). */
  queryRange(expr: string, start: number, end: number, stepSeconds: number): Promise<PromSeries[]>;
  /** Scrape targets and their health (`/api/v1/targets`). */
  targets(): Promise<{ job: string; instance: string; health: string; lastError: string }[]>;
  /** Wait until every target was scraped successfully at least `scrapes` times (`up` summed over time). */
  waitForScrapes(scrapes?: number, timeoutMs?: number): Promise<void>;
  /** Stop Prometheus and remove its directory. Safe to call twice. */
  stop(): Promise<void>;
}

/** The harness's one free-port picker (never the same port twice in a process). */
export { freePort };

/** The generated prometheus.yml (JSON is valid YAML). */
export function scrapeConfig(jobs: ScrapeJob[], intervalSeconds: number, ruleFiles: string[]): string {
  return JSON.stringify(
    {
      global: { scrape_interval: `${intervalSeconds}s`, scrape_timeout: `${intervalSeconds}s`, evaluation_interval: `${intervalSeconds}s` },
      rule_files: ruleFiles,
      scrape_configs: jobs.map((j) => ({ job_name: j.job, static_configs: [{ targets: j.targets, ...(j.labels ? { labels: j.labels } : {}) }] })),
    },
    null,
    2,
  );
}

interface ApiAnswer<T> {
  status: "success" | "error";
  data?: T;
  errorType?: string;
  error?: string;
}

async function api<T>(base: string, path: string, params: Record<string, string> = {}): Promise<T> {
  const u = new URL(path, base);
  for (const [k, v] of Object.entries(params)) u.searchParams.set(k, v);
  const res = await fetch(u);
  const body = (await res.json()) as ApiAnswer<T>;
  if (body.status !== "success") throw new Error(`Prometheus ${path} ${params.query ? `'${params.query}' ` : ""}failed: ${body.errorType}: ${body.error}`);
  return body.data as T;
}

/** Query helpers over a Prometheus HTTP API at `url` (any Prometheus, not only one started here). */
export function promClient(url: string): Pick<PrometheusTestServer, "query" | "queryRange" | "targets"> {
  return {
    query: async (expr, time) => (await api<{ result: PromSeries[] }>(url, "/api/v1/query", { query: expr, ...(time !== undefined ? { time: String(time) } : {}) })).result,
    queryRange: async (expr, start, end, step) =>
      (await api<{ result: PromSeries[] }>(url, "/api/v1/query_range", { query: expr, start: String(start), end: String(end), step: String(step) })).result,
    targets: async () =>
      (await api<{ activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] }>(url, "/api/v1/targets")).activeTargets.map((t) => ({
        job: t.labels.job ?? "",
        instance: t.labels.instance ?? "",
        health: t.health,
        lastError: t.lastError,
      })),
  };
}

/**
 * Start Prometheus on a free 127.0.0.1 port over a temp dir, scraping `jobs` every
 * `intervalSeconds`, and wait until it is ready. Never touches the system service or its data.
 */
export async function startPrometheus(opts: StartPrometheusOptions): Promise<PrometheusTestServer> {
  const binary = findPrometheus();
  if (binary === undefined) throw new Error(`prometheus not found: ${INSTALL_HINT}`);
  const interval = opts.intervalSeconds ?? 1;
  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const dir = mkdtempSync(join(tmpdir(), "metatrain-prom-"));
  const configFile = join(dir, "prometheus.yml");
  writeFileSync(configFile, scrapeConfig(opts.jobs, interval, opts.ruleFiles ?? []));

  // The port is picked then released before Prometheus binds it: retry on the rare race.
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const child = spawn(
      binary,
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--storage.tsdb.retention.time=1d",
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    let log = "";
    child.stdout!.on("data", (c: Buffer) => (log = (log + c.toString()).slice(-20_000)));
    child.stderr!.on("data", (c: Buffer) => (log = (log + c.toString()).slice(-20_000)));
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
    let dead = false;
    void exited.then(() => (dead = true));
    child.once("error", (e) => {
      lastError = e;
      dead = true;
    });
    const deadline = Date.now() + timeoutMs;
    let ready = false;
    while (!dead && Date.now() < deadline) {
      try {
        const r = await fetch(`${url}/-/ready`);
        if (r.ok) {
          ready = true;
          break;
        }
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    if (!ready) {
      await killAndWait(child, exited);
      lastError = new Error(`prometheus did not become ready at ${url} within ${timeoutMs} ms:\n${log}`);
      if (/address already in use/.test(log)) continue;
      break;
    }
    let stopped = false;
    const client = promClient(url);
    return {
      url,
      binary,
      dir,
      ...client,
      async waitForScrapes(scrapes = 2, waitMs = 30_000) {
        const end = Date.now() + waitMs;
        const want = opts.jobs.reduce((n, j) => n + j.targets.length, 0);
        for (;;) {
          const ups = await client.query(`sum_over_time(up[1h])`);
          const good = ups.filter((s) => Number(s.value?.[1]) >= scrapes).length;
          if (good >= want) return;
          if (Date.now() > end) {
            const t = await client.targets();
            throw new Error(`targets not scraped ${scrapes}× within ${waitMs} ms: ${JSON.stringify(t)}`);
          }
          await new Promise((r) => setTimeout(r, 250));
        }
      },
      async stop() {
        if (!stopped) {
          stopped = true;
          await killAndWait(child, exited);
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError ?? new Error("prometheus did not start");
}

async function killAndWait(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
  await exited;
  clearTimeout(timer);
}

// ---- dashboards ----------------------------------------------------------------------------------

/** One PromQL query of a dashboard panel (or a template variable). */
export interface DashboardQuery {
  panel: string;
  refId: string;
  /** As written in the dashboard. */
  rawExpr: string;
  /** After variable substitution. */
  expr: string;
}

interface PanelJson {
  title?: string;
  type?: string;
  panels?: PanelJson[];
  targets?: { refId?: string; expr?: string; hide?: boolean }[];
}

/** Every query of every panel (rows' nested panels included), hidden targets left out. */
export function dashboardQueries(dashboard: unknown, vars: Record<string, string> = {}): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  const walk = (panels: PanelJson[] | undefined): void => {
    for (const p of panels ?? []) {
      walk(p.panels);
      for (const t of p.targets ?? []) {
        if (t.hide || typeof t.expr !== "string" || t.expr.trim() === "") continue;
        out.push({ panel: p.title ?? "(untitled)", refId: t.refId ?? "?", rawExpr: t.expr, expr: substituteVariables(t.expr, vars) });
      }
    }
  };
  walk((dashboard as { panels?: PanelJson[] }).panels);
  return out;
}

/** Grafana's built-in interval variables, as a test with a 1 s scrape interval sets them. */
export const TEST_GRAFANA_VARS: Readonly<Record<string, string>> = {
  __rate_interval: "15s",
  __interval: "1s",
  __interval_ms: "1000",
  __range: "5m",
  __range_s: "300",
  __range_ms: "300000",
};

/** Replace `$name`, `${name}`, `${name:raw}` and `[[name]]` with `vars[name]` (built-ins from TEST_GRAFANA_VARS unless given). */
export function substituteVariables(expr: string, vars: Record<string, string>): string {
  const all: Record<string, string> = { ...TEST_GRAFANA_VARS, ...vars };
  const value = (name: string, whole: string): string => all[name] ?? whole;
  return expr
    .replace(/\$\{([A-Za-z0-9_]+)(?::[A-Za-z]+)?\}/g, (w, n: string) => value(n, w))
    .replace(/\[\[([A-Za-z0-9_]+)\]\]/g, (w, n: string) => value(n, w))
    .replace(/\$([A-Za-z0-9_]+)/g, (w, n: string) => value(n, w));
}

/** What `assertDashboardQueriesReturnData` found. */
export interface DashboardCheck {
  /** Queries with at least one finite sample in the window. */
  withData: DashboardQuery[];
  /** Queries that returned no series, or only NaN/Inf samples (e.g. a quantile with no observations). */
  empty: (DashboardQuery & { why: string })[];
  /** Queries Prometheus rejected (a PromQL error) or that kept a `$variable` unsubstituted. */
  errors: (DashboardQuery & { error: string })[];
  /** Template variables (`label_values(...)`) with no values. */
  emptyVariables: string[];
}

export interface DashboardCheckOptions {
  /** Window the queries are evaluated over (a range query); a query has data if any step has a finite sample. Default the last 120 s. */
  start?: number;
  end?: number;
  /** Range-query step, seconds. Default 1. */
  stepSeconds?: number;
  /**
   * Queries allowed to return no data, with the reason: a panel title (all its queries) or
   * `"<title> [<refId>]"` (one query), e.g. `{ "Shard failures and retries [A]": "no shard failed" }`.
   */
  allowEmpty?: Record<string, string>;
}

/**
 * Run every panel query of `dashboard` (substituting `vars`, e.g. `{ run_id: "r1" }`, and Grafana's
 * interval variables) through Prometheus at `promUrl`, and every `label_values(metric, label)`
 * template variable; throw an Error listing each panel query that errs or has no data (panels in
 * `allowEmpty` excepted). Returns the full report.
 */
export async function assertDashboardQueriesReturnData(
  promUrl: string,
  dashboard: unknown,
  vars: Record<string, string>,
  opts: DashboardCheckOptions = {},
): Promise<DashboardCheck> {
  const client = promClient(promUrl);
  const end = opts.end ?? Date.now() / 1000;
  const start = opts.start ?? end - 120;
  const step = opts.stepSeconds ?? 1;
  const report: DashboardCheck = { withData: [], empty: [], errors: [], emptyVariables: [] };

  for (const q of dashboardQueries(dashboard, vars)) {
    const left = /\$\{?[A-Za-z_][A-Za-z0-9_]*|\[\[[A-Za-z0-9_]+\]\]/.exec(q.expr);
    if (left) {
      report.errors.push({ ...q, error: `variable ${left[0]} not substituted: pass it in vars` });
      continue;
    }
    let series: PromSeries[];
    try {
      series = await client.queryRange(q.expr, start, end, step);
    } catch (e) {
      report.errors.push({ ...q, error: (e as Error).message });
      continue;
    }
    const finite = series.some((s) => (s.values ?? []).some(([, v]) => Number.isFinite(Number(v))));
    if (finite) report.withData.push(q);
    else report.empty.push({ ...q, why: series.length === 0 ? "no series" : `${series.length} series, no finite sample` });
  }

  const templating = (dashboard as { templating?: { list?: { name?: string; type?: string; query?: unknown }[] } }).templating?.list ?? [];
  for (const v of templating) {
    if (v.type !== "query") continue;
    const raw = typeof v.query === "string" ? v.query : (v.query as { query?: string } | undefined)?.query ?? "";
    const m = /^\s*label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$/.exec(raw);
    if (!m) continue;
    const [, selector, label] = m;
    const values = await api<string[]>(promUrl, `/api/v1/label/${label}/values`, { "match[]": selector!, start: String(start), end: String(end) });
    if (values.length === 0) report.emptyVariables.push(`${v.name ?? label}: ${raw}`);
  }

  const allow = opts.allowEmpty ?? {};
  const problems = [
    ...report.errors.map((q) => `  ${q.panel} [${q.refId}] error: ${q.error}\n    ${q.expr}`),
    ...report.empty.filter((q) => !(q.panel in allow) && !(`${q.panel} [${q.refId}]` in allow)).map((q) => `  ${q.panel} [${q.refId}] ${q.why}\n    ${q.expr}`),
    ...report.emptyVariables.map((v) => `  variable ${v} has no values`),
  ];
  if (problems.length) {
    throw new Error(`${problems.length} dashboard quer${problems.length === 1 ? "y" : "ies"} without data (of ${report.withData.length + report.empty.length + report.errors.length}):\n${problems.join("\n")}`);
  }
  return report;
}
