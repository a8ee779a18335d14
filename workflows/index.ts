// The workflows a coordinator worker registers (`workflowsPath` points here), and their signals,
// updates and queries for clients.
export {
  metaTrainingWorkflow,
  pauseSignal,
  resumeSignal,
  cancelSignal,
  setMetaLrUpdate,
  progressQuery,
  MAX_META_LR,
} from "./meta-training.js";
export { orchestrationFloorWorkflow } from "./floor.js";
export { sweepWorkflow, sweepProgressQuery } from "./sweep.js";
