/**
 * The inviter's side of `/bazil/pair/1.0.0`, a libp2p service: the one Bazil protocol an
 * unpaired peer may open. It answers every stream the same way up to the proof, so a stranger
 * learns nothing about pending invites; only a joiner whose proof checks out (against a live
 * invite, bound to both peer ids from the Noise connection) gets the sealed grant, and the
 * invite is taken at that moment, before anything is sent. The joiner is added to the trust
 * store when it confirms it kept the grant. A wrong proof leaves the invite pending but counts
 * against it (InviteBook burns it after MAX_FAILED_ATTEMPTS). Each stream has its own deadline
 * and frame bound; any failure resets that stream and nothing else.
 */
import { randomBytes } from 'node:crypto'
import type { Connection, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { CODE_P2P } from '@multiformats/multiaddr'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { deadline } from '../../src/net/deadline.ts'
import { logger } from '../../src/util/log.ts'
import type { Logger } from '../../src/util/log.ts'
import type { InviteBook } from '../../src/net/invite.ts'
import type { PairedPeer, TrustStore } from '../../src/net/types.ts'
import {
  INBOUND_DEADLINE_MS, INVITE_ID_BYTES, MAX_INBOUND_STREAMS, MAX_NAME_BYTES, MAX_OUTBOUND_STREAMS,
  NONCE_BYTES, OWNER_SECRET_BYTES, PAIRING_PROTOCOL
} from './constants.ts'
import { proofMac, proofMatches, seal, transcript } from './crypto.ts'
import { Challenge, Confirm, Grant, Hello, Proof, Result } from './pairing.ts'
import { cleanName, expectLength, finish, frames, peerName, streamError } from './wire.ts'
import type { ExchangeLimits } from './wire.ts'

export interface PairingInit {
  invites: InviteBook
  trust: TrustStore
  /** What a paired device receives: the owner secret and the volume record. */
  ownerSecret: Uint8Array
  volume: { name: string, id: string }
  /** This node's name, for the joiner's trust store. */
  hostname: string
  /** Called after a joiner was added to the trust store. */
  onPaired?: (peer: PairedPeer) => void
  /**
   * Called when an inbound exchange ends without pairing: PERMISSION (no live invite, or a
   * wrong proof), CONFLICT (the joiner declined the grant), PROTOCOL (a malformed frame),
   * TIMEOUT or UNAVAILABLE. For `bazil invite` to report attempts, and for tests.
   */
  onFailed?: (peerId: string, error: BazilError) => void
  /** Overrides INBOUND_DEADLINE_MS (tests). */
  deadlineMs?: number
  log?: Logger
}

/** The smallest part of libp2p's components this service uses. */
export interface PairingComponents {
  peerId: PeerId
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

/** `services: { pairing: pairing({ ... }) }` in the libp2p config. */
export function pairing (init: PairingInit): (components: PairingComponents) => PairingService {
  if (init.ownerSecret.length !== OWNER_SECRET_BYTES) {
    throw new BazilError(ErrorCode.INVALID, `the owner secret must be ${OWNER_SECRET_BYTES} bytes`)
  }
  if (init.volume.name === '' || cleanName(init.volume.name) !== init.volume.name || !/^[0-9a-f]{32}$/.test(init.volume.id)) {
    throw new BazilError(ErrorCode.INVALID,
      `the volume record cannot be sent: its name must be 1–${MAX_NAME_BYTES} bytes of printable text, its id 32 hex digits`)
  }
  return components => new PairingService(components, init)
}

export class PairingService implements Startable {
  private readonly log: Logger
  private started = false

  constructor (private readonly components: PairingComponents, private readonly init: PairingInit) {
    this.log = init.log ?? logger('bazil:pair')
  }

  readonly [Symbol.toStringTag] = 'bazil/pairing'

  async start (): Promise<void> {
    await this.components.registrar.handle(PAIRING_PROTOCOL, (stream, connection) => this.handle(stream, connection), {
      maxInboundStreams: MAX_INBOUND_STREAMS,
      maxOutboundStreams: MAX_OUTBOUND_STREAMS
    })
    this.started = true
  }

  async stop (): Promise<void> {
    await this.components.registrar.unhandle(PAIRING_PROTOCOL)
    this.started = false
  }

  isStarted (): boolean {
    return this.started
  }

  private async handle (stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    const limits = { deadline: deadline(this.init.deadlineMs ?? INBOUND_DEADLINE_MS) }
    let outcome: PairedPeer | BazilError
    let clean = false
    try {
      outcome = await this.exchange(stream, connection, limits)
      clean = true
    } catch (err) {
      outcome = streamError(err, 'serving a pairing stream', limits)
      stream.abort(outcome)
    }
    try {
      this.report(remote, outcome)
      if (clean) await finish(stream, limits.deadline.signal)
    } finally {
      limits.deadline.clear()
    }
  }

  private report (remote: string, outcome: PairedPeer | BazilError): void {
    try {
      if (outcome instanceof BazilError) {
        this.log('pairing with %s failed: %s %s', remote, outcome.code, outcome.message)
        this.init.onFailed?.(remote, outcome)
      } else {
        this.log('paired with %s (%s)', outcome.name, remote)
        this.init.onPaired?.(outcome)
      }
    } catch (err) {
      this.log.error('a pairing callback threw: %s', (err as Error).message)
    }
  }

  /** One exchange: the paired peer, or why not (thrown if the stream must be reset). */
  private async exchange (stream: Stream, connection: Connection, limits: ExchangeLimits): Promise<PairedPeer | BazilError> {
    const wire = frames(stream, limits)
    const remote = connection.remotePeer.toString()
    const hello = await wire.read(Hello, 'hello')
    expectLength(hello.inviteId, INVITE_ID_BYTES, 'invite id')
    expectLength(hello.nonce, NONCE_BYTES, 'nonce')
    const inviterNonce = new Uint8Array(randomBytes(NONCE_BYTES))
    await wire.write({ nonce: inviterNonce }, Challenge)
    const proof = await wire.read(Proof, 'proof')
    const bytes = transcript({
      inviteId: hello.inviteId,
      joinerPeerId: connection.remotePeer.toMultihash().bytes,
      inviterPeerId: this.components.peerId.toMultihash().bytes,
      joinerNonce: hello.nonce,
      inviterNonce
    })
    const id = Buffer.from(hello.inviteId).toString('hex')
    const invite = this.init.invites.peek(id)
    if (invite === undefined || !proofMatches(invite.secret, 'joiner', bytes, proof.mac)) {
      const burned = invite !== undefined && this.init.invites.fail(id)
      await wire.write({ status: Result.Status.DENIED, mac: new Uint8Array(), sealed: new Uint8Array() }, Result)
      const why = invite === undefined ? 'no live invite has that id' : burned ? 'wrong proof; the invite is now burned' : 'wrong proof'
      return new BazilError(ErrorCode.PERMISSION, `denied: ${why}`)
    }
    // Taken before anything secret leaves: a second joiner with the same code finds nothing.
    this.init.invites.take(id)
    const grant = Grant.encode({
      ownerSecret: new Uint8Array(this.init.ownerSecret),
      volumeName: this.init.volume.name,
      volumeId: this.init.volume.id,
      hostname: cleanName(this.init.hostname)
    })
    await wire.write({ status: Result.Status.OK, mac: toBytes(proofMac(invite.secret, 'inviter', bytes)), sealed: toBytes(seal(invite.secret, bytes, grant)) }, Result)
    const confirm = await wire.read(Confirm, 'confirmation')
    if (!confirm.accepted) return new BazilError(ErrorCode.CONFLICT, 'the joiner declined: it holds a different owner secret')
    const peer: PairedPeer = {
      peerId: remote,
      name: peerName(proof.hostname, remote),
      addrs: [connection.remoteAddr.decapsulateCode(CODE_P2P).toString()],
      pairedAt: new Date().toISOString()
    }
    await this.init.trust.add(peer)
    return peer
  }
}

function toBytes (bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes)
}
