/** Helpers for the Python-side tests: temp folders, fake executables, process liveness. */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function tempDir(prefix = 'sphana-py-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Writes an executable file. */
export function script(path: string, text: string): string {
  writeFileSync(path, text);
  chmodSync(path, 0o755);
  return path;
}

/** A shell script answering sphana's probe like a Python of `version` would. */
export function fakePython(path: string, version: string, venv: 'yes' | 'no' = 'yes', executable = `/opt/fake/python${version}`): string {
  return script(path, `#!/bin/sh\necho "sphana-probe ${version} ${venv} ${executable}"\n`);
}

/**
 * Whether a process is alive. A zombie counts as dead: in containers whose PID 1 does
 * not reap, a killed orphan lingers as a zombie.
 */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return process.platform !== 'linux';
  }
}

/** Polls until `check` holds (a liveness check after a kill may race the kernel by a few ms). */
export async function eventually(check: () => boolean, ms = 5000): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (check()) return true;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return check();
}

/**
 * A fake base Python: answers the probe, makes a "venv" whose python is a copy of itself,
 * and plays pip (failing when FAKE_PIP_FAIL is set). The venv records its own path in
 * bin/activate and in a script's shebang, as real venvs do. As the venv's python it also
 * answers the bridge's `versions` (onnx at $FAKE_ONNX_VERSION, default 1.23.2).
 */
export const FAKE_PYTHON = `#!/bin/sh
if [ "$1" = "-c" ]; then echo "sphana-probe 3.11.7 yes $0"; exit 0; fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin" && cp "$0" "$3/bin/python"
  echo "VIRTUAL_ENV=\\"$3\\"" > "$3/bin/activate"
  printf '#!%s/bin/python\\n' "$3" > "$3/bin/tool"
  echo "home = /opt/fake" > "$3/pyvenv.cfg"
  exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "sphana_bridge" ] && [ "$3" = "versions" ]; then
  echo '{"type":"progress","step":"versions","fraction":null,"message":""}'
  echo "{\\"type\\":\\"result\\",\\"data\\":{\\"python\\":\\"3.11.7\\",\\"packages\\":{\\"onnx\\":\\"\${FAKE_ONNX_VERSION:-1.23.2}\\",\\"torch\\":\\"2.13.0+cpu\\"}}}"
  exit 0
fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  echo "$@" > "$(dirname "$0")/../pip-args"
  echo "Looking in indexes: file:///x"
  echo "Collecting onnx==1.23.2"
  echo "  Downloading onnx-1.23.2.whl (16 MB)"
  if [ -n "$FAKE_PIP_FAIL" ]; then echo "ERROR: No matching distribution found for onnx==1.23.2" >&2; echo "[notice] done" >&2; exit 1; fi
  echo "Installing collected packages: onnx"
  echo "Successfully installed onnx-1.23.2"
  exit 0
fi
exit 0
`;
