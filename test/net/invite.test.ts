/**
 * Invite codes and the pending-invite book (src/net/invite.ts): round trips, the exact code
 * format (golden bytes), garbage and damaged codes (always INVALID, fuzzed), and the book's
 * take-once, expiry and burn-after-failures rules on an injected clock.
 */
import { describe, it, expect } from 'vitest'
import { createHash, generateKeyPairSync } from 'node:crypto'
import { base58btc } from 'multiformats/bases/base58'
import {
  createInvite, DEFAULT_INVITE_TTL_MS, encodeInvite, INVITE_CODE_PREFIX, InviteBook, MAX_INVITE_ADDRS, parseInvite
} from '../../src/net/invite.ts'
import { peerIdFromEd25519 } from '../../src/node/home.ts'
import { ErrorCode } from '../../src/errors.ts'
import { createRng, testSeed } from '../helpers/rng.ts'

const FIXED_PEER_ID = peerIdFromEd25519(new Uint8Array(32).fill(7))
const GOLDEN_CODE = 'bazil135xTdmFMMTDAugJuAzJsH5dUDtRLqL7adK9456GMKZTLWFLzNa4gTdzxmd9MqBUeLrxrgdSYKbhgmHYZpsjDQngg2t7jKVa9ZVF89iMnh3fUJAnrrVhBYgVyLs9VjEhtzpo2mgYqfKw18Kbek6W8qysUXZT2s9JDi34LqpbC'
const BASE58 = /^[1-9A-HJ-NP-Za-km-z]+$/

function newPeerId (): string {
  const jwk = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' })
  return peerIdFromEd25519(new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url')))
}

function codeOf (work: () => unknown): string {
  try {
    work()
  } catch (err) {
    return (err as { code?: string }).code ?? `not a BazilError: ${String(err)}`
  }
  return 'returned'
}

function varint (value: number): number[] {
  const out: number[] = []
  let rest = BigInt(value)
  while (rest >= 0x80n) { out.push(Number(rest & 0x7fn) | 0x80); rest >>= 7n }
  out.push(Number(rest))
  return out
}

/** A code around any payload, with a correct checksum, so the protobuf decoder is reached. */
function wrap (payload: Uint8Array): string {
  const sum = createHash('sha256').update(INVITE_CODE_PREFIX).update(payload).digest().subarray(0, 4)
  return INVITE_CODE_PREFIX + base58btc.baseEncode(Buffer.concat([payload, sum]))
}

describe('invite codes', () => {
  it('round-trip peer id, addresses (without /p2p/), id, secret and expiry', () => {
    const peerId = newPeerId()
    const invite = createInvite({ peerId, addrs: ['/ip4/192.0.2.1/tcp/4011', `/ip4/127.0.0.1/tcp/4011/p2p/${peerId}`], now: 1_000 })
    expect(invite.expiresAt).toBe(1_000 + DEFAULT_INVITE_TTL_MS)
    expect(invite.code.startsWith(INVITE_CODE_PREFIX)).toBe(true)
    expect(invite.code.slice(INVITE_CODE_PREFIX.length)).toMatch(BASE58)
    expect(invite.secret.length).toBe(32)
    expect(parseInvite(invite.code)).toEqual({
      code: invite.code,
      id: invite.id,
      secret: invite.secret,
      expiresAt: invite.expiresAt,
      peerId,
      addrs: ['/ip4/192.0.2.1/tcp/4011', '/ip4/127.0.0.1/tcp/4011']
    })
  })

  it('draw a fresh id and secret every time', () => {
    const peerId = newPeerId()
    const a = createInvite({ peerId, addrs: ['/ip4/192.0.2.1/tcp/1'] })
    const b = createInvite({ peerId, addrs: ['/ip4/192.0.2.1/tcp/1'] })
    expect(a.id).not.toBe(b.id)
    expect(Buffer.from(a.secret).equals(Buffer.from(b.secret))).toBe(false)
  })

  it('have a fixed format (golden bytes)', () => {
    const code = encodeInvite({
      peerId: FIXED_PEER_ID,
      addrs: ['/ip4/192.0.2.1/tcp/4011', `/ip4/127.0.0.1/tcp/4011/p2p/${FIXED_PEER_ID}`],
      id: '11'.repeat(16),
      secret: new Uint8Array(32).fill(0x22),
      expiresAt: 1_700_000_000_000
    })
    expect(code).toBe(GOLDEN_CODE)
    const payload = [
      0x0a, 38, 0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...new Array(32).fill(7), // peerId: identity multihash of the Ed25519 key
      0x12, 8, 0x04, 192, 0, 2, 1, 0x06, 0x0f, 0xab, // addrs[0]: /ip4/192.0.2.1/tcp/4011
      0x12, 8, 0x04, 127, 0, 0, 1, 0x06, 0x0f, 0xab, // addrs[1]: /ip4/127.0.0.1/tcp/4011
      0x1a, 16, ...new Array(16).fill(0x11), // inviteId
      0x22, 32, ...new Array(32).fill(0x22), // secret
      0x28, ...varint(1_700_000_000_000) // expiresAt
    ]
    expect(code).toBe(wrap(new Uint8Array(payload)))
  })

  it('survive whitespace from wrapped terminals', () => {
    const spread = GOLDEN_CODE.slice(0, 40) + '\n  ' + GOLDEN_CODE.slice(40, 90) + ' \t' + GOLDEN_CODE.slice(90) + '\n'
    expect(parseInvite(spread).id).toBe('11'.repeat(16))
  })

  it('refuse bad inputs with INVALID', () => {
    const peerId = newPeerId()
    expect(codeOf(() => createInvite({ peerId: 'nope', addrs: ['/ip4/192.0.2.1/tcp/1'] }))).toBe(ErrorCode.INVALID)
    expect(codeOf(() => createInvite({ peerId, addrs: [] }))).toBe(ErrorCode.INVALID)
    expect(codeOf(() => createInvite({ peerId, addrs: ['not an address'] }))).toBe(ErrorCode.INVALID)
    expect(codeOf(() => createInvite({ peerId, addrs: ['/ip4/192.0.2.1/tcp/1'], ttlMs: 0 }))).toBe(ErrorCode.INVALID)
    expect(codeOf(() => createInvite({ peerId, addrs: ['/ip4/192.0.2.1/tcp/1'], ttlMs: 25 * 3_600_000 }))).toBe(ErrorCode.INVALID)
    const many = Array.from({ length: MAX_INVITE_ADDRS + 3 }, (_, i) => `/ip4/192.0.2.${i + 1}/tcp/1`)
    expect(parseInvite(createInvite({ peerId, addrs: many }).code).addrs).toEqual(many.slice(0, MAX_INVITE_ADDRS))
  })

  it('reject garbage, damaged and truncated codes with INVALID', () => {
    const damaged = [
      '', 'hello', INVITE_CODE_PREFIX, `${INVITE_CODE_PREFIX}0OIl`, GOLDEN_CODE.slice(INVITE_CODE_PREFIX.length),
      GOLDEN_CODE.slice(0, -1), GOLDEN_CODE.slice(0, 60), GOLDEN_CODE + '2',
      `bazil2${GOLDEN_CODE.slice(6)}`, INVITE_CODE_PREFIX + '1'.repeat(3000)
    ]
    // Every single-character typo: the checksum must catch it.
    for (let i = INVITE_CODE_PREFIX.length; i < GOLDEN_CODE.length; i++) {
      const swapped = GOLDEN_CODE[i] === 'z' ? 'y' : 'z'
      damaged.push(GOLDEN_CODE.slice(0, i) + swapped + GOLDEN_CODE.slice(i + 1))
    }
    for (const code of damaged) expect(codeOf(() => parseInvite(code)), code).toBe(ErrorCode.INVALID)
  })

  it('reject well-framed payloads that are not invites with INVALID (fuzz)', () => {
    const seed = testSeed()
    const rng = createRng(seed)
    const valid = Buffer.from(base58btc.baseDecode(GOLDEN_CODE.slice(INVITE_CODE_PREFIX.length))).subarray(0, -4)
    for (let i = 0; i < 500; i++) {
      // Random bytes, or the valid payload cut short or with a byte flipped.
      let payload: Uint8Array
      const kind = rng.int(0, 2)
      if (kind === 0) {
        payload = rng.bytes(rng.int(1, 300))
      } else if (kind === 1) {
        payload = valid.subarray(0, rng.int(1, valid.length - 1))
      } else {
        payload = Buffer.from(valid)
        const at = rng.int(0, payload.length - 1)
        payload[at] = (payload[at] ?? 0) ^ (1 << rng.int(0, 7))
      }
      const result = codeOf(() => parseInvite(wrap(payload)))
      // A flipped bit inside the secret, id or expiry still makes a (different) invite.
      if (result === 'returned') expect(kind, `seed ${seed}`).toBe(2)
      else expect(result, `seed ${seed}, case ${i}`).toBe(ErrorCode.INVALID)
    }
  })
})

describe('invite book', () => {
  const secret = new Uint8Array(32).fill(1)

  it('gives an invite out once', () => {
    const book = new InviteBook({ now: () => 0 })
    book.add({ id: 'aa', secret, expiresAt: 100 })
    expect(book.peek('aa')?.secret).toBe(secret)
    expect(book.take('aa')?.id).toBe('aa')
    expect(book.take('aa')).toBeUndefined()
    expect(book.peek('aa')).toBeUndefined()
    expect(book.peek('bb')).toBeUndefined()
  })

  it('forgets an invite when it expires', () => {
    let now = 0
    const book = new InviteBook({ now: () => now })
    const invite = book.issue({ peerId: newPeerId(), addrs: ['/ip4/192.0.2.1/tcp/1'], ttlMs: 1_000 })
    expect(invite.expiresAt).toBe(1_000)
    now = 999
    expect(book.list()).toEqual([{ id: invite.id, expiresAt: 1_000, failures: 0 }])
    now = 1_000
    expect(book.take(invite.id)).toBeUndefined()
    expect(book.list()).toEqual([])
  })

  it('counts wrong proofs and burns the invite at the limit', () => {
    const book = new InviteBook({ now: () => 0, maxFailures: 5 })
    book.add({ id: 'aa', secret, expiresAt: 100 })
    for (let i = 1; i <= 4; i++) expect(book.fail('aa')).toBe(false)
    expect(book.list()).toEqual([{ id: 'aa', expiresAt: 100, failures: 4 }])
    expect(book.fail('aa')).toBe(true)
    expect(book.peek('aa')).toBeUndefined()
    expect(book.fail('aa')).toBe(false)
  })

  it('revokes', () => {
    const book = new InviteBook()
    book.add({ id: 'aa', secret, expiresAt: Date.now() + 60_000 })
    expect(book.revoke('aa')).toBe(true)
    expect(book.revoke('aa')).toBe(false)
    expect(book.take('aa')).toBeUndefined()
  })
})
