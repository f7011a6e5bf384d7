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
 * One line of live status at the bottom of a TTY, redrawn in place. While it is shown, anything else
 * written to the stream clears it first and redraws it after, so a log line lands above it, whole.
 */
export class LiveLine {
  private text = '';
  private shown = false;
  private readonly originalWrite: NodeJS.WriteStream['write'];

  constructor(private readonly out: NodeJS.WriteStream) {
    this.originalWrite = out.write;
    const raw = this.originalWrite.bind(out) as (chunk: string | Uint8Array) => boolean;
    // Writes from elsewhere (winston, worker stderr piped through this thread): line off, write, line on.
    out.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (this.shown) raw('\r\x1b[2K');
      const ok = (this.originalWrite as (...a: unknown[]) => boolean).call(out, chunk, ...rest);
      if (this.shown) raw(this.render());
      return ok;
    }) as NodeJS.WriteStream['write'];
  }

  private render(): string {
    return `\r\x1b[2K${truncateToWidth(this.text, Math.max(1, (this.out.columns || 80) - 1))}`;
  }

  set(text: string): void {
    this.text = text;
    this.shown = true;
    this.originalWrite.call(this.out, this.render());
  }

  /** Clears the line and gives the stream back. */
  close(): void {
    if (this.shown) this.originalWrite.call(this.out, '\r\x1b[2K');
    this.shown = false;
    this.out.write = this.originalWrite;
  }
}
