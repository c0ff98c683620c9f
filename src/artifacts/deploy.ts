import { copyFileSync, lstatSync, mkdirSync, readFileSync, readdirSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join, parse, relative, resolve, sep } from 'node:path';
import { removeOnExit, runTag, sweepDeadStaging } from '../cleanup.js';
import { InputError, JobFailedError, SphanaError } from '../errors.js';
import { readManifest } from '../manifest/read.js';
import { MANIFEST_FILE, type Manifest, type ManifestFile, type Precision } from '../manifest/schema.js';
import { isInside, safePathIn } from '../security/safe-path.js';
import { fileBytes, fsyncPath, renameDurable, sha256File } from './files.js';
import { acquireLock } from './lock.js';
import { type Layout, PLAIN_MODEL, layoutPlan } from './layouts.js';

export const DEPLOYED_MODEL = PLAIN_MODEL;

export interface DeployReport {
  from: string;
  to: string;
  precision: Precision;
  files: Array<{ path: string; bytes: number; sha256: string }>;
}

export interface DeployOptions {
  /** Replace `to` if it holds a previous sphana deployment (and nothing else). */
  force?: boolean;
  /** Deploy an artifact whose recorded verification failed or never ran. */
  allowUnverified?: boolean;
  /** The consumer layout (src/artifacts/layouts.ts); default plain. */
  layout?: Layout;
}

/**
 * Copies one precision's model (as llm_generator.onnx; its external data keeps its name, so
 * references stay valid), the tokenizer and config files and a manifest describing the
 * deployed set into `to`. Every source path goes through the path validator (inside the
 * artifact folder, symlinks followed), every file's size is checked before it is copied and
 * its sha256 after (the genai config's before it is rewritten), everything is staged beside
 * `to` under a name unique to the run and flushed to disk, and the folder appears by rename:
 * a consumer never sees a half-copied set. `to` is locked for the run; `--force` replaces
 * only a previous sphana deployment, never the current, home or artifact folder.
 */
export async function deployArtifacts(artifact: string, to: string, precision: Precision, options: DeployOptions = {}): Promise<DeployReport> {
  const { dir, manifest } = readManifest(artifact);
  const model = manifest.models.find((m) => m.precision === precision);
  if (!model) {
    throw new InputError('E_NO_SUCH_PRECISION', `${artifact} has no ${precision} model (it has ${manifest.models.map((m) => m.precision).join(', ')})`, { hint: 'choose --precision from those' });
  }
  const verification = manifest.verification as { ok?: unknown } | null;
  if (verification?.ok !== true && !options.allowUnverified) {
    const why = verification ? 'failed its verification' : 'was never verified';
    throw new JobFailedError('E_UNVERIFIED', `${dir} ${why}; deploy refuses it`, { hint: `run \`sphana verify ${artifact}\` (or export without --no-verify), or pass --allow-unverified` });
  }
  const target = resolve(to);
  checkTargetPlace(target, dir);
  const layout = layoutPlan(options.layout ?? 'plain', manifest, precision);
  const plan = layout.files;
  const names = new Set<string>();
  for (const p of plan) {
    if (names.has(p.name) || p.name === MANIFEST_FILE) throw new InputError('E_BAD_MANIFEST', `two deployed files would be named ${p.name}`, { hint: 'the manifest is damaged or not written by sphana' });
    names.add(p.name);
  }

  const release = acquireLock(target, `sphana deploy ${precision}`);
  try {
    const parent = dirname(target);
    const prefix = `.${basename(target)}.sphana-deploy-`;
    sweepDeadStaging(parent, prefix);
    if (lexists(target)) {
      if (!options.force) throw new InputError('E_OUTPUT_EXISTS', `${target} already exists`, { hint: 'pass --force to replace a previous sphana deployment' });
      checkPreviousDeployment(target);
    }
    const staging = join(parent, `${prefix}${runTag()}`);
    mkdirSync(staging, { recursive: true });
    const forget = removeOnExit(staging);
    try {
      const files: DeployReport['files'] = [];
      for (const { from, name } of plan) {
        const source = safePathIn(dir, from.path, { what: 'manifest files[] entry' });
        const stat = lstatSync(realpathSync(source));
        if (!stat.isFile()) throw new InputError('E_BAD_MANIFEST', `${from.path} is not a regular file`, { hint: 'the artifact is damaged' });
        if (stat.size !== from.bytes) throw mismatch(from, `is ${stat.size} bytes, the manifest records ${from.bytes}`);
        const dest = join(staging, name);
        mkdirSync(dirname(dest), { recursive: true });
        copyFileSync(source, dest);
        const sha = await sha256File(dest);
        if (sha !== from.sha256 || fileBytes(dest) !== from.bytes) throw mismatch(from, `the copy's sha256 ${sha.slice(0, 12)}… differs from the manifest's ${from.sha256.slice(0, 12)}…`);
        // Checked against the record above, then rewritten as the layout needs (genai_config.json's model name, transformers.js_config).
        let rewritten: Record<string, unknown> | undefined;
        if (from.path.endsWith('.json')) {
          let json: Record<string, unknown>;
          try {
            json = JSON.parse(readFileSync(dest, 'utf8')) as Record<string, unknown>;
          } catch (error) {
            throw new InputError('E_BAD_JSON', `${from.path}: ${(error as Error).message}`);
          }
          rewritten = layout.rewrite(from.role, json);
          if (rewritten) writeFileSync(dest, `${JSON.stringify(rewritten, null, 2)}\n`);
        }
        fsyncPath(dest);
        files.push({ path: name, bytes: fileBytes(dest), sha256: rewritten ? await sha256File(dest) : sha });
      }
      const roleOf = new Map(plan.map((p) => [p.name, p.from]));
      const deployed: Manifest = {
        ...manifest,
        models: layout.models,
        files: files.map((f) => ({ ...f, role: roleOf.get(f.path)!.role, ...(roleOf.get(f.path)!.precision ? { precision: roleOf.get(f.path)!.precision } : {}) })),
        tokenizer: { ...manifest.tokenizer, files: manifest.tokenizer.files.map((f) => basename(f)) },
      };
      writeFileSync(join(staging, MANIFEST_FILE), `${JSON.stringify(deployed, null, 2)}\n`);
      if (lexists(target)) {
        const trash = `${staging}.old`;
        renameSync(target, trash);
        renameDurable(staging, target);
        rmSync(trash, { recursive: true, force: true });
      } else {
        renameDurable(staging, target);
      }
      return { from: dir, to: target, precision, files };
    } finally {
      rmSync(staging, { recursive: true, force: true });
      forget();
    }
  } finally {
    release();
  }
}

function mismatch(from: ManifestFile, what: string): JobFailedError {
  return new JobFailedError('E_COPY_MISMATCH', `${from.path}: ${what}`, { hint: 'the artifact changed since export; run `sphana verify` on it' });
}

function lexists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function real(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** The target is never the current, home or root folder, the artifact folder, one of its ancestors or inside it. */
function checkTargetPlace(target: string, artifactDir: string): void {
  const t = real(target);
  const artifact = real(artifactDir);
  const refuse = (why: string) => new SphanaError('E_UNSAFE_TARGET', `--to ${target} ${why}; deploy refuses to write there`, 'usage', { hint: 'pass --to a new folder of its own' });
  if (t === parse(t).root) throw refuse('is the root folder');
  if (t === real(process.cwd())) throw refuse('is the current folder');
  if (t === real(homedir())) throw refuse('is the home folder');
  if (t === artifact) throw refuse('is the artifact folder');
  if (isInside(t, artifact)) throw refuse('holds the artifact folder');
  if (isInside(artifact, t)) throw refuse('is inside the artifact folder');
}

/** `--force` replaces only a folder holding a sphana deployment's manifest and nothing the manifest does not list. */
function checkPreviousDeployment(target: string): void {
  const notOurs = (why: string) => new InputError('E_NOT_A_DEPLOYMENT', `${target} ${why}; --force replaces only a previous sphana deployment`, {
    hint: 'remove it yourself if it is really meant to go, or deploy to a new folder',
  });
  const stat = lstatSync(target);
  if (stat.isSymbolicLink()) throw notOurs('is a symbolic link');
  if (!stat.isDirectory()) throw notOurs('is not a folder');
  let manifest: Manifest;
  try {
    manifest = readManifest(target).manifest;
  } catch (error) {
    if (error instanceof SphanaError) throw notOurs(`has no valid ${MANIFEST_FILE} (${error.code})`);
    throw error;
  }
  const listed = new Set([MANIFEST_FILE, ...manifest.files.map((f) => f.path)]);
  const walk = (d: string): string[] => readdirSync(d, { withFileTypes: true }).flatMap((e) => {
    const p = join(d, e.name);
    return e.isDirectory() ? walk(p) : [relative(target, p).split(sep).join('/')];
  });
  const extra = walk(target).filter((p) => !listed.has(p));
  if (extra.length) throw notOurs(`holds ${extra.length} file${extra.length === 1 ? '' : 's'} its manifest does not list (${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', …' : ''})`);
}
