import { basename } from 'node:path';
import { InputError, JobFailedError } from '../errors.js';
import type { Manifest, ManifestFile, Precision } from '../manifest/schema.js';

/**
 * Consumer layouts for `sphana deploy --layout`:
 * - plain: the chosen precision's model as llm_generator.onnx, its external data (name kept, so the
 *   model's references stay valid), tokenizer and config files, a manifest of the deployed set.
 * - genai: onnxruntime-genai's folder: the chosen model under its artifact name and a
 *   genai_config.json whose decoder filename names that model.
 * - transformers.js: `onnx/model.onnx` (fp32) and the quantized twin as `onnx/model_int8.onnx`
 *   (INT4 as `onnx/model_q4.onnx`, transformers.js's dtype suffixes), config.json with a
 *   `transformers.js_config`, generation_config.json and the tokenizer files at the top.
 */
export const LAYOUTS = ['plain', 'genai', 'transformers.js'] as const;
export type Layout = (typeof LAYOUTS)[number];

export const PLAIN_MODEL = 'llm_generator.onnx';
const SIDE_ROLES = ['tokenizer', 'tokenizer-config', 'special-tokens', 'config', 'generation-config', 'genai-config'];
/** transformers.js's file suffix per dtype (its DEFAULT_DTYPE_SUFFIX_MAPPING). */
export const TRANSFORMERS_JS_NAMES: Partial<Record<Precision, { file: string; dtype: string }>> = {
  fp32: { file: 'model.onnx', dtype: 'fp32' },
  fp16: { file: 'model_fp16.onnx', dtype: 'fp16' },
  int8: { file: 'model_int8.onnx', dtype: 'int8' },
  int4: { file: 'model_q4.onnx', dtype: 'q4' },
};

export interface LayoutPlan {
  /** Artifact file → its name in the consumer folder. */
  files: Array<{ from: ManifestFile; name: string }>;
  /** The deployed manifest's models. */
  models: Manifest['models'];
  /** Rewrites a copied JSON file for this layout (undefined: copy as it is, sha256 checked). */
  rewrite(role: ManifestFile['role'], json: Record<string, unknown>): Record<string, unknown> | undefined;
}


export function layoutPlan(layout: Layout, manifest: Manifest, precision: Precision): LayoutPlan {
  const byPath = new Map(manifest.files.map((f) => [f.path, f]));
  const entry = (path: string): ManifestFile => {
    const f = byPath.get(path);
    if (!f) throw new JobFailedError('E_MANIFEST_INCOMPLETE', `the manifest does not list ${path}`);
    return f;
  };
  const side = manifest.files.filter((f) => SIDE_ROLES.includes(f.role));
  const chosen = manifest.models.find((m) => m.precision === precision);
  if (!chosen) throw new InputError('E_NO_SUCH_PRECISION', `the artifact has no ${precision} model (it has ${manifest.models.map((m) => m.precision).join(', ')})`, { hint: 'choose --precision from those' });

  if (layout === 'transformers.js') {
    const files: LayoutPlan['files'] = [];
    const models: Manifest['models'] = [];
    for (const model of manifest.models) {
      const name = TRANSFORMERS_JS_NAMES[model.precision];
      if (!name) continue;
      files.push({ from: entry(model.path), name: `onnx/${name.file}` });
      for (const data of model.externalData) files.push({ from: entry(data), name: `onnx/${basename(data)}` });
      models.push({ ...model, path: `onnx/${name.file}`, externalData: model.externalData.map((d) => `onnx/${basename(d)}`) });
    }
    for (const f of side) if (f.role !== 'genai-config') files.push({ from: f, name: basename(f.path) });
    const dtype = TRANSFORMERS_JS_NAMES[precision]?.dtype ?? 'fp32';
    const external = models.some((m) => m.externalData.length > 0);
    return {
      files, models,
      rewrite: (role, json) => (role === 'config' ? {
        ...json,
        // The default dtype is the chosen precision. External data keeps the name the model refers to
        // (onnxruntime resolves it beside the model file, as Node loads it), so no
        // use_external_data_format (which would ask for model.onnx_data instead).
        'transformers.js_config': { dtype, ...(external ? { use_external_data_format: false } : {}) },
      } : undefined),
    };
  }

  const modelName = layout === 'plain' ? PLAIN_MODEL : basename(chosen.path);
  const files: LayoutPlan['files'] = [{ from: entry(chosen.path), name: modelName }];
  for (const data of chosen.externalData) files.push({ from: entry(data), name: basename(data) });
  for (const f of side) files.push({ from: f, name: basename(f.path) });
  return {
    files,
    models: [{ ...chosen, path: modelName, externalData: chosen.externalData.map((d) => basename(d)) }],
    rewrite: (role, json) => {
      if (role !== 'genai-config') return undefined;
      const model = json.model as { decoder?: { filename?: string } } | undefined;
      if (model?.decoder) model.decoder.filename = modelName;
      return json;
    },
  };
}
