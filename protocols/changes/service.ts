/**
 * The change-log service (/bazil/changes/1.0.0) as a libp2p service factory. It serves this
 * node's change log to paired peers holding the same volume (PULL), hears their heads (HEAD),
 * and asks the same of them. Records are opaque here: the sync layer (src/sync/) encodes,
 * decides and applies them.
 *
 *   const node = await createNetNode({ ..., services: { changes: changeLog({ source, trust, onHead }) } })
 *   const { head, records } = await node.services.changes.pull(peerId, { since, limit })
 */
import type { Connection, PeerId, Startable, Stream, StreamHandler, StreamHandlerOptions } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { deadline } from '../../src/net/deadline.ts'
import { netError } from '../../src/net/errors.ts'
import { FrameReader, sendParts } from '../../src/net/frames.ts'
import { admitPaired } from '../../src/net/guard.ts'
import type { Traffic } from '../../src/net/traffic.ts'
import type { TrustStore } from '../../src/net/types.ts'
import { logger } from '../../src/util/log.ts'
import {
  EXCHANGE_DEADLINE_MS, MAX_INBOUND_STREAMS, MAX_RECORDS_PER_PULL, MAX_REPLY_BYTES, MAX_REQUEST_BYTES, PROTOCOL,
  REQUEST_TIMEOUT_MS
} from './constants.ts'
import { decodeReply, decodeRequest, encodeReplyFrame, encodeRequestFrame, Reply } from './wire.ts'
import type { ChangeRecord, ChangesReply, ChangesRequest } from './wire.ts'

const log = logger('bazil:changes')

/** This node's change log, as the server reads it. */
export interface ChangeSource {
  /** The volume id this node holds (peers with another one are refused). */
  volume: Uint8Array
  /** The newest seq in the log (0 when empty). */
  head: () => number
  /** Records with seq > since, oldest first, at most `limit`, within about `maxBytes`. */
  read: (since: number, limit: number, maxBytes: number) => Promise<ChangeRecord[]>
}

export interface ChangeLogInit {
  source: ChangeSource
  trust: TrustStore
  /** A paired peer told us its head (HEAD), or answered one of our requests with it. */
  onHead?: (peerId: string, head: number) => void
  /** We sent a paired peer our log up to `upTo` (its pull reached there). */
  onServed?: (peerId: string, upTo: number) => void
  traffic?: Traffic
  /** Overrides of the constants.ts deadlines, for tests. */
  requestTimeoutMs?: number
  exchangeDeadlineMs?: number
}

export interface ChangeLogComponents {
  registrar: {
    handle: (protocol: string, handler: StreamHandler, options?: StreamHandlerOptions) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
  connectionManager: {
    openStream: (peer: PeerId, protocol: string, options?: { signal?: AbortSignal }) => Promise<Stream>
  }
}

export interface ChangeLog extends Startable {
  /**
   * Records of a paired peer's log after `since`. Errors: PERMISSION (not paired), CONFLICT
   * (the peer holds another volume), UNAVAILABLE, TIMEOUT, PROTOCOL, ABORTED.
   */
  pull: (peerId: string, range: { since: number, limit?: number }, options?: { signal?: AbortSignal }) => Promise<{ head: number, records: ChangeRecord[] }>
  /** Tells a paired peer our head; resolves with its head. Errors as for pull. */
  announce: (peerId: string, head: number, options?: { signal?: AbortSignal }) => Promise<number>
}

export function changeLog (init: ChangeLogInit): (components: ChangeLogComponents) => ChangeLog {
  return components => new ChangeLogService(init, components)
}

class ChangeLogService implements ChangeLog {
  readonly [Symbol.toStringTag] = '@bazil/changes'
  readonly #init: ChangeLogInit
  readonly #components: ChangeLogComponents
  #stop = new AbortController()
  readonly #inbound = new Set<Stream>()

  constructor (init: ChangeLogInit, components: ChangeLogComponents) {
    this.#init = init
    this.#components = components
  }

  async start (): Promise<void> {
    this.#stop = new AbortController()
    await this.#components.registrar.handle(PROTOCOL, async (stream, connection) => {
      await this.#serve(stream, connection)
    }, { maxInboundStreams: MAX_INBOUND_STREAMS })
  }

  async stop (): Promise<void> {
    this.#stop.abort(new BazilError(ErrorCode.CLOSED, 'change log stopped'))
    for (const stream of this.#inbound) stream.abort(new BazilError(ErrorCode.CLOSED, 'change log stopped'))
    await this.#components.registrar.unhandle(PROTOCOL)
  }

  async pull (peerId: string, range: { since: number, limit?: number }, options?: { signal?: AbortSignal }): Promise<{ head: number, records: ChangeRecord[] }> {
    const request: ChangesRequest = { kind: 'pull', volume: this.#init.source.volume, since: range.since, limit: range.limit ?? MAX_RECORDS_PER_PULL }
    const reply = await this.#ask(peerId, request, options?.signal)
    return { head: reply.head, records: reply.records }
  }

  async announce (peerId: string, head: number, options?: { signal?: AbortSignal }): Promise<number> {
    return (await this.#ask(peerId, { kind: 'head', volume: this.#init.source.volume, head }, options?.signal)).head
  }

  async #ask (peerId: string, request: ChangesRequest, signal?: AbortSignal): Promise<ChangesReply> {
    const frame = encodeRequestFrame(request) // checks our own arguments first
    if (!this.#init.trust.isPaired(peerId)) throw new BazilError(ErrorCode.PERMISSION, `${peerId} is not a paired peer`)
    const whole = deadline(this.#init.exchangeDeadlineMs ?? EXCHANGE_DEADLINE_MS, signal)
    let stream: Stream | undefined
    let reader: FrameReader | undefined
    try {
      stream = await this.#components.connectionManager.openStream(peerIdFromString(peerId), PROTOCOL, { signal: whole.signal })
      reader = new FrameReader(stream, { maxFrameBytes: MAX_REPLY_BYTES, onBytes: bytes => this.#init.traffic?.received(peerId, bytes) })
      await sendParts(stream, [frame], { signal: whole.signal })
      this.#init.traffic?.sent(peerId, frame.byteLength)
      await stream.close({ signal: whole.signal })
      const bytes = await reader.next({ signal: whole.signal })
      if (bytes === null) throw new BazilError(ErrorCode.UNAVAILABLE, `${peerId} ended the stream without a reply`)
      const reply = decodeReply(bytes, request)
      if (await reader.next({ signal: whole.signal }) !== null) throw new BazilError(ErrorCode.PROTOCOL, `${peerId} sent more than one reply`)
      if (reply.status === Reply.Status.WRONG_VOLUME) throw new BazilError(ErrorCode.CONFLICT, `${peerId} holds another volume`)
      if (reply.status === Reply.Status.ERROR) throw new BazilError(ErrorCode.UNAVAILABLE, `${peerId} could not read its change log`)
      this.#init.onHead?.(peerId, reply.head)
      return reply
    } catch (err) {
      const error = netError(err, `exchange changes with ${peerId}`, { signal, timedOut: whole.timedOut() })
      stream?.abort(error)
      throw error
    } finally {
      whole.clear()
      reader?.release()
    }
  }

  async #serve (stream: Stream, connection: Connection): Promise<void> {
    if (!admitPaired(this.#init.trust, stream, connection, log)) return
    const peer = connection.remotePeer.toString()
    const { source, traffic } = this.#init
    this.#inbound.add(stream)
    const whole = deadline(this.#init.exchangeDeadlineMs ?? EXCHANGE_DEADLINE_MS, this.#stop.signal)
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_REQUEST_BYTES, onBytes: bytes => traffic?.received(peer, bytes) })
    try {
      const first = deadline(this.#init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS, whole.signal)
      let bytes: Uint8Array | null
      try {
        bytes = await reader.next({ signal: first.signal })
      } catch (err) {
        throw first.timedOut() ? new BazilError(ErrorCode.TIMEOUT, 'no request in time') : err
      } finally {
        first.clear()
      }
      if (bytes === null) throw new BazilError(ErrorCode.PROTOCOL, 'stream ended before a request')
      const request = decodeRequest(bytes)
      if (await reader.next({ signal: whole.signal }) !== null) throw new BazilError(ErrorCode.PROTOCOL, 'data after the request')
      let reply: ChangesReply
      if (Buffer.compare(request.volume, source.volume) !== 0) {
        log('%s asked about another volume', peer)
        reply = { status: Reply.Status.WRONG_VOLUME, head: 0, records: [] }
      } else {
        if (request.kind === 'head') this.#init.onHead?.(peer, request.head)
        reply = { status: Reply.Status.OK, head: source.head(), records: [] }
        if (request.kind === 'pull' && request.since < reply.head) {
          try {
            reply.records = await source.read(request.since, request.limit, MAX_REPLY_BYTES - 4096)
          } catch (err) {
            log.error('reading the change log for %s: %s', peer, (err as Error).message)
            reply = { status: Reply.Status.ERROR, head: reply.head, records: [] }
          }
          // The log may have grown while it was read.
          reply.head = Math.max(reply.head, ...reply.records.map(r => r.seq))
        }
      }
      const frame = encodeReplyFrame(reply)
      await sendParts(stream, [frame], { signal: whole.signal })
      traffic?.sent(peer, frame.byteLength)
      await stream.close({ signal: whole.signal })
      if (request.kind === 'pull' && reply.status === Reply.Status.OK) {
        this.#init.onServed?.(peer, reply.records.at(-1)?.seq ?? Math.max(request.since, reply.head))
      }
    } catch (err) {
      const reason = whole.timedOut() ? `deadline of ${this.#init.exchangeDeadlineMs ?? EXCHANGE_DEADLINE_MS} ms passed` : (err as Error).message
      log('change stream from %s reset: %s', peer, reason)
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    } finally {
      whole.clear()
      reader.release()
      this.#inbound.delete(stream)
    }
  }
}
