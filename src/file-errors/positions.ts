// Where an error in a user file is (agent YAML, or mcp.json, which YAML reads too), how its field is
// named, and the "did you mean" hint for an unknown key. A leaf of its own: the config and the agent
// loaders both report errors this way.
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument } from 'yaml';
import type { Document, Node as YamlNode, Pair } from 'yaml';

export type Path = readonly PropertyKey[];

/** "tools.fs.read", "artifacts[1].name". */
export function formatPath(path: Path): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out;
}

// ---- "did you mean" ----

/** The allowed key closest to `key`, if it is close enough to be a plausible typo. */
export function suggest(key: string, allowed: readonly string[]): string | undefined {
  const squash = (s: string) => s.toLowerCase().replace(/[-_\s]/g, '');
  // maxTurns, max-turns, MAX_TURNS → max_turns
  const same = allowed.find((a) => squash(a) === squash(key));
  if (same) return same;
  let best: string | undefined;
  let bestDist = Infinity;
  for (const a of allowed) {
    const d = editDistance(key.toLowerCase(), a.toLowerCase());
    if (d < bestDist) {
      best = a;
      bestDist = d;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(Math.max(key.length, 2) / 3)));
  return bestDist <= limit ? best : undefined;
}

/** Optimal-string-alignment distance: insertions, deletions, substitutions and adjacent transpositions. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

// ---- YAML positions ----

/**
 * Positions in YAML text — or JSON text, which YAML reads too (mcp.json errors use it): where the key
 * and the value at a data path start, as 1-based line and column.
 */
export function textPositions(text: string): {
  key(path: Path): { line?: number; column?: number };
  value(path: Path): { line?: number; column?: number };
} {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  const pos = (offset: number | undefined) => {
    if (offset === undefined) return {};
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  return { key: (path) => pos(locate(doc, path).keyOffset), value: (path) => pos(locate(doc, path).valueOffset) };
}

/**
 * Finds the YAML nodes along a data path. `valueOffset` is where the value at the path starts (or, when
 * the path is missing from the file, where its nearest present ancestor starts); `keyOffset` is where the
 * last mapping key on the path starts.
 */
export function locate(doc: Document, path: Path): { valueOffset?: number; keyOffset?: number } {
  let node: unknown = doc.contents;
  let valueOffset = rangeStart(node);
  let keyOffset: number | undefined;
  for (const seg of path) {
    if (isAlias(node)) node = node.resolve(doc);
    let next: unknown;
    let keyNode: unknown;
    if (isMap(node)) {
      const pair = (node.items as Pair[]).find((p) => (isScalar(p.key) ? String(p.key.value) : String(p.key)) === String(seg));
      if (!pair) break;
      keyNode = pair.key;
      next = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      next = node.items[seg];
      if (next === undefined) break;
    } else {
      break;
    }
    if (keyNode !== undefined) keyOffset = rangeStart(keyNode);
    // An empty value (`key:`) has no text of its own to point at: point at its key.
    const empty = isScalar(next) && next.range !== undefined && next.range !== null && next.range[0] === next.range[1];
    valueOffset = (empty ? undefined : rangeStart(next)) ?? rangeStart(keyNode) ?? valueOffset;
    node = next;
  }
  return { valueOffset, keyOffset: keyOffset ?? valueOffset };
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as YamlNode | null | undefined)?.range;
  return range ? range[0] : undefined;
}
