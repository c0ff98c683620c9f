import { join } from 'node:path';
import { isSphanaError } from '../errors.js';
import type { HfConfig } from '../models/index.js';
import { readJson, readTokenizerFacts } from '../tokenizer/special-tokens.js';
import { type Artifact, isSummary, logitsVocab } from './artifact.js';
import { checkResult } from './check.js';
import { ROUND_TRIP_TEXTS } from './prompts.js';
import { type LoadedTokenizer, loadTokenizer, tokenizerPaths } from './tokenizer-load.js';
import type { CheckResult } from './types.js';

/**
 * A model's logits may exceed its tokenizer (vocabularies padded to a multiple of 64 or 128,
 * reserved rows): allowed up to this many unused rows, or 5% of the logits, whichever is larger.
 */
const PADDING_ALLOWANCE = 1024;

/** The logits dimension of the artifact's models (the first readable one), else the manifest's vocab size. */
export function modelVocab(artifact: Artifact): { vocab: number; source: string } {
  for (const model of artifact.manifest.models) {
    const s = artifact.summary(model.path);
    const v = isSummary(s) ? logitsVocab(s) : null;
    if (v !== null) return { vocab: v, source: model.path };
  }
  return { vocab: artifact.manifest.architecture?.vocabSize ?? 0, source: 'manifest.architecture.vocabSize' };
}

/**
 * Check 3, tokenizer: the artifact's own tokenizer loads in TypeScript, its vocabulary fits the
 * model's logits and config.vocab_size, BOS and every EOS are special tokens of it, and it
 * round-trips sample texts. Returns the tokenizer for the later checks when it can encode
 * for this model.
 */
export function checkTokenizer(artifact: Artifact): { result: CheckResult; tokenizer: LoadedTokenizer | null } {
  const started = performance.now();
  const paths = tokenizerPaths(artifact);
  if (!paths.json) {
    const why = paths.model ? 'only a SentencePiece tokenizer.model, which cannot be checked in TypeScript' : 'no tokenizer.json';
    return { result: checkResult('tokenizer', paths.model ? 'skipped' : 'failed', started, { files: artifact.manifest.tokenizer.files }, `the manifest lists ${why}`), tokenizer: null };
  }
  let loaded: LoadedTokenizer;
  try {
    loaded = loadTokenizer(artifact);
  } catch (error) {
    const message = `cannot load the tokenizer: ${String((error as Error).message ?? error).split('\n')[0]}`;
    return { result: checkResult('tokenizer', 'failed', started, { files: artifact.manifest.tokenizer.files }, message), tokenizer: null };
  }
  const problems: string[] = [];
  const logits = modelVocab(artifact);
  let configVocab: number | null = null;
  try {
    const config = readJson<HfConfig>(join(artifact.modelDir, 'config.json'), 'model config');
    configVocab = typeof config.vocab_size === 'number' ? config.vocab_size : null;
  } catch (error) {
    if (!isSphanaError(error)) throw error;
    problems.push(error.message);
  }
  const size = loaded.vocabSize;
  const foreign = 'this tokenizer does not belong to this model';
  if (size > logits.vocab) problems.push(`tokenizer has ${size} tokens but the model's logits have ${logits.vocab}: ${foreign}`);
  else if (logits.vocab - size > Math.max(PADDING_ALLOWANCE, 0.05 * logits.vocab)) {
    problems.push(`tokenizer has ${size} tokens but the model's logits have ${logits.vocab} (${logits.vocab - size} unused): ${foreign}`);
  }
  if (configVocab !== null && size > configVocab) problems.push(`tokenizer has ${size} tokens but config.json says vocab_size ${configVocab}`);
  const recorded = artifact.manifest.tokenizer.vocabSize;
  if (recorded !== size) problems.push(`tokenizer has ${size} tokens, the manifest records ${recorded}`);

  // Special ids: what the manifest records, cross-checked with the configs in the folder now.
  const bos = artifact.manifest.tokenizer.bosTokenId;
  const eos = artifact.manifest.tokenizer.eosTokenIds;
  try {
    const now = readTokenizerFacts(artifact.modelDir, { synthetic: false });
    if (now.bosTokenId !== bos || JSON.stringify(now.eosTokenIds) !== JSON.stringify(eos)) {
      problems.push(`the configs say BOS ${now.bosTokenId} EOS [${now.eosTokenIds.join(', ')}], the manifest records BOS ${bos} EOS [${eos.join(', ')}]`);
    }
  } catch (error) {
    if (!isSphanaError(error)) throw error;
  }
  const specialIds: Array<{ role: string; id: number; token: string | null; special: boolean }> = [];
  for (const [role, id] of [...(bos === null ? [] : [['bos', bos] as const]), ...eos.map((id) => ['eos', id] as const)]) {
    const token = loaded.tokenizer.id_to_token(id) ?? null;
    const special = loaded.special.has(id);
    specialIds.push({ role, id, token, special });
    if (token === null) problems.push(`${role.toUpperCase()} id ${id} is not in the tokenizer's vocabulary`);
    else if (!special) problems.push(`${role.toUpperCase()} id ${id} is '${token}', not a special token of this tokenizer`);
  }
  if (eos.length === 0) problems.push('no EOS token id recorded');

  const failures: Array<{ text: string; decoded: string }> = [];
  let maxId = -1;
  for (const text of ROUND_TRIP_TEXTS) {
    const ids = loaded.encode(text, false);
    for (const id of ids) maxId = Math.max(maxId, id);
    const decoded = loaded.decode(ids);
    // SentencePiece-style tokenizers may add a dummy leading space; that is not a loss.
    if (decoded !== text && decoded !== ` ${text}` && decoded.replace(/^ /, '') !== text) failures.push({ text, decoded });
  }
  if (failures.length) problems.push(`${failures.length} of ${ROUND_TRIP_TEXTS.length} sample texts do not round-trip, e.g. ${JSON.stringify(failures[0].text)} → ${JSON.stringify(failures[0].decoded)}`);
  if (maxId >= logits.vocab) problems.push(`the tokenizer produces id ${maxId}, beyond the model's ${logits.vocab} logits`);

  const figures = {
    vocabSize: size,
    logitsVocab: logits.vocab,
    logitsVocabFrom: logits.source,
    configVocab,
    manifestVocab: recorded,
    specialIds,
    roundTrip: { texts: ROUND_TRIP_TEXTS.length, failed: failures },
    problems,
  };
  const usable = size <= logits.vocab ? loaded : null;
  if (problems.length) {
    return { result: checkResult('tokenizer', 'failed', started, figures, problems.length > 1 ? `${problems[0]} (+${problems.length - 1} more)` : problems[0]), tokenizer: usable };
  }
  const message = `${size} tokens (logits ${logits.vocab}, config ${configVocab}), BOS ${bos ?? 'none'} and EOS ${eos.join('/')} special, ${ROUND_TRIP_TEXTS.length} texts round-trip`;
  return { result: checkResult('tokenizer', 'passed', started, figures, message), tokenizer: usable };
}
