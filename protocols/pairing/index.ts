/**
 * Pairing, `/bazil/pair/1.0.0`: how a new device joins with an invite code. The inviter runs
 * the `pairing` service; the joiner calls `join`. Invite codes and the pending-invite book are
 * in src/net/invite.ts, the trust store in src/net/trust.ts, the proof and seal in crypto.ts.
 */
export { pairing, PairingService } from './service.ts'
export type { PairingComponents, PairingInit } from './service.ts'
export { join } from './join.ts'
export type { JoinNode, JoinOptions, JoinResult } from './join.ts'
export { PAIRING_PROTOCOL } from './constants.ts'
