import { readFileSync } from 'node:fs';
import { Tokenizer } from '@huggingface/tokenizers';
import type { Artifact } from './artifact.js';

/** The artifact's own tokenizer, loaded with @huggingface/tokenizers. */
export interface LoadedTokenizer {
  tokenizer: Tokenizer;
  /** Highest id + 1 over the vocabulary and added tokens. */
  vocabSize: number;
  /** Ids of added tokens flagged special. */
  special: Set<number>;
  encode(text: string, addSpecial?: boolean): number[];
  decode(ids: number[], skipSpecial?: boolean): string;
}

export function tokenizerPaths(artifact: Artifact): { json?: string; config?: string; model?: string } {
  const files = artifact.manifest.tokenizer.files;
  const find = (name: string) => files.find((f) => f === name || f.endsWith(`/${name}`));
  return { json: find('tokenizer.json'), config: find('tokenizer_config.json'), model: find('tokenizer.model') };
}

/** Loads tokenizer.json (+ tokenizer_config.json when listed). Throws on unreadable files. */
export function loadTokenizer(artifact: Artifact): LoadedTokenizer {
  const paths = tokenizerPaths(artifact);
  if (!paths.json) throw new Error('the manifest lists no tokenizer.json');
  return loadTokenizerFiles(artifact.abs(paths.json), paths.config ? artifact.abs(paths.config) : undefined);
}

/** Loads a tokenizer.json (and its tokenizer_config.json, when given) from absolute paths. */
export function loadTokenizerFiles(jsonPath: string, configPath?: string): LoadedTokenizer {
  const json = JSON.parse(readFileSync(jsonPath, 'utf8')) as object;
  const config = configPath ? (JSON.parse(readFileSync(configPath, 'utf8')) as object) : {};
  const tokenizer = new Tokenizer(json, config);
  let vocabSize = 0;
  for (const id of tokenizer.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const special = new Set<number>();
  for (const [id, token] of tokenizer.get_added_tokens_decoder()) if (token.special) special.add(id);
  return {
    tokenizer,
    vocabSize,
    special,
    encode: (text, addSpecial = true) => tokenizer.encode(text, { add_special_tokens: addSpecial }).ids,
    decode: (ids, skipSpecial = false) => tokenizer.decode(ids, { skip_special_tokens: skipSpecial, clean_up_tokenization_spaces: false }),
  };
}
