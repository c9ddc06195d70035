/**
 * Invite codes: what `bazil invite` prints and `bazil join CODE` takes. A code is one
 * copy-pasteable string, `bazil1` + base58btc(protobuf Invite ‖ 4-byte checksum), holding the
 * inviter's peer id and addresses, a random invite id, a 32-byte one-time secret and an expiry.
 * The checksum turns a mistyped code into INVALID rather than a failed (and counted) attempt.
 * Anyone holding the code can pair until it is used or expires, so it is shown once and kept
 * nowhere on disk: the inviting daemon keeps its pending invites in memory, in an `InviteBook`
 * (add, take once, expiry, a cap on wrong proofs). The wire protocol is protocols/pairing/.
 */
import { createHash, randomBytes } from 'node:crypto'
import { peerIdFromMultihash, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, CODE_P2P } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { base58btc } from 'multiformats/bases/base58'
import * as Digest from 'multiformats/hashes/digest'
import { BazilError, ErrorCode } from '../errors.ts'
import { Invite as InviteMessage } from '../../protocols/pairing/pairing.ts'
import { INVITE_ID_BYTES, INVITE_SECRET_BYTES, MAX_FAILED_ATTEMPTS } from '../../protocols/pairing/constants.ts'

/** A new code format gets a new prefix. */
export const INVITE_CODE_PREFIX = 'bazil1'
export const DEFAULT_INVITE_TTL_MS = 10 * 60_000
export const MAX_INVITE_TTL_MS = 24 * 60 * 60_000
/** Addresses a code carries (the first ones given); a code is meant to be pasted, not scrolled. */
export const MAX_INVITE_ADDRS = 8
const CHECKSUM_BYTES = 4
/** No real code comes near this; it bounds the work done on pasted garbage. */
const MAX_CODE_LENGTH = 2048

export interface CreateInviteOptions {
  /** The inviter's peer id string. */
  peerId: string
  /** The inviter's listen multiaddrs, best first (a trailing /p2p/ part is dropped). */
  addrs: Array<string | Multiaddr>
  ttlMs?: number
  /** Milliseconds since the epoch; for tests. */
  now?: number
}

export interface Invite {
  /** What the user copies to the other device. */
  code: string
  /** The invite id, hex: names the pending invite in the book and on the wire. */
  id: string
  secret: Uint8Array
  /** Milliseconds since the epoch, by the inviter's clock. */
  expiresAt: number
}

export interface ParsedInvite extends Invite {
  peerId: string
  addrs: string[]
}

export function createInvite (options: CreateInviteOptions): Invite {
  const ttlMs = options.ttlMs ?? DEFAULT_INVITE_TTL_MS
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0 || ttlMs > MAX_INVITE_TTL_MS) {
    throw new BazilError(ErrorCode.INVALID, `an invite must live between 1 ms and ${MAX_INVITE_TTL_MS / 3_600_000} h`)
  }
  const invite = {
    peerId: options.peerId,
    addrs: options.addrs.slice(0, MAX_INVITE_ADDRS),
    id: randomBytes(INVITE_ID_BYTES).toString('hex'),
    secret: new Uint8Array(randomBytes(INVITE_SECRET_BYTES)),
    expiresAt: (options.now ?? Date.now()) + ttlMs
  }
  return { code: encodeInvite(invite), id: invite.id, secret: invite.secret, expiresAt: invite.expiresAt }
}

/** The code for these parts (`createInvite` draws them; tests forge them). */
export function encodeInvite (invite: Omit<ParsedInvite, 'code' | 'addrs'> & { addrs: Array<string | Multiaddr> }): string {
  let peerId: Uint8Array
  try {
    peerId = peerIdFromString(invite.peerId).toMultihash().bytes
  } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `${invite.peerId} is not a peer id`, { cause: err })
  }
  const addrs = invite.addrs.map(addr => {
    try {
      return toBytes(multiaddr(addr).decapsulateCode(CODE_P2P).bytes)
    } catch (err) {
      throw new BazilError(ErrorCode.INVALID, `${String(addr)} is not a multiaddr`, { cause: err })
    }
  })
  if (addrs.length === 0 || addrs.length > MAX_INVITE_ADDRS) {
    throw new BazilError(ErrorCode.INVALID, `an invite needs 1 to ${MAX_INVITE_ADDRS} addresses to dial`)
  }
  if (!/^[0-9a-f]+$/.test(invite.id) || invite.id.length !== 2 * INVITE_ID_BYTES || invite.secret.length !== INVITE_SECRET_BYTES ||
      !Number.isSafeInteger(invite.expiresAt) || invite.expiresAt <= 0) {
    throw new BazilError(ErrorCode.INVALID, 'an invite needs a 16-byte id, a 32-byte secret and an expiry')
  }
  const payload = InviteMessage.encode({
    peerId: toBytes(peerId),
    addrs,
    inviteId: toBytes(Buffer.from(invite.id, 'hex')),
    secret: toBytes(invite.secret),
    expiresAt: BigInt(invite.expiresAt)
  })
  return INVITE_CODE_PREFIX + base58btc.baseEncode(concat(payload, checksum(payload)))
}

/** Reads a code (whitespace anywhere is ignored, as a terminal may wrap it); INVALID if it is not one. */
export function parseInvite (code: string): ParsedInvite {
  const text = code.replace(/\s+/g, '')
  if (!text.startsWith(INVITE_CODE_PREFIX) || text.length > MAX_CODE_LENGTH) throw notACode()
  let body: Uint8Array
  try { body = base58btc.baseDecode(text.slice(INVITE_CODE_PREFIX.length)) } catch { throw notACode() }
  if (body.length <= CHECKSUM_BYTES) throw notACode()
  const payload = body.subarray(0, body.length - CHECKSUM_BYTES)
  if (!Buffer.from(checksum(payload)).equals(body.subarray(body.length - CHECKSUM_BYTES))) throw notACode('its checksum does not match (a typo?)')
  let message: InviteMessage
  try { message = InviteMessage.decode(payload, { limits: { addrs: MAX_INVITE_ADDRS } }) } catch { throw notACode() }
  // Only the canonical encoding is a code: the decoder forgives a cut-short varint at the end.
  if (!Buffer.from(InviteMessage.encode(message)).equals(payload)) throw notACode()
  if (message.inviteId.length !== INVITE_ID_BYTES || message.secret.length !== INVITE_SECRET_BYTES ||
      message.addrs.length === 0 || message.expiresAt === 0n || message.expiresAt > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw notACode()
  }
  let peerId: string
  let addrs: string[]
  try {
    peerId = peerIdFromMultihash(Digest.decode(message.peerId)).toString()
    addrs = message.addrs.map(bytes => multiaddr(bytes).toString())
  } catch { throw notACode() }
  return {
    code: text,
    id: Buffer.from(message.inviteId).toString('hex'),
    secret: message.secret,
    expiresAt: Number(message.expiresAt),
    peerId,
    addrs
  }
}

export interface PendingInvite {
  id: string
  secret: Uint8Array
  expiresAt: number
  failures: number
}

/**
 * The inviting daemon's pending invites, in memory only. `peek` finds a live one (neither
 * expired nor burned) to check a proof against; `take` removes it, so a code pairs once;
 * `fail` counts a wrong proof and burns the invite at `maxFailures`.
 */
export class InviteBook {
  private readonly invites = new Map<string, PendingInvite>()
  private readonly now: () => number
  private readonly maxFailures: number

  constructor (options: { now?: () => number, maxFailures?: number } = {}) {
    this.now = options.now ?? Date.now
    this.maxFailures = options.maxFailures ?? MAX_FAILED_ATTEMPTS
  }

  add (invite: Pick<Invite, 'id' | 'secret' | 'expiresAt'>): void {
    this.prune()
    this.invites.set(invite.id, { id: invite.id, secret: invite.secret, expiresAt: invite.expiresAt, failures: 0 })
  }

  /** Makes an invite (`createInvite`) and adds it. */
  issue (options: CreateInviteOptions): Invite {
    const invite = createInvite({ ...options, now: options.now ?? this.now() })
    this.add(invite)
    return invite
  }

  peek (id: string): PendingInvite | undefined {
    const invite = this.invites.get(id)
    if (invite === undefined) return undefined
    if (invite.expiresAt <= this.now()) {
      this.invites.delete(id)
      return undefined
    }
    return invite
  }

  /** Removes and returns the live invite `id`: the one time it is used. */
  take (id: string): PendingInvite | undefined {
    const invite = this.peek(id)
    this.invites.delete(id)
    return invite
  }

  /** Counts a wrong proof for `id`; returns true if that burned the invite. */
  fail (id: string): boolean {
    const invite = this.peek(id)
    if (invite === undefined) return false
    invite.failures++
    if (invite.failures < this.maxFailures) return false
    this.invites.delete(id)
    return true
  }

  revoke (id: string): boolean {
    return this.invites.delete(id)
  }

  /** Live invites, without their secrets. */
  list (): Array<Omit<PendingInvite, 'secret'>> {
    this.prune()
    return [...this.invites.values()].map(({ id, expiresAt, failures }) => ({ id, expiresAt, failures }))
  }

  private prune (): void {
    for (const id of [...this.invites.keys()]) this.peek(id)
  }
}

function checksum (payload: Uint8Array): Uint8Array {
  return createHash('sha256').update(INVITE_CODE_PREFIX).update(payload).digest().subarray(0, CHECKSUM_BYTES)
}

function notACode (why = 'it is damaged or incomplete'): BazilError {
  return new BazilError(ErrorCode.INVALID, `this is not a Bazil invite code: ${why}; copy the whole code printed by \`bazil invite\``)
}

function toBytes (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes)
}

function concat (a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length)
  out.set(a)
  out.set(b, a.length)
  return out
}
