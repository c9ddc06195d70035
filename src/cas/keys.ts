/**
 * Content keys: everything that protects chunk content is derived from the owner's 32-byte
 * secret with HKDF-SHA256 (RFC 5869) under distinct, versioned info strings, so devices that
 * share the secret compute the same chunk ids (and dedup each other's data) and nobody without it
 * can confirm or read anything. Runs once per secret, so @noble/hashes' speed does not matter.
 */
import { hkdf } from '@noble/hashes/hkdf.js'
import { sha256 } from '@noble/hashes/sha2.js'
import { BazilError, ErrorCode } from '../errors.ts'

export const OWNER_SECRET_BYTES = 32

export interface ContentKeys {
  /** HMAC-SHA256 key for chunk ids (see seal.ts). */
  idKey: Uint8Array
  /** HMAC-SHA256 key from which each chunk's AES-256-GCM key is derived (see seal.ts). */
  encKey: Uint8Array
  /** Key of the chunker's gear table (see chunker.ts `keyedChunkerParams`). */
  chunkerKey: Uint8Array
}

/** HKDF info strings. Never reuse one for another purpose; a new scheme gets a new version. */
export const KEY_INFO = Object.freeze({
  chunkId: 'bazil/v1/chunk-id',
  chunkEnc: 'bazil/v1/chunk-enc',
  chunker: 'bazil/v1/chunker'
})

const encoder = new TextEncoder()

/** Derives the content keys. Throws INVALID unless `ownerSecret` is exactly 32 bytes. */
export function deriveContentKeys (ownerSecret: Uint8Array): ContentKeys {
  if (!(ownerSecret instanceof Uint8Array) || ownerSecret.length !== OWNER_SECRET_BYTES) {
    throw new BazilError(ErrorCode.INVALID, `owner secret must be ${OWNER_SECRET_BYTES} bytes`)
  }
  // No salt: the secret is already uniformly random, so HKDF-Extract's zero salt is enough.
  const derive = (info: string): Uint8Array => hkdf(sha256, ownerSecret, undefined, encoder.encode(info), 32)
  return { idKey: derive(KEY_INFO.chunkId), encKey: derive(KEY_INFO.chunkEnc), chunkerKey: derive(KEY_INFO.chunker) }
}
