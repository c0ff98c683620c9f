import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { PipProgress, requirementCount } from '../../src/python/environment.js';
import { ROOT } from '../helpers/paths.js';

test('requirementCount counts the pinned packages of python-bridge/requirements.txt, not comments', () => {
  const text = readFileSync(join(ROOT, 'python-bridge/requirements.txt'), 'utf8');
  const pins = text.split('\n').filter((l) => /^[A-Za-z0-9_.-]+==/.test(l)).length;
  assert.ok(pins >= 10);
  assert.equal(requirementCount(text), pins);
  assert.equal(requirementCount('# only a comment\n\nnumpy==2.4.6  # trailing\n-r other.txt\n'), 1);
});

test("PipProgress turns pip's lines into k/N figures, counting each package once", () => {
  const p = new PipProgress(3);
  assert.equal(p.line('Processing /root/wheels/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl (from -r /x/requirements.txt (line 5))'), 'collecting torch 2.13.0+cpu (1/3)');
  assert.equal(p.line('Collecting numpy==2.4.6 (from -r /x/requirements.txt (line 2))'), 'collecting numpy 2.4.6 (2/3)');
  assert.equal(p.line('Processing ./numpy-2.4.6-cp311-cp311-manylinux_2_28_x86_64.whl (from -r /x (line 2))'), 'collecting numpy 2.4.6 (2/3)');
  assert.equal(p.line('  Downloading https://files.example/onnx-1.23.2-cp311-abi3.whl (17.2 MB)'), 'downloading onnx-1.23.2-cp311-abi3.whl (17.2 MB) (2/3)');
  assert.equal(p.line('Collecting Jinja2==3.1.6'), 'collecting Jinja2 3.1.6 (3/3)');
  assert.equal(p.line('Installing collected packages: torch, numpy, jinja2, markupsafe'), 'installing 4 packages (torch takes most of the time)');
  assert.equal(p.line('Successfully installed jinja2-3.1.6 markupsafe numpy torch'), 'installed 4 packages');
  assert.equal(p.line('some other pip chatter'), undefined);
});
