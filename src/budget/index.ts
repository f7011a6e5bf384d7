// Budget library: ledger (scopes, reservations, persistence), prices, token-estimate scaling.
export * from './ledger.js';
export { after, type Answer, type LedgerStore, type MaybePromise } from './store.js';
export * from './prices.js';
export * from './estimate.js';
export { LedgerChainError, ledgerFileName, type LedgerRecord, type ChargeBasis } from './ledger-file.js';
