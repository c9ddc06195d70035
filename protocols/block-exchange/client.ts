/**
 * The asking side of /bazil/block/1.0.0. A want list is cut into requests of at most
 * MAX_IDS_PER_REQUEST ids, one stream each; the next request is opened while the current one
 * is being received — paused, so it holds at most one initial yamux window until its turn —
 * so the wire does not idle between batches. Answers are yielded in the
 * order asked, each checked against the id asked for. Receiving pauses when the consumer
 * does not pull, which stops the sender (back-pressure), so memory stays bounded.
 *
 * Errors: PERMISSION for a peer we have not paired; UNAVAILABLE when the peer cannot be
 * reached, resets the stream or goes away mid-answer; TIMEOUT when it makes no progress for
 * the stall timeout; PROTOCOL for a malformed or mismatched answer; ABORTED on the signal.
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
import { MAX_IDS_PER_REQUEST, MAX_RESPONSE_BYTES, PROTOCOL } from './constants.ts'
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

interface Opened { stream: Stream, reader: FrameReader }

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

  let next: Promise<Opened> | undefined
  const open = (b: number): Promise<Opened> => {
    const opening = openRequest(context, peer, peerId, frames[b] as Uint8Array, b > 0, signal)
    opening.catch(() => {}) // awaited in turn; a prefetch abandoned early must not be unhandled
    return opening
  }
  try {
    if (batches.length > 0) next = open(0)
    for (let b = 0; b < batches.length; b++) {
      const current = await (next as Promise<Opened>)
      next = b + 1 < batches.length ? open(b + 1) : undefined
      yield * receive(context, peer, current, batches[b] as Uint8Array[], signal)
    }
  } finally {
    // Abandoned (consumer stopped, or an error): the prefetched request must not linger.
    void next?.then(({ stream, reader }) => {
      reader.release()
      stream.abort(new Error('block fetch abandoned'))
    }, () => {})
  }
}

async function openRequest (context: ClientContext, peer: string, peerId: PeerId, frame: Uint8Array, ahead: boolean, signal: AbortSignal | undefined): Promise<Opened> {
  const step = deadline(context.stallTimeoutMs, signal)
  let stream: Stream | undefined
  let reader: FrameReader | undefined
  try {
    stream = await context.connectionManager.openStream(peerId, PROTOCOL, { signal: step.signal })
    reader = new FrameReader(stream, {
      maxFrameBytes: MAX_RESPONSE_BYTES,
      onBytes: bytes => context.traffic?.received(peer, bytes),
      startPaused: ahead // held to one yamux window until its turn, not a full window of 16 MiB
    })
    await sendParts(stream, [frame], { signal: step.signal })
    context.traffic?.sent(peer, frame.byteLength)
    await stream.close({ signal: step.signal }) // our half: the request is all we send
    return { stream, reader }
  } catch (err) {
    reader?.release()
    stream?.abort(err instanceof Error ? err : new Error(String(err)))
    throw netError(err, `ask ${peer} for blocks`, { signal, timedOut: step.timedOut() })
  } finally {
    step.clear()
  }
}

async function * receive (context: ClientContext, peer: string, opened: Opened, ids: Uint8Array[], signal: AbortSignal | undefined): AsyncGenerator<Answer> {
  const { stream, reader } = opened
  // The consumer may be away (between pulls) when the caller aborts: reset at once anyway.
  const onAbort = (): void => { stream.abort(new BazilError(ErrorCode.ABORTED, 'block fetch aborted')) }
  signal?.addEventListener('abort', onAbort, { once: true })
  let done = false
  let step: ReturnType<typeof deadline> | undefined
  try {
    for (const [i, id] of ids.entries()) {
      step = deadline(context.stallTimeoutMs, signal)
      const frame = await reader.next({ signal: step.signal })
      step.clear()
      if (frame === null) {
        throw new BazilError(ErrorCode.UNAVAILABLE, `${peer} ended the stream after ${i} of ${ids.length} answers`)
      }
      const response = decodeResponse(frame)
      if (Buffer.compare(response.id, id) !== 0) {
        throw new BazilError(ErrorCode.PROTOCOL, `${peer} answered ${hex(response.id)} when asked for ${hex(id)}`)
      }
      yield { id, status: response.status, data: response.data }
    }
    step = deadline(context.stallTimeoutMs, signal)
    const extra = await reader.next({ signal: step.signal })
    step.clear()
    if (extra !== null) throw new BazilError(ErrorCode.PROTOCOL, `${peer} sent more answers than asked`)
    done = true
  } catch (err) {
    step?.clear()
    const error = netError(err, `fetch blocks from ${peer}`, { signal, timedOut: step?.timedOut() })
    context.log('block fetch from %s failed: %s', peer, error.message)
    stream.abort(error)
    throw error
  } finally {
    signal?.removeEventListener('abort', onAbort)
    reader.release()
    if (!done) stream.abort(new Error('block fetch abandoned')) // no-op if already closed or aborted
  }
}

function hex (bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex')
}
