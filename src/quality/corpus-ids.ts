import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readTokenizerFacts } from '../tokenizer/special-tokens.js';
import { type LoadedTokenizer, loadTokenizerFiles } from '../verify/tokenizer-load.js';
import { CORPUS, CORPUS_VERSION, type CorpusSegment } from './corpus.js';

/** The token ids a quality measurement feeds, and where they came from. */
export interface QualityText {
  source: 'corpus' | 'synthetic';
  corpusVersion: number;
  /** One sequence per corpus segment (BOS first when the tokenizer has one). */
  sequences: number[][];
  /** Why synthetic ids were used, when they were. */
  why?: string;
}

/** Synthetic sequences: as many as the corpus has segments, 64 ids each, deterministic. */
export function syntheticSequences(vocab: number): number[][] {
  return CORPUS.map((_, seed) => {
    let state = (seed * 2654435761 + 12345) >>> 0;
    return Array.from({ length: 64 }, () => {
      state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
      return state % vocab;
    });
  });
}

/**
 * The corpus through a tokenizer, BOS first when `bos` is given. Falls back to synthetic ids
 * when there is no tokenizer, it is synthetic (generated for random weights, not the model's
 * own), or it produces ids outside the model's `vocab` logits.
 */
export function qualityText(tokenizer: LoadedTokenizer | null, options: { vocab: number; bos: number | null; synthetic: boolean }): QualityText {
  const synthetic = (why: string): QualityText => ({ source: 'synthetic', corpusVersion: CORPUS_VERSION, sequences: syntheticSequences(options.vocab), why });
  if (options.synthetic) return synthetic('the tokenizer is synthetic');
  if (!tokenizer) return synthetic('no tokenizer');
  const sequences = encodeSegments(tokenizer, CORPUS, options);
  if (!sequences) return synthetic(`the tokenizer cannot encode for this model (ids outside its ${options.vocab} logits)`);
  return { source: 'corpus', corpusVersion: CORPUS_VERSION, sequences };
}

/** Each segment through the tokenizer (BOS first when given); null when an id falls outside `vocab`. */
function encodeSegments(tokenizer: LoadedTokenizer, segments: readonly CorpusSegment[], options: { vocab: number; bos: number | null }): number[][] | null {
  const sequences: number[][] = [];
  for (const segment of segments) {
    let ids = tokenizer.encode(segment.text);
    if (options.bos !== null && ids[0] !== options.bos) ids = [options.bos, ...ids];
    if (ids.length < 2 || !ids.every((id) => Number.isInteger(id) && id >= 0 && id < options.vocab)) return null;
    sequences.push(ids);
  }
  return sequences;
}

/** Where the quantize check finds a model's tokenizer: a folder with tokenizer.json (+ configs). */
export interface TokenizerSource {
  dir: string;
  /** True when the tokenizer was generated for synthetic weights. */
  synthetic: boolean;
}

/** The tokenizer in `source.dir` and its BOS id, or why there is none. */
function loadDirTokenizer(source: TokenizerSource | null): { tokenizer: LoadedTokenizer; bos: number | null } | { why: string } {
  const json = source ? join(source.dir, 'tokenizer.json') : null;
  if (!source || !json || !existsSync(json)) return { why: 'no tokenizer.json beside the model' };
  let tokenizer: LoadedTokenizer;
  try {
    const config = join(source.dir, 'tokenizer_config.json');
    tokenizer = loadTokenizerFiles(json, existsSync(config) ? config : undefined);
  } catch (error) {
    return { why: `tokenizer unreadable: ${(error as Error).message}` };
  }
  let bos: number | null = null;
  try {
    bos = readTokenizerFacts(source.dir, { synthetic: source.synthetic }).bosTokenId;
  } catch {
    // No config.json beside the tokenizer: the corpus is fed without BOS.
  }
  return { tokenizer, bos };
}

/** The corpus through the tokenizer in `source.dir` (synthetic ids when it is absent, synthetic or foreign). */
export function qualityTextFromDir(source: TokenizerSource | null, vocab: number): QualityText {
  const loaded = loadDirTokenizer(source);
  if ('why' in loaded) return { ...qualityText(null, { vocab, bos: null, synthetic: false }), why: loaded.why };
  return qualityText(loaded.tokenizer, { vocab, bos: loaded.bos, synthetic: source!.synthetic });
}

/**
 * Other text (the equalization's calibration segments) through the tokenizer in `source.dir`, BOS
 * first; null when there is no real tokenizer for this model (absent, unreadable, synthetic, or ids
 * outside `vocab`): synthetic weights are never calibrated.
 */
export function segmentIdsFromDir(source: TokenizerSource | null, vocab: number, segments: readonly CorpusSegment[]): number[][] | null {
  return textsFromDir(source, vocab, segments).segments;
}

/**
 * qualityTextFromDir() and segmentIdsFromDir() with one load of the tokenizer (a tokenizer.json
 * of a 128k vocabulary takes about a second to build): what the quantize gate needs.
 */
export function textsFromDir(source: TokenizerSource | null, vocab: number, segments: readonly CorpusSegment[]): { quality: QualityText; segments: number[][] | null } {
  const loaded = loadDirTokenizer(source);
  if ('why' in loaded) return { quality: { ...qualityText(null, { vocab, bos: null, synthetic: false }), why: loaded.why }, segments: null };
  return {
    quality: qualityText(loaded.tokenizer, { vocab, bos: loaded.bos, synthetic: source!.synthetic }),
    segments: source!.synthetic ? null : encodeSegments(loaded.tokenizer, segments, { vocab, bos: loaded.bos }),
  };
}
