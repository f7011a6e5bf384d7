// sha256 as hex. crypto.hash (Node ≥ 20.12) is a one-shot call, several times cheaper than a Hash
// object: digests are taken for every run (audit input digests, delegation task digests).
import crypto from 'node:crypto';

type OneShot = (algorithm: string, data: string, outputEncoding: 'hex') => string;
const oneShot = (crypto as unknown as { hash?: OneShot }).hash;

export function sha256Hex(data: string): string {
  return oneShot ? oneShot('sha256', data, 'hex') : crypto.createHash('sha256').update(data).digest('hex');
}
