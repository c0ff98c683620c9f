/**
 * A fake bridge child for the client tests: a small Node script standing in for
 * `python -m sphana_bridge`, behaving as the request's `mode` says.
 */
import { join } from 'node:path';
import { script, tempDir } from './helpers.js';

const SOURCE = `
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
const [command, flag, json] = process.argv.slice(2);
const request = JSON.parse(json);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
const hang = (extra) => {
  // A grandchild in the same process group that ignores SIGTERM and holds stdout open.
  const grandchild = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: ['ignore', 'inherit', 'inherit'] });
  writeFileSync(request.pidFile, JSON.stringify({ child: process.pid, grandchild: grandchild.pid }));
  extra?.();
  out({ type: 'progress', step: 'started', fraction: null, message: '' });
  setInterval(() => {}, 1000);
};
switch (request.mode) {
  case 'echo':
    out({ type: 'progress', step: 'load', fraction: null, message: 'loading' });
    console.error('a log line');
    out({ type: 'progress', step: 'work', fraction: 0.5, message: 'half way' });
    out({ type: 'result', data: { argv: [command, flag, json], pythonpath: process.env.PYTHONPATH, unbuffered: process.env.PYTHONUNBUFFERED } });
    break;
  case 'result':
    out({ type: 'result', data: request.data });
    break;
  case 'error':
    console.error('Traceback (most recent call last): ...');
    out({ type: 'error', class: request.errorClass, message: 'it went wrong', details: request.details ?? {} });
    process.exit(request.exitCode ?? 1);
    break;
  case 'crash':
    console.error('RuntimeError: boom');
    process.exit(1);
    break;
  case 'signal':
    process.kill(process.pid, 'SIGKILL');
    break;
  case 'no-result':
    out({ type: 'progress', step: 'load', fraction: 0, message: '' });
    break;
  case 'non-json':
    hang(() => process.stdout.write('hello world\\n'));
    break;
  case 'hang':
    hang();
    break;
  case 'long-line':
    // One stdout line of request.chars characters, written in 64 KiB pieces, then a hang.
    hang(() => { for (let n = 0; n < request.chars; n += 65536) process.stdout.write('x'.repeat(Math.min(65536, request.chars - n))); });
    break;
  case 'straggler': {
    // Finishes properly but leaves a process behind in its group.
    const grandchild = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    writeFileSync(request.pidFile, JSON.stringify({ child: process.pid, grandchild: grandchild.pid }));
    out({ type: 'result', data: { ok: true } });
    process.exit(0);
  }
}
`;

/** Writes the fake into a fresh temp folder; returns its path and the pythonCommand that runs it. */
export function makeFakeBridge(): { dir: string; path: string; pythonCommand: [string, string] } {
  const dir = tempDir('sphana-fake-bridge-');
  const path = script(join(dir, 'fake-bridge.mjs'), SOURCE);
  return { dir, path, pythonCommand: [process.execPath, path] };
}
