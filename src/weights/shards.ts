import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { readJson } from '../tokenizer/special-tokens.js';
import { safePathIn } from '../security/safe-path.js';

/**
 * Checks a Hugging Face folder's weights before anything heavy starts: a single
 * model.safetensors, or an index whose every shard is present and non-empty.
 */
export function checkWeights(dir: string): { files: string[]; bytes: number } {
  if (!existsSync(join(dir, 'config.json'))) {
    throw new InputError('E_NO_CONFIG', `${dir} has no config.json`, { hint: 'pass a Hugging Face model folder' });
  }
  const single = join(dir, 'model.safetensors');
  const index = join(dir, 'model.safetensors.index.json');
  if (existsSync(index)) {
    const json = readJson<{ weight_map?: Record<string, string> }>(index, 'safetensors index');
    const shards = [...new Set(Object.values(json.weight_map ?? {}))].sort();
    // Shard names are read from a file: each must be a plain name inside the folder.
    for (const s of shards) safePathIn(dir, s, { what: 'safetensors shard name' });
    if (shards.length === 0) throw new InputError('E_BAD_INDEX', `${index} maps no weights`, { hint: 'download the model again' });
    const missing = shards.filter((s) => !existsSync(join(dir, s)) || statSync(join(dir, s)).size === 0);
    if (missing.length) {
      throw new InputError('E_MISSING_SHARD', `${dir}: ${missing.length} of ${shards.length} weight shards missing or empty: ${missing.join(', ')}`, {
        hint: 'finish the download (huggingface-cli download …) or pass --weights with a complete folder',
      });
    }
    return { files: shards, bytes: shards.reduce((n, s) => n + statSync(join(dir, s)).size, 0) };
  }
  if (existsSync(single)) {
    const bytes = statSync(single).size;
    if (bytes < 8) throw new InputError('E_MISSING_SHARD', `${single} is empty`, { hint: 'download the model again' });
    return { files: ['model.safetensors'], bytes };
  }
  throw new InputError('E_NO_WEIGHTS', `${dir} has no model.safetensors or model.safetensors.index.json`, {
    hint: 'sphana reads safetensors weights; pass a folder saved with save_pretrained',
  });
}
