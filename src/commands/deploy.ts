import type { Output } from '../cli/output.js';
import { deployArtifacts } from '../artifacts/deploy.js';
import { LAYOUTS, isLayout } from '../artifacts/layouts.js';
import { UsageError } from '../errors.js';
import { PRECISIONS, type Precision } from '../manifest/schema.js';
import { bytes } from './inspect-render.js';

export interface DeployOptions { to?: string; precision: string; force?: boolean; allowUnverified?: boolean; layout: string }

/** `sphana deploy ARTIFACT_DIR --to DIR [--precision int8|fp32]`. */
export async function run([artifact]: string[], options: DeployOptions, out: Output): Promise<number> {
  if (!options.to) throw new UsageError('--to DIR is required');
  if (!(PRECISIONS as readonly string[]).includes(options.precision)) throw new UsageError(`--precision must be one of ${PRECISIONS.join(', ')}`);
  if (!isLayout(options.layout)) throw new UsageError(`--layout must be one of ${LAYOUTS.join(', ')}`);
  const step = out.step(`deploy ${options.precision} (${options.layout} layout) to ${options.to}`);
  const report = await deployArtifacts(artifact, options.to, options.precision as Precision, { force: options.force, allowUnverified: options.allowUnverified, layout: options.layout }).catch((e) => { step.fail(); throw e; });
  step.succeed(`${report.files.length} files, sha256 checked`);
  out.json(JSON.stringify(report));
  for (const f of report.files) out.result(`${f.path.padEnd(32)} ${bytes(f.bytes).padStart(10)}  ${f.sha256.slice(0, 16)}`);
  return 0;
}
