/** Progress figures as one short text, the same on a spinner and in CI's plain lines. */

/** A bridge progress event: "quantize 37 % (model.layers.3.mlp.down_proj)". */
export function progressText(p: { step: string; fraction: number | null; message: string }): string {
  return `${p.step}${p.fraction === null ? '' : ` ${Math.round(p.fraction * 100)} %`}${p.message ? ` (${p.message})` : ''}`;
}

/** What a download reports: bytes so far and, when the server said, the total. */
export interface DownloadProgress { file: string; index: number; files: number; bytes: number; totalBytes: number | null }

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/** "model.safetensors (2/3): 512.0 MB / 2471.6 MB (21 %)". */
export function downloadText(p: DownloadProgress): string {
  const of = p.totalBytes ? ` / ${mb(p.totalBytes)} (${Math.floor((100 * p.bytes) / p.totalBytes)} %)` : '';
  return `${p.file} (${p.index}/${p.files}): ${mb(p.bytes)}${of}`;
}
