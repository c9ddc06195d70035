/**
 * The asking side of /bazil/block/1.0.0. A want list becomes one stream carrying requests of
 * at most MAX_IDS_PER_REQUEST ids; the next request is sent when the current one has
 * PREFETCH_WHEN_LEFT answers to go, so the wire does not idle between them, and our side is
 * closed after the last. Answers are yielded in the order asked, each checked against the id
 * asked for. Receiving pauses when the consumer does not pull, which stops the sender
 * (back-pressure), so memory stays bounded — but a consumer that stops pulling for the stall
 * timeout loses the stream (the server resets it).
 *
 * Errors: PERMISSION for a peer we have not paired; UNAVAILABLE when the peer cannot be
 * reached, resets the stream or goes away mid-answer; TIMEOUT when no byte arrives for the
 * stall timeout (a slow answer is fine while it keeps coming); PROTOCOL for a malformed or
 * mismatched answer; ABORTED on the signal.
 */
import type { PeerId, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { BazilError, ErrorCode, throwIfAborted } from '../../src/errors.ts'
import { deadline } from '../../src/net/deadline.ts'
import { netError } from '../../src/net/errors.ts'
import { FrameReader, sendParts } from '../../src/net/frames.ts'
import type { Traffic } from '../../src/net/traffic.ts'
import type { TrustStore } from '../../src/net/types.ts'
import type { Logger } from '../../src/util/log.ts'
import { MAX_IDS_PER_REQUEST, MAX_RESPONSE_BYTES, PREFETCH_WHEN_LEFT, PROTOCOL } from './constants.ts'
import { decodeResponse, encodeRequestFrame, Request, Response } from './wire.ts'

export interface StreamOpener {
  openStream: (peer: PeerId, protocol: string, options?: { signal?: AbortSignal }) => Promise<Stream>
}

export interface ClientContext {
  connectionManager: StreamOpener
  trust: TrustStore
  traffic?: Traffic
  log: Logger
  stallTimeoutMs: number
}

export interface Answer {
  /** The id asked for (the answer's id was checked against it). */
  id: Uint8Array
  status: Response.Status
  data: Uint8Array
}

/** Answers for `ids`, in order. Nothing is sent until the first pull. */
export async function * exchange (context: ClientContext, peer: string, kind: Request.Kind, ids: Uint8Array[], options?: { signal?: AbortSignal }): AsyncGenerator<Answer> {
  const signal = options?.signal
  throwIfAborted(signal)
  if (!context.trust.isPaired(peer)) throw new BazilError(ErrorCode.PERMISSION, `peer ${peer} is not paired`)
  let peerId: PeerId
  try {
    peerId = peerIdFromString(peer)
  } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `not a peer id: ${peer}`, { cause: err })
  }
  const batches: Uint8Array[][] = []
  for (let i = 0; i < ids.length; i += MAX_IDS_PER_REQUEST) batches.push(ids.slice(i, i + MAX_IDS_PER_REQUEST))
  const frames = batches.map(batch => encodeRequestFrame(kind, batch)) // checks every id before anything is sent
  if (batches.length === 0) return

  const { stream, reader } = await openStream(context, peer, peerId, signal)
  // The consumer may be away (between pulls) when the caller aborts: reset at once anyway.
  const onAbort = (): void => { stream.abort(new BazilError(ErrorCode.ABORTED, 'block fetch aborted')) }
  signal?.addEventListener('abort', onAbort, { once: true })
  let sent = 0
  const sendNext = async (): Promise<void> => {
    const frame = frames[sent++]
    if (frame === undefined) return
    await sendParts(stream, [frame], { signal, idleMs: context.stallTimeoutMs })
    context.traffic?.sent(peer, frame.byteLength)
    if (sent === frames.length) await stream.close({ signal }) // our side: nothing more to ask
  }
  let done = false
  try {
    await sendNext()
    for (const batch of batches) {
      for (const [i, id] of batch.entries()) {
        if (batch.length - i === PREFETCH_WHEN_LEFT) await sendNext()
        const frame = await reader.next({ signal, idleMs: context.stallTimeoutMs })
        if (frame === null) throw new BazilError(ErrorCode.UNAVAILABLE, `${peer} ended the stream before answering ${hex(id)}`)
        const response = decodeResponse(frame)
        if (Buffer.compare(response.id, id) !== 0) {
          throw new BazilError(ErrorCode.PROTOCOL, `${peer} answered ${hex(response.id)} when asked for ${hex(id)}`)
        }
        yield { id, status: response.status, data: response.data }
      }
      if (sent < frames.length && batch.length < PREFETCH_WHEN_LEFT) await sendNext()
    }
    const extra = await reader.next({ signal, idleMs: context.stallTimeoutMs })
    if (extra !== null) throw new BazilError(ErrorCode.PROTOCOL, `${peer} sent more answers than asked`)
    done = true
  } catch (err) {
    const error = netError(err, `fetch blocks from ${peer}`, { signal })
    context.log('block fetch from %s failed: %s', peer, error.message)
    stream.abort(error)
    throw error
  } finally {
    signal?.removeEventListener('abort', onAbort)
    reader.release()
    if (!done) stream.abort(new Error('block fetch abandoned')) // no-op if already closed or aborted
  }
}

async function openStream (context: ClientContext, peer: string, peerId: PeerId, signal: AbortSignal | undefined): Promise<{ stream: Stream, reader: FrameReader }> {
  const step = deadline(context.stallTimeoutMs, signal)
  try {
    const stream = await context.connectionManager.openStream(peerId, PROTOCOL, { signal: step.signal })
    const reader = new FrameReader(stream, { maxFrameBytes: MAX_RESPONSE_BYTES, onBytes: bytes => context.traffic?.received(peer, bytes) })
    return { stream, reader }
  } catch (err) {
    throw netError(err, `open a block stream to ${peer}`, { signal, timedOut: step.timedOut() })
  } finally {
    step.clear()
  }
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}
