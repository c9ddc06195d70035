/**
 * The node's libp2p identity is its Bazil identity: the Ed25519 key `bazil init` made
 * (src/node/home.ts keeps it as a node:crypto KeyObject). This converts that key to the form
 * libp2p takes, so the peer id libp2p derives is the one home.ts derives and stays stable
 * across restarts.
 */
import type { KeyObject } from 'node:crypto'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import type { Ed25519PrivateKey } from '@libp2p/interface'
import { BazilError, ErrorCode } from '../errors.ts'

const SEED_BYTES = 32

/** The libp2p private key of an Ed25519 KeyObject (built from its 32-byte seed). */
export async function libp2pPrivateKey (key: KeyObject): Promise<Ed25519PrivateKey> {
  if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') {
    throw new BazilError(ErrorCode.INVALID, 'the node identity must be an Ed25519 private key')
  }
  const seed = Buffer.from(key.export({ format: 'jwk' }).d ?? '', 'base64url')
  if (seed.byteLength !== SEED_BYTES) {
    throw new BazilError(ErrorCode.INVALID, `the node identity has a ${seed.byteLength}-byte seed, not ${SEED_BYTES}`)
  }
  return await generateKeyPairFromSeed('Ed25519', seed)
}
