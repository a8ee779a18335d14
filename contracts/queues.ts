// Task-queue names: shard inner loops go to `gpu` workers; workflows and the outer step, checkpoint
// and initialisation to the `coordinator`.
export const TASK_QUEUES = {
  gpu: "metatrain-gpu",
  coordinator: "metatrain-coordinator",
} as const;

/** Workflow type name of a meta-training run. */
export const WORKFLOW_TYPE = "metaTrainingWorkflow";
