// The factored episode (meta/algorithms/factored-episode.ts) with the MLP's hidden kernels factored
// too, against the input kernel alone, at a few ratios of layer width to support rows: whole
// task-batched shards of bench/cases.ts learners, the settings alternated shard by shard in one
// process so the host's drift hits all alike. Records bench/results/factored-<case>.json.
//   node --import tsx bench/factored.ts --backend tfjs-node [--case omniglot-mlp]
//        [--algorithms maml,fomaml,reptile] [--ratios Infinity,8,4,1] [--rounds 7]
import { setHiddenFactorRatio } from "../meta/algorithms/factored-episode.js";
import { alternateShards, benchCase } from "./cases.js";
import { arg, log, machine, numArg, record, setupBackend } from "./common.js";

const caseId = arg("case", "omniglot-mlp");
const algorithms = arg("algorithms", "maml,fomaml,reptile").split(",");
const ratios = arg("ratios", "Infinity,8,4,1").split(",").map(Number);
const rounds = numArg("rounds", 7);

await setupBackend();
const DEFAULT = setHiddenFactorRatio(Infinity);
setHiddenFactorRatio(DEFAULT);
const name = (r: number) => (r === Infinity ? "input kernel only" : `hidden at width ≥ ${r}× rows${r === DEFAULT ? " (default)" : ""}`);
const c = benchCase(caseId, algorithms);
log(`${caseId}, task-batched shards of ${c.shard}, ms a shard (median of ${rounds}, alternated)`);
const shards = await alternateShards(c, algorithms, ratios.map((r) => ({ name: name(r), apply: () => setHiddenFactorRatio(r) })), { rounds, batched: true });
setHiddenFactorRatio(DEFAULT);
record(`factored-${caseId}`, { machine: machine(), date: new Date().toISOString(), rounds, ratios, shards });
log("done");
