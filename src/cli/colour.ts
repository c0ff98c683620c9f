/**
 * The few terminal styles sphana uses, as plain ANSI SGR codes: a drop-in for the part of chalk
 * sphana used (bold, dim, red, green, yellow and `level`), writing byte-for-byte what chalk 5
 * writes for them (test/cli/colour.test.ts compares the two), without chalk's import cost
 * (about 20 ms at start-up: its colour-support probing and style tables).
 *
 * As in chalk: level 0 returns the text unchanged; otherwise the text is wrapped in the style's
 * open/close codes, a close code already inside the text re-opens the style after it (so nested
 * styles survive), and each line break closes the style before it and re-opens it after.
 * Unlike chalk, the level starts at 0: an Output turns colour on when its terminal wants it.
 */
export type Style = (...text: unknown[]) => string;

export interface Colour {
  level: number;
  bold: Style;
  dim: Style;
  red: Style;
  green: Style;
  yellow: Style;
}

function style(colour: { level: number }, open: string, close: string): Style {
  return (...text: unknown[]) => {
    let s = text.length === 1 ? '' + text[0] : text.join(' '); // eslint-disable-line prefer-template
    if (colour.level <= 0 || !s) return s;
    if (s.includes('\u001b')) s = s.split(close).join(close + open);
    if (s.includes('\n')) s = s.replace(/\r?\n/g, (lf) => `${close}${lf}${open}`);
    return open + s + close;
  };
}

const sgr = (n: number) => `\u001b[${n}m`;

export const colour: Colour = { level: 0 } as Colour;
colour.bold = style(colour, sgr(1), sgr(22));
colour.dim = style(colour, sgr(2), sgr(22));
colour.red = style(colour, sgr(31), sgr(39));
colour.green = style(colour, sgr(32), sgr(39));
colour.yellow = style(colour, sgr(33), sgr(39));
