/**
 * Golden bytes of pairing (`/bazil/pair/1.0.0`): each message as protobuf, the transcript
 * layout, the two proofs (checked against HMAC-SHA256 computed here by hand) and the sealed
 * grant, so any change to the wire or the crypto shows up here and needs a new protocol id.
 */
import { describe, it, expect } from 'vitest'
import { createHmac } from 'node:crypto'
import { open, proofMac, seal, transcript } from '../../protocols/pairing/crypto.ts'
import { Challenge, Confirm, Grant, Hello, Proof, Result } from '../../protocols/pairing/pairing.ts'

const VOLUME_ID = '0123456789abcdef0123456789abcdef'

describe('pairing wire format (golden bytes)', () => {
  const fill = (length: number, byte: number): number[] => new Array<number>(length).fill(byte)
  const peerA = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...fill(32, 2)]
  const peerB = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...fill(32, 3)]
  const input = {
    inviteId: new Uint8Array(fill(16, 1)),
    joinerPeerId: new Uint8Array(peerA),
    inviterPeerId: new Uint8Array(peerB),
    joinerNonce: new Uint8Array(fill(32, 4)),
    inviterNonce: new Uint8Array(fill(32, 5))
  }
  const secret = new Uint8Array(fill(32, 9))
  const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')

  it('encodes each message as specified', () => {
    expect(hex(Hello.encode({ inviteId: new Uint8Array(fill(16, 1)), nonce: new Uint8Array(fill(32, 4)) })))
      .toBe(hex(new Uint8Array([0x0a, 16, ...fill(16, 1), 0x12, 32, ...fill(32, 4)])))
    expect(hex(Challenge.encode({ nonce: new Uint8Array(fill(32, 5)) }))).toBe(hex(new Uint8Array([0x0a, 32, ...fill(32, 5)])))
    expect(hex(Proof.encode({ mac: new Uint8Array(fill(32, 6)), hostname: 'laptop' })))
      .toBe(hex(new Uint8Array([0x0a, 32, ...fill(32, 6), 0x12, 6, ...Buffer.from('laptop')])))
    // DENIED is the zero value: a refusal is an empty frame, with nothing else in it.
    expect(hex(Result.encode({ status: Result.Status.DENIED, mac: new Uint8Array(), sealed: new Uint8Array() }))).toBe('')
    expect(hex(Result.encode({ status: Result.Status.OK, mac: new Uint8Array(fill(32, 7)), sealed: new Uint8Array([1, 2]) })))
      .toBe(hex(new Uint8Array([0x08, 1, 0x12, 32, ...fill(32, 7), 0x1a, 2, 1, 2])))
    expect(hex(Grant.encode({ ownerSecret: new Uint8Array(fill(32, 8)), volumeName: 'default', volumeId: VOLUME_ID, hostname: 'server' })))
      .toBe(hex(new Uint8Array([0x0a, 32, ...fill(32, 8), 0x12, 7, ...Buffer.from('default'), 0x1a, 32, ...Buffer.from(VOLUME_ID), 0x22, 6, ...Buffer.from('server')])))
    expect(hex(Confirm.encode({ accepted: true }))).toBe('0801')
    expect(hex(Confirm.encode({ accepted: false }))).toBe('')
  })

  it('builds the transcript from length-prefixed fields', () => {
    const u16 = (n: number): number[] => [n >> 8, n & 0xff]
    const expected = new Uint8Array([
      ...u16(13), ...Buffer.from('bazil/pair/v1'), ...u16(16), ...fill(16, 1), ...u16(38), ...peerA, ...u16(38), ...peerB,
      ...u16(32), ...fill(32, 4), ...u16(32), ...fill(32, 5)
    ])
    expect(hex(transcript(input))).toBe(hex(expected))
  })

  it('proves with HMAC-SHA256(secret, role ‖ transcript), distinct per role', () => {
    const t = transcript(input)
    const byHand = (role: string): string =>
      createHmac('sha256', secret).update(Buffer.from([0, role.length])).update(role).update(t).digest('hex')
    expect(hex(proofMac(secret, 'joiner', t))).toBe(byHand('joiner'))
    expect(hex(proofMac(secret, 'inviter', t))).toBe(byHand('inviter'))
    expect(hex(proofMac(secret, 'joiner', t))).toBe('3540fc628044f8d2cfa866950576c31db5ebc98019612837bc1334b36fe28422')
    expect(hex(proofMac(secret, 'inviter', t))).toBe('530dfe24978bbbb98c097114b5fad874e7988e8fbd6abfeb10587af983d49352')
  })

  it('seals the grant under a key bound to the secret and the transcript', () => {
    const t = transcript(input)
    const sealed = seal(secret, t, new Uint8Array([1, 2, 3]), new Uint8Array(fill(12, 6)))
    expect(hex(sealed)).toBe('06060606060606060606060655dc72b03cd64ad1675cf79895923a24669e69')
    expect(open(secret, t, sealed)).toEqual(new Uint8Array([1, 2, 3]))
    const otherTranscript = transcript({ ...input, joinerNonce: new Uint8Array(fill(32, 0)) })
    expect(open(secret, otherTranscript, sealed)).toBeUndefined()
    expect(open(new Uint8Array(fill(32, 8)), t, sealed)).toBeUndefined()
    const flipped = new Uint8Array(sealed)
    flipped[14] = (flipped[14] ?? 0) ^ 1
    expect(open(secret, t, flipped)).toBeUndefined()
    expect(open(secret, t, sealed.subarray(0, 20))).toBeUndefined()
  })
})
