// A promise that rejects with `why` when `p` has not settled within `ms` (the timer never outlives it).
export function withTimeout<T>(p: Promise<T>, ms: number, why = `no answer within ${ms} ms`): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_r, reject) => (timer = setTimeout(() => reject(new Error(why)), ms)))]).finally(() => clearTimeout(timer));
}
