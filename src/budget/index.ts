// Budget library: the ledger interface (store.ts) and its in-process implementation (scopes,
// reservations, persistence), prices, token-estimate scaling. The Redis ledger (redis-ledger.ts) is
// imported on its own, in queue mode only.
export * from './ledger.js';
export { after, answered, type Answer, type LedgerStore, type MaybePromise } from './store.js';
export * from './prices.js';
export * from './estimate.js';
export { LedgerChainError, ledgerFileName, type LedgerRecord, type ChargeBasis } from './ledger-file.js';
