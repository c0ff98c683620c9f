import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromSystemError } from '../../src/errors.js';
import { reportError } from '../../src/cli/main.js';

/** Issue 10 item 8: file-system errors caused by the environment are exit 4 with the folder named, not "internal error". */
const fsError = (code: string, syscall: string, path: string, dest?: string) =>
  Object.assign(new Error(`${code}: ${syscall} '${path}'`), { code, syscall, path, ...(dest ? { dest } : {}) });

test('ENOSPC, EDQUOT, EACCES, EPERM and EROFS become environment errors naming the folder; others stay bugs', () => {
  const cases: Array<[string, string, string]> = [
    ['ENOSPC', 'E_DISK_FULL', 'free space on the disk holding /data/out, or write elsewhere'],
    ['EDQUOT', 'E_DISK_QUOTA', 'free space within your quota on /data/out, or write elsewhere'],
    ['EACCES', 'E_PERMISSION', 'check the permissions of /data/out'],
    ['EPERM', 'E_PERMISSION', 'check the permissions of /data/out'],
    ['EROFS', 'E_READ_ONLY', '/data/out is on a read-only file system; write elsewhere'],
  ];
  for (const [errno, code, hint] of cases) {
    // The hint names the user's folder, above sphana's hidden staging folder.
    const e = fromSystemError(fsError(errno, 'write', '/data/out/.consumer.sphana-deploy-12-abcdef01/model.onnx'));
    assert.ok(e, errno);
    assert.equal(e.code, code);
    assert.equal(e.exitCode, 4);
    assert.equal(e.hint, hint);
    assert.match(e.message, new RegExp(`\\(${errno} in write: /data/out/\\.consumer\\.sphana-deploy-12-abcdef01/model\\.onnx\\)$`));
  }
  assert.equal(fromSystemError(fsError('ENOENT', 'open', '/x')), undefined);
  assert.equal(fromSystemError('not an error'), undefined);
  const writes: string[] = [];
  const write = process.stderr.write.bind(process.stderr);
  process.stderr.write = ((s: string) => { writes.push(s); return true; }) as typeof process.stderr.write;
  try {
    assert.equal(reportError(fsError('ENOSPC', 'copyfile', '/a/b', '/data/out/x'), { json: false, verbose: false }), 4);
    assert.equal(reportError(new Error('boom'), { json: false, verbose: false }), 70);
  } finally {
    process.stderr.write = write;
  }
  assert.match(writes.join(''), /error E_DISK_FULL: no space left on the device \(ENOSPC in copyfile: \/data\/out\/x\)\n {2}hint: free space on the disk holding \/data\/out, or write elsewhere\n/);
});
