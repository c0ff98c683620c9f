import { statSync } from 'node:fs';
import { dirname, posix } from 'node:path';
import { sha256File } from '../artifacts/files.js';
import { unsafePathInReason } from '../security/safe-path.js';
import { type Artifact, isSummary } from './artifact.js';
import { checkResult, listSome, mb } from './check.js';
import type { CheckResult } from './types.js';

/**
 * Check 1, files: every file the manifest lists exists with its recorded size and sha256,
 * every model the manifest names is listed, and no model references external data the
 * manifest does not list (or that is missing or short).
 */
export async function checkFiles(artifact: Artifact): Promise<CheckResult> {
  const started = performance.now();
  const { manifest } = artifact;
  const problems: string[] = [];
  const missing: string[] = [];
  const sizeMismatch: Array<{ path: string; expected: number; actual: number }> = [];
  const shaMismatch: Array<{ path: string; expected: string; actual: string }> = [];
  const unsafe: string[] = [];
  let bytes = 0;
  for (const file of manifest.files) {
    const reason = unsafePathInReason(artifact.dir, file.path);
    if (reason) {
      unsafe.push(file.path);
      problems.push(`${file.path}: unsafe path (${reason})`);
      continue;
    }
    const stat = statSync(artifact.abs(file.path), { throwIfNoEntry: false });
    if (!stat?.isFile()) {
      missing.push(file.path);
      problems.push(`${file.path} is missing`);
      continue;
    }
    bytes += stat.size;
    if (stat.size !== file.bytes) {
      sizeMismatch.push({ path: file.path, expected: file.bytes, actual: stat.size });
      problems.push(`${file.path} is ${stat.size} bytes, the manifest records ${file.bytes}${stat.size < file.bytes ? ' (truncated)' : ''}`);
      continue;
    }
    const sha = await sha256File(artifact.abs(file.path));
    if (sha !== file.sha256) {
      shaMismatch.push({ path: file.path, expected: file.sha256, actual: sha });
      problems.push(`${file.path} has sha256 ${sha.slice(0, 12)}…, the manifest records ${file.sha256.slice(0, 12)}… (the file was changed)`);
    }
  }
  const listed = new Set(manifest.files.map((f) => f.path));
  const unlistedModels = manifest.models.map((m) => m.path).filter((p) => !listed.has(p));
  for (const p of unlistedModels) problems.push(`model ${p} is not in the manifest's files list`);
  const unlistedReferences: Array<{ model: string; location: string }> = [];
  const externalProblems: Array<{ model: string; location: string; status: string }> = [];
  for (const model of manifest.models) {
    if (missing.includes(model.path) || unsafe.includes(model.path)) continue;
    const summary = artifact.summary(model.path);
    if (!isSummary(summary)) {
      problems.push(`cannot read ${summary.error}`);
      continue;
    }
    const folder = dirname(model.path) === '.' ? '' : `${dirname(model.path)}/`;
    for (const ext of summary.externalDataFiles) {
      const path = posix.normalize(`${folder}${ext.location}`);
      if (!listed.has(path)) {
        unlistedReferences.push({ model: model.path, location: ext.location });
        problems.push(`${model.path} references external data ${ext.location}, which the manifest does not list`);
      }
      if (ext.status !== 'ok' && !missing.includes(path) && !sizeMismatch.some((s) => s.path === path)) {
        externalProblems.push({ model: model.path, location: ext.location, status: ext.status });
        problems.push(`${model.path}: external data ${ext.location} is ${ext.status}${ext.reason ? ` (${ext.reason})` : ''}`);
      }
    }
  }
  const figures = {
    files: manifest.files.length,
    bytes,
    missing,
    sizeMismatch,
    shaMismatch,
    unsafe,
    unlistedModels,
    unlistedReferences,
    externalProblems,
  };
  if (problems.length) {
    const head = problems[0];
    return checkResult('files', 'failed', started, figures, problems.length > 1 ? `${head} (+${problems.length - 1} more: ${listSome(problems.slice(1), 2)})` : head);
  }
  return checkResult('files', 'passed', started, figures, `${manifest.files.length} files, ${mb(bytes)}: sizes and sha256 match, external data all listed`);
}
