import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { removeOnExit } from '../cleanup.js';
import { InputError, JobFailedError } from '../errors.js';
import { readManifest } from '../manifest/read.js';
import { MANIFEST_FILE, type Manifest, type ManifestFile, type Precision } from '../manifest/schema.js';
import { fileBytes, sha256File } from './files.js';

export const DEPLOYED_MODEL = 'llm_generator.onnx';

export interface DeployReport {
  from: string;
  to: string;
  precision: Precision;
  files: Array<{ path: string; bytes: number; sha256: string }>;
}

/**
 * Copies one precision's model (as llm_generator.onnx; its external data keeps its name, so
 * references stay valid), the tokenizer and config files and a manifest describing the
 * deployed set into `to`. Everything is staged beside `to`, every sha256 is checked after
 * copying, and the folder appears by rename: a consumer never sees a half-copied set.
 */
export async function deployArtifacts(artifact: string, to: string, precision: Precision, options: { force?: boolean } = {}): Promise<DeployReport> {
  const { dir, manifest } = readManifest(artifact);
  const model = manifest.models.find((m) => m.precision === precision);
  if (!model) {
    throw new InputError('E_NO_SUCH_PRECISION', `${artifact} has no ${precision} model (it has ${manifest.models.map((m) => m.precision).join(', ')})`, { hint: 'choose --precision from those' });
  }
  const target = resolve(to);
  if (existsSync(target) && !options.force) throw new InputError('E_OUTPUT_EXISTS', `${target} already exists`, { hint: 'pass --force to replace it' });
  const byPath = new Map(manifest.files.map((f) => [f.path, f]));
  const plan: Array<{ from: ManifestFile; name: string }> = [];
  const want = (path: string, name: string) => {
    const entry = byPath.get(path);
    if (!entry) throw new JobFailedError('E_MANIFEST_INCOMPLETE', `the manifest does not list ${path}`);
    plan.push({ from: entry, name });
  };
  want(model.path, DEPLOYED_MODEL);
  for (const data of model.externalData) want(data, basename(data));
  for (const f of manifest.files) {
    if (['tokenizer', 'tokenizer-config', 'special-tokens', 'config', 'generation-config', 'genai-config'].includes(f.role)) want(f.path, basename(f.path));
  }
  const staging = join(dirname(target), `.sphana-deploy-${process.pid}-${Date.now()}`);
  mkdirSync(staging, { recursive: true });
  const forget = removeOnExit(staging);
  try {
    const files: DeployReport['files'] = [];
    for (const { from, name } of plan) {
      const dest = join(staging, name);
      copyFileSync(join(dir, from.path), dest);
      if (from.role === 'genai-config') {
        const json = JSON.parse(readFileSync(dest, 'utf8')) as { model?: { decoder?: { filename?: string } } };
        if (json.model?.decoder) json.model.decoder.filename = DEPLOYED_MODEL;
        writeFileSync(dest, `${JSON.stringify(json, null, 2)}\n`);
      } else {
        const sha = await sha256File(dest);
        if (sha !== from.sha256 || fileBytes(dest) !== from.bytes) {
          throw new JobFailedError('E_COPY_MISMATCH', `${from.path}: the copy's sha256 ${sha.slice(0, 12)}… differs from the manifest's ${from.sha256.slice(0, 12)}…`, {
            hint: 'the artifact changed since export; run `sphana verify` on it',
          });
        }
      }
      files.push({ path: name, bytes: fileBytes(dest), sha256: await sha256File(dest) });
    }
    const deployed: Manifest = {
      ...manifest,
      models: [{ ...model, path: DEPLOYED_MODEL, externalData: model.externalData.map((d) => basename(d)) }],
      files: files.map((f) => ({ ...f, role: plan.find((p) => p.name === f.path)!.from.role, ...(plan.find((p) => p.name === f.path)!.from.precision ? { precision } : {}) })),
      tokenizer: { ...manifest.tokenizer, files: manifest.tokenizer.files.map((f) => basename(f)) },
    };
    writeFileSync(join(staging, MANIFEST_FILE), `${JSON.stringify(deployed, null, 2)}\n`);
    if (existsSync(target)) {
      const trash = `${staging}.old`;
      renameSync(target, trash);
      renameSync(staging, target);
      rmSync(trash, { recursive: true, force: true });
    } else {
      renameSync(staging, target);
    }
    return { from: dir, to: target, precision, files };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    forget();
  }
}
