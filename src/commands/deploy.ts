import type { Output } from '../cli/output.js';
import { deployArtifacts } from '../artifacts/deploy.js';
import type { Layout } from '../artifacts/layouts.js';
import { UsageError } from '../errors.js';
import type { Precision } from '../vocabulary.js';
import { bytes } from './inspect-render.js';

/** As commander hands them over, each flag parsed and checked (src/cli/main.ts). */
export interface DeployOptions { to?: string; precision: Precision; force?: boolean; allowUnverified?: boolean; layout: Layout }

/** `sphana deploy ARTIFACT_DIR --to DIR [--precision int8|fp32]`. */
export async function run([artifact]: string[], options: DeployOptions, out: Output): Promise<number> {
  if (!options.to) throw new UsageError('--to DIR is required');
  const step = out.step(`deploy ${options.precision} (${options.layout} layout) to ${options.to}`);
  const report = await deployArtifacts(artifact, options.to, options.precision, { force: options.force, allowUnverified: options.allowUnverified, layout: options.layout }).catch((e) => { step.fail(); throw e; });
  step.succeed(`${report.files.length} files, sha256 checked`);
  out.json(JSON.stringify(report));
  for (const f of report.files) out.result(`${f.path.padEnd(32)} ${bytes(f.bytes).padStart(10)}  ${f.sha256.slice(0, 16)}`);
  return 0;
}
