// `metatrain presets`: the named configurations, with their sources and resolved settings.
import type { Command } from "commander";

export function registerPresets(program: Command): void {
  program
    .command("presets")
    .description("list the presets (paper hyperparameters) with their configs")
    .option("--json", "machine-readable output: [{name, description, source, config}]")
    .action(async (opts: { json?: boolean }) => {
      const [{ PRESETS }, { parseRunConfig }] = await Promise.all([import("../../meta/algorithms/registry.js"), import("../../meta/run-config.js")]);
      if (opts.json) {
        const out = PRESETS.map((p) => ({ name: p.name, description: p.description, source: p.source, config: parseRunConfig(p.config) }));
        process.stdout.write(JSON.stringify(out, null, 2) + "\n");
        return;
      }
      for (const p of PRESETS) {
        const c = parseRunConfig(p.config);
        process.stdout.write(`${p.name}\n  ${p.description}\n  source: ${p.source}\n`);
        const own = c[c.algorithm] as Record<string, unknown> | undefined;
        const extra = own && Object.keys(own).length ? `, ${c.algorithm}: ${JSON.stringify(own)}` : "";
        process.stdout.write(`  ${c.algorithm}, ${c.model.kind}, k=${c.innerSteps} α=${c.innerLr}, meta-batch ${c.metaBatchSize} (shards of ${c.shardSize}), meta lr ${c.metaLr}, ${c.iterations} iterations${extra}\n\n`);
      }
    });
}
