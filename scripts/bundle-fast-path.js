#!/usr/bin/env node
// Builds dist/src/cli/fast-path.bundle.js: the modules `sphana inspect`'s fast path loads
// (dist/src/cli/fast-path.js and what it imports, as tsc emitted them) in one script, which
// bin/sphana.js compiles with node:vm and a V8 code cache (bench/results/startup.md: loading the
// 26 modules one by one through the ES module loader cost about 17 ms of CPU per run).
// Run after `tsc -p .` (npm run build, prepare, test and bench do).
//
// - Each module keeps its own scope (a function); an import becomes a read of the exporting
//   module's exports, in dependency order (src/ has no import cycles; a cycle is refused here).
// - Only the shapes tsc emits for this code are accepted; anything else (a default or side-effect
//   import of a package, `export *`, `export default`, a relative import(), top-level await)
//   fails the build with the file and line, so the bundle never means something the modules do not.
// - The first line holds the size of every input: bin/sphana.js takes the bundle only while each
//   input has its size and is no newer than the bundle (after a bare `tsc -p .` or an edit it
//   imports the modules as before), and the sha256 of the bundle, which names its code cache.
// - The ONNX schema tables (src/onnx/onnx-schema.json) are embedded when they match the .proto,
//   so the bundle reads neither file (both are inputs: editing one makes the bundle stale).
import { createHash } from 'node:crypto';
import { readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import vm from 'node:vm';

const root = fileURLToPath(new URL('..', import.meta.url));
const ENTRY = join(root, 'dist/src/cli/fast-path.js');
export const BUNDLE = join(root, 'dist/src/cli/fast-path.bundle.js');
const PROTO = join(root, 'src/onnx/onnx.proto');
const TABLES = join(root, 'src/onnx/onnx-schema.json');

const rel = (file) => relative(root, file).split(sep).join('/');
const fail = (file, line, what) => {
  throw new Error(`${rel(file)}:${line}: ${what} (scripts/bundle-fast-path.js accepts only the import/export shapes tsc emits for the fast path)`);
};

const IMPORT_LINE = /^import\b.*$/gm;
const NAMED = /^import \{([^}]*)\} from '([^']+)';$/;
const NAMESPACE = /^import \* as ([\w$]+) from '([^']+)';$/;
const DEFAULT_BUILTIN = /^import ([\w$]+) from '(node:[^']+)';$/;
const lineOf = (text, index) => text.slice(0, index).split('\n').length;

/** The relative modules `file` imports, in order of appearance. */
function relativeImports(file, text) {
  const out = [];
  for (const m of text.matchAll(IMPORT_LINE)) {
    const line = m[0];
    const spec = (NAMED.exec(line) ?? NAMESPACE.exec(line) ?? DEFAULT_BUILTIN.exec(line))?.[2];
    if (!spec) fail(file, lineOf(text, m.index), `unsupported import: ${line}`);
    if (spec.startsWith('.')) out.push(resolve(dirname(file), spec));
    else if (!spec.startsWith('node:')) fail(file, lineOf(text, m.index), `the fast path imports the package '${spec}' statically`);
  }
  return out;
}

/** The fast path's modules in dependency order (each after what it imports). */
function moduleOrder(entry) {
  const order = [];
  const state = new Map();
  const visit = (file, chain) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') throw new Error(`import cycle: ${[...chain, file].map(rel).join(' → ')}`);
    state.set(file, 'open');
    const text = readFileSync(file, 'utf8');
    for (const dep of relativeImports(file, text)) visit(dep, [...chain, file]);
    state.set(file, 'done');
    order.push({ file, text });
  };
  visit(entry, []);
  return order;
}

/** One module as a function body that returns its exports. */
function moduleBody(file, text) {
  const exported = [];
  const at = (index) => lineOf(text, index);
  let body = text.replace(/\n\/\/# sourceMappingURL=[^\n]*\n?$/, '\n');
  body = body.replace(IMPORT_LINE, (line) => {
    let m;
    const from = (spec) => (spec.startsWith('.') ? `__modules[${JSON.stringify(rel(resolve(dirname(file), spec)))}]` : `require(${JSON.stringify(spec)})`);
    if ((m = NAMED.exec(line))) {
      const names = m[1].split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
        const parts = s.split(/\s+as\s+/);
        if (parts.some((p) => !/^[\w$]+$/.test(p))) fail(file, 0, `unsupported import name: ${s}`);
        return parts.length === 2 ? `${parts[0]}: ${parts[1]}` : parts[0];
      });
      return `const { ${names.join(', ')} } = ${from(m[2])};`;
    }
    if ((m = NAMESPACE.exec(line)) || (m = DEFAULT_BUILTIN.exec(line))) return `const ${m[1]} = ${from(m[2])};`;
    return line; // not reached: relativeImports refused it
  });
  body = body.replace(/^export (async function\*?|function\*?|class|const) ([\w$]+)/gm, (_m, keyword, name) => {
    exported.push(name);
    return `${keyword} ${name}`;
  });
  body = body.replace(/^export \{([^}]*)\};$/gm, (_m, list) => {
    for (const item of list.split(',').map((s) => s.trim()).filter(Boolean)) {
      const parts = item.split(/\s+as\s+/);
      if (parts.some((p) => !/^[\w$]+$/.test(p))) fail(file, 0, `unsupported export: ${item}`);
      exported.push(parts.length === 2 ? `${parts[1]}: ${parts[0]}` : parts[0]);
    }
    return '';
  });
  for (const m of body.matchAll(/^(?:export|import)\b.*$/gm)) fail(file, at(text.indexOf(m[0])), `unsupported statement: ${m[0]}`);
  for (const m of body.matchAll(/\bimport\(\s*(['"`])\./g)) fail(file, at(text.indexOf(m[0])), 'a relative import() (it would load a second copy of a bundled module)');
  for (const m of body.matchAll(/\bimport\.meta\b(?!\.(?:url|dirname|filename)\b)/g)) fail(file, at(text.indexOf(m[0])), 'import.meta other than .url, .dirname, .filename');
  // import.meta of the module's own place in dist/, found from the bundle's folder at run time.
  const own = JSON.stringify(relative(dirname(BUNDLE), file).split(sep).join('/'));
  body = body.replace(/\bimport\.meta\.url\b/g, `__meta(${own}).url`)
    .replace(/\bimport\.meta\.dirname\b/g, `__meta(${own}).dirname`)
    .replace(/\bimport\.meta\.filename\b/g, `__meta(${own}).filename`);
  // import('ora') and the like: the launcher's import() (bare names resolve from the package, as from dist/).
  body = body.replace(/\bimport\(/g, '__importModule(');
  return { body, exported };
}

/** The schema tables as the bundle may embed them: only when they are current for the .proto. */
async function currentTables() {
  const { fnv1a } = await import(pathToFileURL(join(root, 'dist/src/onnx/schema.js')).href);
  const tables = JSON.parse(readFileSync(TABLES, 'utf8'));
  return tables.protoFnv1a === fnv1a(readFileSync(PROTO)) ? tables : undefined;
}

export async function bundleFastPath() {
  const modules = moduleOrder(ENTRY);
  const tables = await currentTables();
  const parts = [
    '(function (require, __importModule, __bundleDir) {',
    "'use strict';",
    'const __modules = Object.create(null);',
    "const __meta = (p) => { const filename = require('node:path').join(__bundleDir, p); return { url: require('node:url').pathToFileURL(filename).href, filename, dirname: require('node:path').dirname(filename) }; };",
  ];
  for (const { file, text } of modules) {
    const { body, exported } = moduleBody(file, text);
    parts.push(`// ---- ${rel(file)}`, `__modules[${JSON.stringify(rel(file))}] = (() => {`, body.trimEnd(), `return { ${exported.join(', ')} };`, '})();');
  }
  if (tables) {
    if (!modules.some((m) => rel(m.file) === 'dist/src/onnx/schema.js')) throw new Error('the fast path no longer loads dist/src/onnx/schema.js: drop the embedded tables');
    parts.push(`__modules['dist/src/onnx/schema.js'].useCheckedTables(JSON.parse(${JSON.stringify(JSON.stringify(tables))}));`);
  }
  parts.push(`return __modules[${JSON.stringify(rel(ENTRY))}];`, '})');
  const code = `${parts.join('\n')}\n`;
  new vm.Script(code, { filename: BUNDLE }); // a syntax error fails the build, not a run
  const inputs = [...modules.map((m) => m.file), ...(tables ? [PROTO, TABLES] : [])].map((file) => {
    const s = statSync(file);
    return [rel(file), s.size];
  });
  const hash = createHash('sha256').update(code).digest('hex').slice(0, 16);
  const header = `//${JSON.stringify({ hash, inputs })}\n// sphana start-up bundle (scripts/bundle-fast-path.js): not a module; bin/sphana.js runs it with node:vm.\n`;
  const tmp = `${BUNDLE}.${process.pid}.tmp`;
  writeFileSync(tmp, header + code);
  renameSync(tmp, BUNDLE);
  // Load it once: the module bodies run (a missing binding at the top of a module shows here).
  new vm.Script(header + code, { filename: BUNDLE }).runInThisContext()(createRequire(BUNDLE), (s) => import(s), dirname(BUNDLE));
  return { modules: modules.length, bytes: header.length + code.length, tables: Boolean(tables), hash };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const r = await bundleFastPath();
  process.stderr.write(`[bundle] ${rel(BUNDLE)}: ${r.modules} modules, ${r.bytes} bytes${r.tables ? ', schema tables embedded' : ''}\n`);
}
