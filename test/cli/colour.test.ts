import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Chalk } from 'chalk';
import { colour } from '../../src/cli/colour.js';

/**
 * src/cli/colour.ts replaces chalk on every output path (it costs ~20 ms to import); it must
 * write exactly what chalk 5 writes for the styles sphana uses, at every level, on texts with
 * nested colour codes, line breaks (LF and CRLF), empty strings, several arguments and non-strings.
 */
const STYLES = ['bold', 'dim', 'red', 'green', 'yellow'] as const;
const real = new Chalk({ level: 1 });
const TEXTS: unknown[][] = [
  ['plain'], [''], [], ['a', 'b', 3], [42], [null], [undefined], [true],
  ['line one\nline two\n'], ['crlf\r\nnext\r\n\r\n'], ['\n'], ['trailing\r'],
  [`outer ${real.red('inner')} after`], [`${real.dim('d')}${real.bold('b')}\n${real.yellow('y\nz')}`],
  ['\u001b[39m\u001b[22m stray closers'], ['unicode × ✓ →'],
];

for (const level of [0, 1, 2, 3] as const) {
  test(`colour equals chalk at level ${level}`, () => {
    const chalk = new Chalk({ level });
    const saved = colour.level;
    colour.level = level;
    try {
      for (const style of STYLES) {
        for (const text of TEXTS) assert.equal(colour[style](...text), chalk[style](...text), `${style}(${JSON.stringify(text)})`);
        // Nesting one style in another, as the renderers do.
        for (const inner of STYLES) assert.equal(colour[style](`x ${colour[inner]('y')} z`), chalk[style](`x ${chalk[inner]('y')} z`));
      }
    } finally {
      colour.level = saved;
    }
  });
}

test('level 0 writes no escape at all; level 1 writes the SGR pairs', () => {
  const saved = colour.level;
  try {
    colour.level = 0;
    assert.equal(colour.red('x'), 'x');
    colour.level = 1;
    assert.equal(colour.red('x'), '\u001b[31mx\u001b[39m');
    assert.equal(colour.bold('x'), '\u001b[1mx\u001b[22m');
  } finally {
    colour.level = saved;
  }
});
