// The deployment's expectations of the code, in one place: the drift test reads each fact from the
// code when its source file exists, and falls back to the value here only while it does not.
// When a fallback is used the test says so (a diagnostic line), so a stale value here is visible.

/** Facts normally read from the code; used only when the file named beside each is missing. */
export const FALLBACK = {
  /** workers/main.ts: `const ROLES = [...]`. */
  roles: ["gpu", "coordinator", "all"],
  /** telemetry/server.ts: DEFAULT_METRICS_PORT. */
  metricsPort: 9464,
  /** telemetry/server.ts: DEFAULT_TEMPORAL_METRICS_PORT. */
  temporalMetricsPort: 9465,
  /** workers/main.ts, telemetry/, storage/: every environment variable the processes read. */
  env: [
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TLS_CERT_PATH",
    "TEMPORAL_TLS_KEY_PATH",
    "TEMPORAL_TLS_CA_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_API_KEY",
    "METATRAIN_ROLE",
    "METATRAIN_STORE",
    "METATRAIN_BACKEND",
    "METATRAIN_GPU_CONCURRENCY",
    "METATRAIN_WORKFLOW_BUNDLE",
    "METATRAIN_SHUTDOWN_GRACE_SECONDS",
    "METATRAIN_GPU_SHUTDOWN_GRACE_SECONDS",
    "METATRAIN_LOG_LEVEL",
    "METATRAIN_METRICS_PORT",
    "METATRAIN_TEMPORAL_METRICS_PORT",
    "METATRAIN_METRICS_HOST",
    "METATRAIN_WORKER_NAME",
    "METATRAIN_S3_FORCE_PATH_STYLE",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_MAX_ATTEMPTS",
  ],
  /** contracts/config.ts: TimeoutsSchema defaults. */
  shardStartToCloseSeconds: 1800,
  coordinatorStartToCloseSeconds: 600,
} as const;

/** Where the code lives: entry points (tsconfig outDir maps `x.ts` to `dist/x.js`) and env sources. */
export const CODE = {
  workerEntry: "workers/main.ts",
  cliEntry: "cli/main.ts",
  bundleScript: "scripts/bundle-workflows.ts",
  /** Files and folders searched for environment variable names (string literals and `env.X`). */
  envSources: ["contracts/temporal-env.ts", "workers", "telemetry", "storage", "meta", "activities", "cli"],
} as const;

/**
 * Environment variables the deployment sets that no metatrain code reads, each with its reader.
 * Anything else with a name the code does not read is drift (a typo, or a variable that was renamed).
 */
export const ENV_NOT_READ_BY_CODE: Readonly<Record<string, string>> = {
  NODE_ENV: "Node.js and libraries: production mode",
  CUDA_CACHE_PATH: "the CUDA driver: JIT cache on the writable /tmp (read-only root file system)",
};

/** Prometheus job names (infra/prometheus/prometheus.yml) the Kubernetes Services must map to. */
export const PROMETHEUS_JOBS = { gpu: "metatrain-gpu", coordinator: "metatrain-coordinator", sdk: "temporal-sdk" } as const;

/** Names the manifests use for the two worker kinds. */
export const K8S = {
  namespace: "metatrain",
  gpuWorker: "metatrain-gpu-worker",
  coordinator: "metatrain-coordinator",
  container: "worker",
  configMap: "metatrain-config",
  /** The image's non-root user (Dockerfiles `USER`, pods `runAsUser`). */
  uid: 10001,
} as const;

/** Compose service names (infra/prometheus/prometheus.yml discovers `coordinator`, `worker`, `worker-gpu` by DNS). */
export const COMPOSE = { coordinator: "coordinator", worker: "worker", gpuWorker: "worker-gpu", submit: "submit" } as const;

/** Variables every worker must get from its deployment (no usable default in a cluster). */
export const REQUIRED_WORKER_ENV = ["TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "METATRAIN_STORE"] as const;

/** The run the submit examples start. */
export const SUBMIT = { subcommand: "submit", preset: "sinusoid-maml" } as const;
