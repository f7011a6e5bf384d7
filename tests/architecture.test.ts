// The layout's rules, checked: no import circle anywhere in src/, between files or between folders
// (type-only imports included), src/contract/ a leaf, and no file over 400 lines without a reason
// stated at its top.
//
// Why a scanner of our own and not dependency-cruiser or madge (checked 2026-12): dependency-cruiser 17+
// needs Node >= 22 (this project supports 20), and both it and madge (through detective-typescript /
// typescript-estree) parse TypeScript with the `typescript` package's compiler API, which TypeScript 7,
// the native compiler this repo uses, no longer ships (`require('typescript')` exports only `version`).
// The scanner below is small and tested here: on fixtures, and against esbuild's own resolution of every
// value import in src/ (esbuild drops type-only imports, so it cannot be the whole check itself).
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { build } from 'esbuild';
import { ROOT } from './helpers.js';

const SRC = path.join(ROOT, 'src');

/**
 * Circles that are known and owned by work in progress: each entry is the sorted list of the files of
 * one strongly connected component. A listed circle that no longer exists fails the test too (keep it
 * short and true).
 */
const ALLOWED_CIRCLES: string[][] = [];

/**
 * Circles between folders of src/ (a folder depends on another when any file of it imports one of the
 * other's), each the sorted list of the folders of one strongly connected component.
 */
const ALLOWED_FOLDER_CIRCLES: string[][] = [];

/** Files over the size limit that another change in progress is splitting (they get a reason or a split there). */
const SIZE_ALLOWED: Record<string, string> = {};
const MAX_LINES = 400;
const REASON = /^\/\/ Long because: \S/;

// ---- the scanner ----

/**
 * The module specifiers a TypeScript source imports: `import … from`, `import type … from`, `import '…'`,
 * `export … from`, `import('…')` (dynamic, and in type positions). Comments, string contents, template
 * literals and regular expressions are skipped by a small lexer, so text that merely looks like an
 * import is not one.
 */
export function importSpecifiers(source: string): string[] {
  const strings: string[] = [];
  let code = '';
  let i = 0;
  const n = source.length;
  // Whether a `/` here starts a regular expression (after an operator or keyword) or divides.
  const regexAllowed = (): boolean => {
    const t = code.trimEnd();
    if (!t) return true;
    if (/[(,=:[!&|?{};+\-*%<>~^]$/.test(t)) return true;
    return /\b(return|typeof|case|do|else|in|of|new|delete|void|throw|yield|await)$/.test(t);
  };
  const readString = (quote: string): string => {
    let out = '';
    i++;
    while (i < n && source[i] !== quote) {
      if (source[i] === '\\') i++;
      out += source[i++];
    }
    i++;
    return out;
  };
  // A template literal, with `${ … }` parts lexed as code (they may hold strings, templates, braces).
  const skipTemplate = (): void => {
    i++;
    while (i < n && source[i] !== '`') {
      if (source[i] === '\\') i += 2;
      else if (source[i] === '$' && source[i + 1] === '{') {
        i += 2;
        lexCode('}');
        i++;
      } else i++;
    }
    i++;
  };
  function lexCode(until?: string): void {
    let depth = 0;
    while (i < n) {
      const c = source[i];
      const d = source[i + 1];
      if (until && c === until && depth === 0) return;
      if (c === '{') depth++;
      if (c === '}') depth--;
      if (c === '/' && d === '/') {
        while (i < n && source[i] !== '\n') i++;
      } else if (c === '/' && d === '*') {
        const end = source.indexOf('*/', i + 2);
        i = end < 0 ? n : end + 2;
        code += ' ';
      } else if (c === '"' || c === "'") {
        strings.push(readString(c));
        code += `"${strings.length - 1}"`;
      } else if (c === '`') {
        skipTemplate();
        code += '``';
      } else if (c === '/' && regexAllowed()) {
        i++;
        let inClass = false;
        while (i < n && (inClass || source[i] !== '/') && source[i] !== '\n') {
          if (source[i] === '\\') i++;
          else if (source[i] === '[') inClass = true;
          else if (source[i] === ']') inClass = false;
          i++;
        }
        i++;
        while (i < n && /[a-z]/i.test(source[i])) i++;
        code += '/r/';
      } else {
        code += c;
        i++;
      }
    }
  }
  lexCode();
  const specs: string[] = [];
  const statement = /(?:^|[^\w$.])(?:import|export)\s*(?:type\s+)?(?:[\w$*{}\s,]*?\bfrom\s*)?"(\d+)"/g;
  const dynamic = /(?:^|[^\w$.])import\s*\(\s*"(\d+)"\s*\)/g;
  for (const m of code.matchAll(statement)) specs.push(strings[Number(m[1])]);
  for (const m of code.matchAll(dynamic)) specs.push(strings[Number(m[1])]);
  return specs;
}

function srcFiles(dir = SRC): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...srcFiles(p));
    else if (e.name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

const rel = (abs: string): string => path.relative(ROOT, abs).split(path.sep).join('/');

/** src/ as a graph: file → the src files it imports (relative specifiers, `.js` written for `.ts`). */
function importGraph(): { graph: Map<string, string[]>; unresolved: string[] } {
  const files = srcFiles();
  const known = new Set(files.map(rel));
  const graph = new Map<string, string[]>();
  const unresolved: string[] = [];
  for (const f of files) {
    const deps = new Set<string>();
    for (const spec of importSpecifiers(readFileSync(f, 'utf8'))) {
      if (!spec.startsWith('.')) continue;
      const target = rel(path.resolve(path.dirname(f), spec)).replace(/\.js$/, '.ts');
      if (known.has(target)) deps.add(target);
      else if (!spec.endsWith('.json')) unresolved.push(`${rel(f)}: ${spec}`);
    }
    graph.set(rel(f), [...deps].sort());
  }
  return { graph, unresolved };
}

/** Strongly connected components with a circle in them (Tarjan), each sorted. */
export function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || (graph.get(v) ?? []).includes(v)) out.push(component.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** The example path of one circle, a → b → … → a, for the failure message. */
function circlePath(graph: Map<string, string[]>, component: string[]): string {
  const inside = new Set(component);
  const start = component[0];
  const seen = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!inside.has(w)) continue;
      if (w === start) {
        const pathBack = [v];
        for (let p = v; p !== start; p = seen.get(p)!) pathBack.push(seen.get(p)!);
        return [...pathBack.reverse(), start].join(' → ');
      }
      if (!seen.has(w)) {
        seen.set(w, v);
        queue.push(w);
      }
    }
  }
  return component.join(', ');
}

// ---- tests ----

describe('import scanner', () => {
  it('finds every form of import and re-export, type-only ones included', () => {
    const src = [
      "import a from './a.js';",
      "import type { B } from './b.js';",
      'import {\n  c,\n  type C2,\n} from "./c.js";',
      "import './d.js';",
      "export * from './e.js';",
      "export { f } from './f.js';",
      "export type { G } from './g.js';",
      "const h = await import('./h.js');",
      "let i: import('./i.js').I;",
      "import * as j from 'node:fs';",
    ].join('\n');
    assert.deepEqual(importSpecifiers(src), ['./a.js', './b.js', './c.js', './d.js', './e.js', './f.js', './g.js', 'node:fs', './h.js', './i.js']);
  });

  it('ignores what only looks like an import: comments, strings, templates, regular expressions', () => {
    const src = [
      "// import x from './comment.js';",
      "/* export * from './block.js'; */",
      "const s = \"import y from './string.js'\";",
      "const t = `import z from './template.js' ${ \"}\" + `nested ${'import(\\'./deep.js\\')'}` }`;",
      "const r = /import q from '.\\/regex.js'/g;",
      "const div = 4 / 2; const other = 6 / 3;",
      "import real from './real.js';",
    ].join('\n');
    assert.deepEqual(importSpecifiers(src), ['./real.js']);
  });

  it('finds every relative import esbuild resolves in src/ (value imports), and resolves all of its own', async () => {
    const { graph, unresolved } = importGraph();
    assert.deepEqual(unresolved, [], 'relative imports the scanner could not map to a src file');
    const result = await build({
      entryPoints: srcFiles(),
      bundle: true,
      write: false,
      metafile: true,
      outdir: path.join(ROOT, 'dist-architecture-check'),
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'silent',
      absWorkingDir: ROOT,
    });
    let checked = 0;
    const missing: string[] = [];
    for (const [file, input] of Object.entries(result.metafile.inputs)) {
      if (!file.startsWith('src/')) continue;
      for (const imp of input.imports) {
        if (!imp.path.startsWith('src/')) continue;
        checked++;
        if (!graph.get(file)?.includes(imp.path)) missing.push(`${file} → ${imp.path}`);
      }
    }
    assert.deepEqual(missing, [], 'imports esbuild saw that the scanner missed');
    assert.ok(checked > 200, `esbuild reported ${checked} imports inside src/; expected the whole tree`);
  });

  it('finds circles, self-imports included, and only circles', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a', 'd']],
      ['d', []],
      ['e', ['e']],
      ['f', ['d']],
    ]);
    assert.deepEqual(circles(g), [['a', 'b', 'c'], ['e']]);
    assert.equal(circlePath(g, ['a', 'b', 'c']), 'a → b → c → a');
  });
});

describe('architecture', () => {
  it('has no import circle in src/ (type-only imports count) beyond the listed ones', () => {
    const { graph } = importGraph();
    assert.ok(graph.size > 100, `scanned ${graph.size} files`);
    const found = circles(graph);
    const key = (c: string[]) => c.join(' , ');
    const allowed = new Set(ALLOWED_CIRCLES.map((c) => key([...c].sort())));
    const unexpected = found.filter((c) => !allowed.has(key(c))).map((c) => circlePath(graph, c));
    assert.deepEqual(unexpected, [], 'import circles (break them: move the shared piece to where its concept belongs)');
    const stale = [...allowed].filter((a) => !found.some((c) => key(c) === a));
    assert.deepEqual(stale, [], 'ALLOWED_CIRCLES lists a circle that is gone: remove it from the list');
  });

  it('has no import circle between the folders of src/ beyond the listed ones', () => {
    const { graph } = importGraph();
    // src/x/y.ts belongs to folder x; a file directly in src/ is a node of its own.
    const folderOf = (file: string) => {
      const parts = file.split('/');
      return parts.length > 2 ? parts[1] : parts[1].replace(/\.ts$/, '');
    };
    const folders = new Map<string, string[]>();
    let edges = 0;
    for (const [file, deps] of graph) {
      const from = folderOf(file);
      const out = new Set(folders.get(from) ?? []);
      for (const d of deps) if (folderOf(d) !== from) out.add(folderOf(d));
      folders.set(from, [...out].sort());
    }
    for (const deps of folders.values()) edges += deps.length;
    assert.ok(folders.size > 10 && edges > 20, `${folders.size} folders, ${edges} arrows`);
    const key = (c: string[]) => c.join(' , ');
    const allowed = new Set(ALLOWED_FOLDER_CIRCLES.map((c) => key([...c].sort())));
    const found = circles(folders);
    const unexpected = found.filter((c) => !allowed.has(key(c))).map((c) => circlePath(folders, c));
    assert.deepEqual(unexpected, [], 'folder circles (an arrow points the wrong way: move the borrowed piece)');
    const stale = [...allowed].filter((a) => !found.some((c) => key(c) === a));
    assert.deepEqual(stale, [], 'ALLOWED_FOLDER_CIRCLES lists a circle that is gone: remove it from the list');
  });

  it('keeps src/contract/ a leaf: it imports only zod, Node types and itself', () => {
    const files = srcFiles(path.join(SRC, 'contract'));
    assert.ok(files.length >= 5, `found ${files.length} contract files`);
    const outside: string[] = [];
    for (const f of files) {
      for (const spec of importSpecifiers(readFileSync(f, 'utf8'))) {
        const inside = spec.startsWith('./') && !spec.slice(2).includes('/');
        if (!inside && spec !== 'zod' && !spec.startsWith('node:')) outside.push(`${rel(f)}: ${spec}`);
      }
    }
    assert.deepEqual(outside, []);
  });

  it(`states at its top why any src file over ${MAX_LINES} lines is long`, (t) => {
    const long: { file: string; lines: number; reason: string | null }[] = [];
    for (const f of srcFiles()) {
      const text = readFileSync(f, 'utf8');
      const lines = text.split('\n').length - (text.endsWith('\n') ? 1 : 0);
      if (lines <= MAX_LINES) continue;
      const header: string[] = [];
      for (const line of text.split('\n')) {
        if (!line.startsWith('//')) break;
        header.push(line);
      }
      long.push({ file: rel(f), lines, reason: header.find((l) => REASON.test(l)) ?? null });
    }
    // The report: one line per long file, with its stated reason or its allow-list note.
    t.diagnostic(`${long.length} src files over ${MAX_LINES} lines:`);
    for (const l of long) t.diagnostic(`${l.lines} ${l.file}: ${l.reason ?? SIZE_ALLOWED[l.file] ?? 'NO REASON'}`);
    const missing = long.filter((l) => !l.reason && !SIZE_ALLOWED[l.file]).map((l) => `${l.file} (${l.lines} lines)`);
    assert.deepEqual(missing, [], 'files over the limit with no "// Long because: …" line in their header comment');
    const stale = Object.keys(SIZE_ALLOWED).filter((f) => !long.some((l) => l.file === f && !l.reason));
    assert.deepEqual(stale, [], 'SIZE_ALLOWED lists a file that is no longer long (or now states its reason): remove it');
  });
});
