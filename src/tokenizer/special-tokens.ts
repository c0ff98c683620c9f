import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InputError, fromSystemError } from '../errors.js';
import type { ManifestTokenizer } from '../manifest/schema.js';
import { idList } from '../models/index.js';

/**
 * A tokenizer's facts, read from the model's own files: never hard-coded. BOS/PAD come from
 * generation_config.json, then config.json, then tokenizer_config.json (token strings resolved
 * through tokenizer.json); EOS is the union of generation_config's list and config's id.
 */

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> | Array<[string, number]> };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
}

export interface TokenizerVocabulary {
  size: number;
  idOf(token: string): number | undefined;
  tokenOf(id: number): string | undefined;
  isSpecial(id: number): boolean;
}

export function readJson<T>(path: string, what: string): T {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (error) {
    const environment = fromSystemError(error);
    if (environment) throw environment;
    const code = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'E_FILE_NOT_FOUND' : 'E_BAD_JSON';
    throw new InputError(code, `${what} ${path}: ${code === 'E_FILE_NOT_FOUND' ? 'missing' : (error as Error).message}`);
  }
}

/** The vocabulary of a tokenizer.json: model vocab plus added tokens. */
export function readVocabulary(tokenizerJsonPath: string): TokenizerVocabulary {
  const json = readJson<TokenizerJson>(tokenizerJsonPath, 'tokenizer');
  const byToken = new Map<string, number>();
  const byId = new Map<number, string>();
  const vocab = json.model?.vocab;
  if (Array.isArray(vocab)) vocab.forEach(([token], id) => { byToken.set(token, id); byId.set(id, token); });
  else if (vocab) for (const [token, id] of Object.entries(vocab)) { byToken.set(token, id); byId.set(id, token); }
  const special = new Set<number>();
  for (const t of json.added_tokens ?? []) {
    byToken.set(t.content, t.id);
    byId.set(t.id, t.content);
    if (t.special) special.add(t.id);
  }
  let size = 0;
  for (const id of byId.keys()) size = Math.max(size, id + 1);
  return { size, idOf: (t) => byToken.get(t), tokenOf: (id) => byId.get(id), isSpecial: (id) => special.has(id) };
}

type TokenRef = string | { content?: string } | null | undefined;

function tokenString(ref: TokenRef): string | undefined {
  if (typeof ref === 'string') return ref;
  return ref?.content;
}

/** Reads the tokenizer facts of a folder holding tokenizer files and the model's configs. */
export function readTokenizerFacts(dir: string, options: { synthetic: boolean }): ManifestTokenizer {
  const hasJson = existsSync(join(dir, 'tokenizer.json'));
  const hasModel = existsSync(join(dir, 'tokenizer.model'));
  if (!hasJson && !hasModel) {
    throw new InputError('E_NO_TOKENIZER', `${dir} has neither tokenizer.json nor tokenizer.model`, { hint: "ship the model's own tokenizer files" });
  }
  const files = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'].filter((f) => existsSync(join(dir, f)));
  const config = readJson<Record<string, unknown>>(join(dir, 'config.json'), 'model config');
  const generation = existsSync(join(dir, 'generation_config.json')) ? readJson<Record<string, unknown>>(join(dir, 'generation_config.json'), 'generation config') : {};
  const tokConfig = existsSync(join(dir, 'tokenizer_config.json')) ? readJson<Record<string, TokenRef>>(join(dir, 'tokenizer_config.json'), 'tokenizer config') : {};
  const vocab = hasJson ? readVocabulary(join(dir, 'tokenizer.json')) : undefined;
  const fromTokenizer = (key: string): number | undefined => {
    const s = tokenString(tokConfig[key]);
    return s === undefined ? undefined : vocab?.idOf(s);
  };
  const first = (...values: unknown[]): number | null => {
    for (const v of values) if (typeof v === 'number') return v;
    return null;
  };
  const bos = first(generation.bos_token_id, config.bos_token_id, fromTokenizer('bos_token'));
  const pad = first(generation.pad_token_id, config.pad_token_id, fromTokenizer('pad_token'));
  let eos = [...new Set([...idList(generation.eos_token_id as number | number[] | null), ...idList(config.eos_token_id as number | number[] | null)])];
  if (eos.length === 0) {
    const t = fromTokenizer('eos_token');
    if (t !== undefined) eos = [t];
  }
  const vocabSize = vocab?.size ?? (typeof config.vocab_size === 'number' ? config.vocab_size : 0);
  return {
    format: hasJson ? 'tokenizer.json' : 'tokenizer.model',
    files,
    bosTokenId: bos,
    eosTokenIds: eos.sort((a, b) => a - b),
    padTokenId: pad,
    vocabSize,
    synthetic: options.synthetic,
  };
}
