// run_command's output capture: head and tail of each stream within a byte cap, shared fairly
// between stdout and stderr.
import { utf8SafeEnd } from './file-io.js';

/** The first and last `cap` bytes of a stream, plus its total size. */
export class HeadTail {
  private head: Buffer[] = [];
  private headBytes = 0;
  private tail: Buffer[] = [];
  private tailBytes = 0;
  total = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    this.total += chunk.length;
    let rest = chunk;
    if (this.headBytes < this.cap) {
      const take = Math.min(this.cap - this.headBytes, chunk.length);
      this.head.push(chunk.subarray(0, take));
      this.headBytes += take;
      if (take === chunk.length) return;
      rest = chunk.subarray(take);
    }
    this.tail.push(rest);
    this.tailBytes += rest.length;
    while (this.tail.length > 1 && this.tailBytes - this.tail[0].length >= this.cap) {
      this.tailBytes -= this.tail.shift()!.length;
    }
  }

  /** Text of the stream within `budget` (<= cap) bytes: everything, or head + omission note + tail. */
  render(budget: number): string {
    const head = Buffer.concat(this.head);
    if (this.total <= budget) return head.toString('utf8'); // total <= budget <= cap: all in the head
    // A known suffix of the stream: the whole stream if the ring never dropped anything, else the ring
    // (which then holds at least `cap` >= budget bytes).
    const afterHead = this.total - head.length;
    const known = this.tailBytes === afterHead ? Buffer.concat([head, ...this.tail]) : Buffer.concat(this.tail);
    const headShown = head.subarray(0, utf8SafeEnd(head, Math.floor(budget / 2)));
    let start = known.length - (budget - Math.floor(budget / 2));
    // Don't start in the middle of a UTF-8 sequence.
    while (start < known.length && (known[start] & 0xc0) === 0x80) start++;
    const tailShown = known.subarray(start);
    const omitted = this.total - headShown.length - tailShown.length;
    let headText = headShown.toString('utf8');
    if (headText.length > 0 && !headText.endsWith('\n')) headText += '\n';
    return `${headText}[… ${omitted} bytes omitted …]\n${tailShown.toString('utf8')}`;
  }
}

/** Split `cap` bytes between streams: small ones get all they need, the rest share what is left. */
export function shareBudget(sizes: number[], cap: number): number[] {
  const out = sizes.map(() => 0);
  let left = cap;
  let pending = sizes.map((_, i) => i).filter((i) => sizes[i] > 0);
  while (pending.length > 0) {
    const share = Math.floor(left / pending.length);
    const small = pending.filter((i) => sizes[i] <= share);
    if (small.length === 0) {
      for (const i of pending) out[i] = share;
      break;
    }
    for (const i of small) {
      out[i] = sizes[i];
      left -= sizes[i];
    }
    pending = pending.filter((i) => sizes[i] > share);
  }
  return out;
}
