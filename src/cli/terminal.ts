// Terminal output for the CLI: display widths (a CJK character or an emoji takes two columns, an
// escape sequence none), colour that follows NO_COLOR / FORCE_COLOR, and a live status line that other
// writes to the same stream (log lines, a provider SDK's warning) go above instead of into.
import stringWidth from 'string-width';

/** Columns `text` takes on a terminal. */
export function displayWidth(text: string): number {
  return stringWidth(text);
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/** Cuts `text` to at most `width` columns (by display width, whole graphemes), ending in "…" when cut. */
export function truncateToWidth(text: string, width: number): string {
  if (width <= 0) return '';
  if (displayWidth(text) <= width) return text;
  let out = '';
  let used = 0;
  for (const { segment } of graphemes.segment(text)) {
    const w = displayWidth(segment);
    if (used + w > width - 1) break;
    out += segment;
    used += w;
  }
  return `${out}…`;
}

/**
 * Whether to colour output on `stream`: NO_COLOR (any non-empty value) turns colour off, FORCE_COLOR
 * turns it on (except "0" / "false"), otherwise only on a TTY that is not TERM=dumb.
 */
export function colourEnabled(stream: { isTTY?: boolean }, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR) return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return Boolean(stream.isTTY) && env.TERM !== 'dumb';
}

const CODES = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const;
export type Colour = keyof typeof CODES;

/** A colouring function that is the identity when colour is off. */
export function painter(enabled: boolean): (colour: Colour, text: string) => string {
  return enabled ? (colour, text) => `\x1b[${CODES[colour]}m${text}\x1b[0m` : (_colour, text) => text;
}

/**
 * While a live display (a status line, a board of lines) is on `out`, every other write to it — winston,
 * a worker's stderr piped through this thread — first erases the display, then writes, then redraws it,
 * so log lines land above the display, whole. Returns the function that gives the stream back.
 */
export function interceptWrites(out: NodeJS.WriteStream, display: { erase(): string; redraw(): string }): () => void {
  const original = out.write;
  const raw = (chunk: string) => (original as (c: string) => boolean).call(out, chunk);
  out.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    raw(display.erase());
    const ok = (original as (...a: unknown[]) => boolean).call(out, chunk, ...rest);
    raw(display.redraw());
    return ok;
  }) as NodeJS.WriteStream['write'];
  return () => {
    out.write = original;
  };
}

/** One line of live status at the bottom of a TTY, redrawn in place; other writes go above it. */
export class LiveLine {
  private text = '';
  private shown = false;
  private readonly restore: () => void;
  private readonly raw: (chunk: string) => void;

  constructor(private readonly out: NodeJS.WriteStream) {
    const original = out.write;
    this.raw = (chunk) => void (original as (c: string) => boolean).call(out, chunk);
    this.restore = interceptWrites(out, {
      erase: () => (this.shown ? '\r\x1b[2K' : ''),
      redraw: () => (this.shown ? this.render() : ''),
    });
  }

  private render(): string {
    return `\r\x1b[2K${truncateToWidth(this.text, Math.max(1, (this.out.columns || 80) - 1))}`;
  }

  set(text: string): void {
    this.text = text;
    this.shown = true;
    this.raw(this.render());
  }

  /** Clears the line and gives the stream back. */
  close(): void {
    if (this.shown) this.raw('\r\x1b[2K');
    this.shown = false;
    this.restore();
  }
}
