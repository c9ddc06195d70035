/**
 * The joiner's side of `/bazil/pair/1.0.0`: `join(libp2p, code, ...)` dials the inviter named
 * in the code (libp2p's Noise handshake proves the peer id), proves knowledge of the code's
 * secret, checks the inviter's proof, opens the sealed grant and adds the inviter to the trust
 * store. It returns the owner secret and volume record and does NOT write them: the caller
 * persists them (the CLI joins from a fresh data dir). If the caller passes the owner secret
 * it already has and the grant holds a different one, the join is refused (CONFLICT) and the
 * inviter is told, so neither side records the pairing.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { peerIdFromString } from '@libp2p/peer-id'
import { CODE_P2P, multiaddr } from '@multiformats/multiaddr'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import type { Multiaddr } from '@multiformats/multiaddr'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { deadline } from '../../src/net/deadline.ts'
import { parseInvite } from '../../src/net/invite.ts'
import type { ParsedInvite } from '../../src/net/invite.ts'
import type { PairedPeer, TrustStore } from '../../src/net/types.ts'
import { JOIN_DEADLINE_MS, NONCE_BYTES, OWNER_SECRET_BYTES, PAIRING_PROTOCOL } from './constants.ts'
import { open, proofMac, proofMatches, transcript } from './crypto.ts'
import { Challenge, Confirm, Grant, Hello, Proof, Result } from './pairing.ts'
import { cleanName, expectLength, frames, peerName, streamError } from './wire.ts'
import type { ExchangeLimits } from './wire.ts'

/** The part of a libp2p node that joining uses. */
export interface JoinNode {
  peerId: PeerId
  dial: (peer: Multiaddr[], options?: { signal?: AbortSignal }) => Promise<Connection>
}

export interface JoinOptions {
  trust: TrustStore
  /** This node's name, for the inviter's trust store. */
  hostname: string
  /** The owner secret this node already has, if any: a different one in the grant is refused. */
  ownerSecret?: Uint8Array
  /** Overrides JOIN_DEADLINE_MS (dial and exchange together). */
  deadlineMs?: number
  signal?: AbortSignal
}

export interface JoinResult {
  ownerSecret: Uint8Array
  volume: { name: string, id: string }
  /** The inviter, as now recorded in the trust store. */
  peer: PairedPeer
}

export async function join (node: JoinNode, code: string, options: JoinOptions): Promise<JoinResult> {
  const invite = parseInvite(code)
  const inviterId = peerIdFromString(invite.peerId)
  if (node.peerId.equals(inviterId)) throw new BazilError(ErrorCode.INVALID, 'this invite code was made by this node; use it on another device')
  const limits: ExchangeLimits = { deadline: deadline(options.deadlineMs ?? JOIN_DEADLINE_MS, options.signal), caller: options.signal }
  const { signal } = limits.deadline
  try {
    let connection: Connection
    let stream: Stream
    try {
      connection = await node.dial(invite.addrs.map(addr => multiaddr(addr).encapsulate(`/p2p/${invite.peerId}`)), { signal })
      stream = await connection.newStream(PAIRING_PROTOCOL, { signal })
    } catch (err) {
      throw streamError(err, `connecting to ${invite.peerId}`, limits)
    }
    try {
      // libp2p checks this when it dials a /p2p/ address; pairing must not rest on that alone.
      if (!connection.remotePeer.equals(inviterId)) throw new BazilError(ErrorCode.PERMISSION, 'the peer reached is not the one that made the code')
      const result = await exchange(stream, connection, node.peerId, invite, options, limits)
      // Paired by now: a close that fails (the inviter gone already) changes nothing.
      await stream.close({ signal }).catch(err => { stream.abort(err as Error) })
      return result
    } catch (err) {
      stream.abort(err as Error)
      throw streamError(err, 'pairing', limits)
    }
  } finally {
    limits.deadline.clear()
  }
}

async function exchange (stream: Stream, connection: Connection, self: PeerId, invite: ParsedInvite, options: JoinOptions, limits: ExchangeLimits): Promise<JoinResult> {
  const wire = frames(stream, limits)
  const inviteId = new Uint8Array(Buffer.from(invite.id, 'hex'))
  const joinerNonce = new Uint8Array(randomBytes(NONCE_BYTES))
  await wire.write({ inviteId, nonce: joinerNonce }, Hello)
  const challenge = await wire.read(Challenge, 'challenge')
  expectLength(challenge.nonce, NONCE_BYTES, 'nonce')
  const bytes = transcript({
    inviteId,
    joinerPeerId: self.toMultihash().bytes,
    inviterPeerId: connection.remotePeer.toMultihash().bytes,
    joinerNonce,
    inviterNonce: challenge.nonce
  })
  await wire.write({ mac: new Uint8Array(proofMac(invite.secret, 'joiner', bytes)), hostname: cleanName(options.hostname) }, Proof)
  const result = await wire.read(Result, 'result')
  if (result.status !== Result.Status.OK) {
    const expired = invite.expiresAt <= Date.now() ? ` (it expired at ${new Date(invite.expiresAt).toISOString()})` : ''
    throw new BazilError(ErrorCode.PERMISSION, `the inviting device refused this code${expired}: it is wrong, expired or already used; make a new one with \`bazil invite\``)
  }
  if (!proofMatches(invite.secret, 'inviter', bytes, result.mac)) {
    throw new BazilError(ErrorCode.PERMISSION, 'the inviting device could not prove it made this code')
  }
  const plaintext = open(invite.secret, bytes, result.sealed)
  if (plaintext === undefined) throw new BazilError(ErrorCode.PROTOCOL, 'the grant from the inviting device does not open')
  const grant = decodeGrant(plaintext)
  if (options.ownerSecret !== undefined && !sameSecret(options.ownerSecret, grant.ownerSecret)) {
    await wire.write({ accepted: false }, Confirm)
    await stream.close({ signal: limits.deadline.signal })
    throw new BazilError(ErrorCode.CONFLICT, 'this device already belongs to another owner (a different owner secret); join from a fresh data dir')
  }
  const remote = connection.remotePeer.toString()
  const peer: PairedPeer = {
    peerId: remote,
    name: peerName(grant.hostname, remote),
    addrs: [...new Set([connection.remoteAddr.decapsulateCode(CODE_P2P).toString(), ...invite.addrs])],
    pairedAt: new Date().toISOString()
  }
  await options.trust.add(peer)
  await wire.write({ accepted: true }, Confirm)
  return { ownerSecret: grant.ownerSecret, volume: { name: grant.volumeName, id: grant.volumeId }, peer }
}

function decodeGrant (plaintext: Uint8Array): Grant {
  let grant: Grant
  try { grant = Grant.decode(plaintext) } catch (err) {
    throw new BazilError(ErrorCode.PROTOCOL, 'the grant from the inviting device is malformed', { cause: err })
  }
  if (grant.ownerSecret.length !== OWNER_SECRET_BYTES || !/^[0-9a-f]{32}$/.test(grant.volumeId) || cleanName(grant.volumeName) !== grant.volumeName || grant.volumeName === '') {
    throw new BazilError(ErrorCode.PROTOCOL, 'the grant from the inviting device holds an invalid owner secret or volume record')
  }
  return grant
}

function sameSecret (a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}
