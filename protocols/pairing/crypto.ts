/**
 * The cryptography of pairing, in one place for review. Both sides hold a one-time invite
 * secret (from the code) and build the same transcript from the invite id, both peer ids as
 * the Noise connection authenticated them (never as a message claims) and a fresh nonce from
 * each side. Each proves knowledge of the secret with HMAC-SHA256(secret, role ‖ transcript);
 * the grant (owner secret, volume) travels under AES-256-GCM with a key from
 * HKDF-SHA256(secret, salt = SHA-256(transcript)), the transcript as associated data.
 * A relay without the secret cannot re-bind a proof to its own peer id; an eavesdropper sees
 * only Noise ciphertext; the joiner proves first and the inviter answers with its own proof
 * (and the grant) only after checking it, so a peer without the secret never gets a value
 * to test guesses against (and the secret is 32 random bytes anyway).
 *
 * js-libp2p 3 does not expose the Noise handshake hash, so the binding to "the Noise session"
 * is through the two peer ids Noise authenticated (each a signature over the session's static
 * key) plus fresh nonces from both sides.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import {
  MAC_BYTES, PAIRING_CONTEXT, SEAL_INFO, SEAL_IV_BYTES, SEAL_TAG_BYTES
} from './constants.ts'

export type Role = 'joiner' | 'inviter'

export interface TranscriptInput {
  inviteId: Uint8Array
  /** Peer ids as multihash bytes, from `connection.remotePeer` / the local node. */
  joinerPeerId: Uint8Array
  inviterPeerId: Uint8Array
  joinerNonce: Uint8Array
  inviterNonce: Uint8Array
}

/** Every field length-prefixed (u16 big-endian), so no two inputs share an encoding. */
export function transcript (input: TranscriptInput): Uint8Array {
  return lengthPrefixed([
    Buffer.from(PAIRING_CONTEXT), input.inviteId, input.joinerPeerId, input.inviterPeerId,
    input.joinerNonce, input.inviterNonce
  ])
}

export function proofMac (secret: Uint8Array, role: Role, transcriptBytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', secret).update(lengthPrefixed([Buffer.from(role)])).update(transcriptBytes).digest())
}

/** Constant-time check of a peer's proof (a wrong length is simply wrong). */
export function proofMatches (secret: Uint8Array, role: Role, transcriptBytes: Uint8Array, mac: Uint8Array): boolean {
  const expected = proofMac(secret, role, transcriptBytes)
  if (mac.length !== MAC_BYTES) return false
  return timingSafeEqual(expected, mac)
}

/** iv(12) ‖ ciphertext ‖ tag(16). `iv` is for golden tests; each key seals once anyway. */
export function seal (secret: Uint8Array, transcriptBytes: Uint8Array, plaintext: Uint8Array, iv: Uint8Array = randomBytes(SEAL_IV_BYTES)): Uint8Array {
  const cipher = createCipheriv('aes-256-gcm', sealKey(secret, transcriptBytes), iv, { authTagLength: SEAL_TAG_BYTES })
  cipher.setAAD(transcriptBytes)
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()])
  return new Uint8Array(Buffer.concat([iv, body, cipher.getAuthTag()]))
}

/** The plaintext, or undefined if the box was not sealed with this secret and transcript. */
export function open (secret: Uint8Array, transcriptBytes: Uint8Array, sealed: Uint8Array): Uint8Array | undefined {
  if (sealed.length < SEAL_IV_BYTES + SEAL_TAG_BYTES) return undefined
  const iv = sealed.subarray(0, SEAL_IV_BYTES)
  const tag = sealed.subarray(sealed.length - SEAL_TAG_BYTES)
  const decipher = createDecipheriv('aes-256-gcm', sealKey(secret, transcriptBytes), iv, { authTagLength: SEAL_TAG_BYTES })
  decipher.setAAD(transcriptBytes)
  decipher.setAuthTag(tag)
  try {
    return new Uint8Array(Buffer.concat([decipher.update(sealed.subarray(SEAL_IV_BYTES, sealed.length - SEAL_TAG_BYTES)), decipher.final()]))
  } catch {
    return undefined
  }
}

function sealKey (secret: Uint8Array, transcriptBytes: Uint8Array): Buffer {
  const salt = createHash('sha256').update(transcriptBytes).digest()
  return Buffer.from(hkdfSync('sha256', secret, salt, SEAL_INFO, 32))
}

function lengthPrefixed (fields: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = []
  for (const field of fields) {
    const length = Buffer.alloc(2)
    length.writeUInt16BE(field.length)
    parts.push(length, field)
  }
  return new Uint8Array(Buffer.concat(parts))
}
