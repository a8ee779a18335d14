// Telemetry for a metatrain process: metrics, the /metrics server, Temporal SDK metrics, workflow sinks, store instrumentation — and `startTelemetry`, which the worker calls once.
import { hostname } from "node:os";
import { createMetrics, type Metrics, type TfMemoryInfo } from "./metrics.js";
import { metricsHostFromEnv, metricsPortFromEnv, startMetricsServer, type MetricsServer } from "./server.js";

export * from "./metrics.js";
export * from "./server.js";
export * from "./sinks.js";
export * from "./storage.js";

type Env = Readonly<Record<string, string | undefined>>;

export interface StartTelemetryOptions {
  /** The worker's role: becomes the `role` label on every series. */
  role: "gpu" | "coordinator" | "all";
  /** The `worker` label on every series. Default env `METATRAIN_WORKER_NAME`, else the hostname (the pod name on Kubernetes). */
  worker?: string;
  /** Reads TensorFlow.js memory at scrape time: pass `() => tf.memory()` where tfjs is loaded. */
  tfMemory?: () => TfMemoryInfo;
  /** `/healthz` is 200 while this is true. Default: always. */
  ready?: () => boolean;
  /** Default `METATRAIN_METRICS_PORT`, else 9464. */
  port?: number;
  /** Default `METATRAIN_METRICS_HOST`, else 0.0.0.0. */
  host?: string;
  /** Environment read for the defaults above. Default `process.env`. */
  env?: Env;
}

export interface Telemetry {
  metrics: Metrics;
  server: MetricsServer;
  /** Stop the HTTP server. */
  close(): Promise<void>;
}

/** Create this process's metrics (default labels role and worker) and serve them. Call once per process. */
export async function startTelemetry(opts: StartTelemetryOptions): Promise<Telemetry> {
  const env = opts.env ?? process.env;
  const worker = opts.worker ?? (env.METATRAIN_WORKER_NAME?.trim() || hostname());
  const metrics = createMetrics({ defaultLabels: { role: opts.role, worker }, ...(opts.tfMemory ? { tfMemory: opts.tfMemory } : {}) });
  const server = await startMetricsServer({
    registry: metrics.registry,
    port: opts.port ?? metricsPortFromEnv(env),
    host: opts.host ?? metricsHostFromEnv(env),
    ...(opts.ready ? { ready: opts.ready } : {}),
  });
  return { metrics, server, close: () => server.close() };
}
