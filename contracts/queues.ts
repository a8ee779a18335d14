// Task-queue names: shard inner loops go to `gpu` workers; workflows and the outer step, checkpoint
// and initialisation to the `coordinator`.
export const TASK_QUEUES = {
  gpu: "metatrain-gpu",
  coordinator: "metatrain-coordinator",
} as const;

/** Workflow type name of a meta-training run. */
export const WORKFLOW_TYPE = "metaTrainingWorkflow";

/** Where workers and the CLI look for Temporal when TEMPORAL_ADDRESS is unset (what `metatrain dev` serves). */
export const DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233";
