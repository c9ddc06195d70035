/**
 * The serving side of /bazil/block/1.0.0 (paired peers only). An inbound stream carries a
 * sequence of Requests; each is answered in full, in order, from the local store — reading a
 * few blocks ahead of the one being sent, and sending only as fast as the client's window
 * allows — then the next is read, until the client closes its side; then the server closes.
 *
 * Bounds: a request frame ≤ MAX_REQUEST_BYTES that must arrive within REQUEST_TIMEOUT_MS of
 * the previous answer (or of the stream's opening); each request answered within
 * REQUEST_DEADLINE_MS; no step (a store read, the client's window opening) may stall for
 * STALL_TIMEOUT_MS. Any violation, stall or deadline resets the stream; nothing else on the
 * node is affected.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { BazilError, ErrorCode, isBazilError } from '../../src/errors.ts'
import type { KV, KVHas } from '../../src/kv/kv.ts'
import { deadline, untilAborted } from '../../src/net/deadline.ts'
import { FrameReader, sendParts } from '../../src/net/frames.ts'
import type { Traffic } from '../../src/net/traffic.ts'
import type { Logger } from '../../src/util/log.ts'
import { MAX_REQUEST_BYTES, READ_AHEAD } from './constants.ts'
import { decodeRequest, encodeResponseFrame, Request, Response } from './wire.ts'

export interface ServerContext {
  store: KV & Partial<KVHas>
  traffic?: Traffic
  log: Logger
  requestTimeoutMs: number
  requestDeadlineMs: number
  stallTimeoutMs: number
  /** Fires when the service stops. */
  stopped: AbortSignal
}

interface Answer { status: Response.Status, data?: Uint8Array }

/** Stands in for an answer already sent (so startRead does not read it again). */
const DONE: Promise<Answer> = Promise.resolve({ status: Response.Status.OK })

export async function serveStream (stream: Stream, connection: Connection, context: ServerContext): Promise<void> {
  const peer = connection.remotePeer.toString()
  const { log } = context
  const reader = new FrameReader(stream, { maxFrameBytes: MAX_REQUEST_BYTES, onBytes: bytes => context.traffic?.received(peer, bytes) })
  let answered = 0
  try {
    for (let requests = 0; ; requests++) {
      const wait = deadline(context.requestTimeoutMs, context.stopped)
      let frame: Uint8Array | null
      try {
        frame = await reader.next({ signal: wait.signal })
      } catch (err) {
        throw wait.timedOut() ? new BazilError(ErrorCode.TIMEOUT, `no request within ${context.requestTimeoutMs} ms`) : err
      } finally {
        wait.clear()
      }
      if (frame === null) {
        if (requests === 0) throw new BazilError(ErrorCode.PROTOCOL, 'stream ended before a request')
        break
      }
      const request = decodeRequest(frame)
      log('%s asks %d blocks (%s)', peer, request.ids.length, request.kind)
      const whole = deadline(context.requestDeadlineMs, context.stopped)
      try {
        answered += await answer(stream, peer, request, context, whole.signal)
      } catch (err) {
        throw whole.timedOut() ? new BazilError(ErrorCode.TIMEOUT, `request not answered within ${context.requestDeadlineMs} ms`) : err
      } finally {
        whole.clear()
      }
    }
    await stream.close({ signal: AbortSignal.timeout(context.stallTimeoutMs) })
    log('answered %d blocks to %s', answered, peer)
  } catch (err) {
    if (isBazilError(err, ErrorCode.PROTOCOL)) log.error('resetting block stream from %s: %s', peer, (err as Error).message)
    else log('block stream from %s ended after %d answers: %s', peer, answered, (err as Error).message)
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    reader.release()
  }
}

/**
 * Answers up to this size travel in one piece (header and block copied together), and answers
 * already read are sent together up to COALESCE_BYTES: each send is a muxer frame, a Noise
 * message and a socket write, which cost the serving side more than the bytes of a small
 * block (2,000 small files to a peer: ~0.5 ms of the JS thread per block answered).
 */
const SMALL_ANSWER_BYTES = 64 * 1024
const COALESCE_BYTES = 256 * 1024

/** Sends one answer per id of `request`, in order; resolves with how many were sent. */
async function answer (stream: Stream, peer: string, request: Request, context: ServerContext, signal: AbortSignal): Promise<number> {
  const reads: Reads = { answers: new Array(request.ids.length), ready: new Array(request.ids.length) }
  for (let i = 0; i < READ_AHEAD; i++) startRead(reads, request, context, signal, i)
  let i = 0
  while (i < request.ids.length) {
    const read = deadline(context.stallTimeoutMs, signal)
    try {
      await untilAborted(reads.answers[i] as Promise<Answer>, read.signal)
    } finally {
      read.clear()
    }
    // This answer, and the ones after it that are read already, in one send.
    const small: Uint8Array[] = []
    const parts: Uint8Array[] = []
    let bytes = 0
    while (i < request.ids.length && bytes < COALESCE_BYTES) {
      const found = reads.ready[i]
      if (found === undefined) break
      const frame = encodeResponseFrame(request.ids[i] as Uint8Array, found.status, found.data)
      const size = frame.reduce((sum, part) => sum + part.byteLength, 0)
      if (size <= SMALL_ANSWER_BYTES) {
        small.push(...frame)
      } else {
        if (small.length > 0) parts.push(Buffer.concat(small.splice(0)))
        parts.push(...frame)
      }
      bytes += size
      // Drop the block once framed: only READ_AHEAD of them are held at a time.
      reads.answers[i] = DONE
      reads.ready[i] = undefined
      startRead(reads, request, context, signal, i + READ_AHEAD)
      i++
    }
    if (small.length > 0) parts.push(small.length === 1 ? small[0] as Uint8Array : Buffer.concat(small))
    await sendParts(stream, parts, { signal, idleMs: context.stallTimeoutMs })
    context.traffic?.sent(peer, bytes)
  }
  return request.ids.length
}

interface Reads {
  answers: Array<Promise<Answer> | undefined>
  /** The answers that have been read, by index, until they are sent. */
  ready: Array<Answer | undefined>
}

function startRead (reads: Reads, request: Request, context: ServerContext, signal: AbortSignal, i: number): void {
  const id = request.ids[i]
  if (id === undefined || reads.answers[i] !== undefined) return
  reads.answers[i] = lookUp(id, request.kind, context, signal).then(found => {
    if (reads.answers[i] !== DONE) reads.ready[i] = found
    return found
  })
}

/** The answer for one id; never rejects. */
async function lookUp (id: Uint8Array, kind: Request.Kind, context: ServerContext, signal: AbortSignal): Promise<Answer> {
  const { store } = context
  try {
    if (kind === Request.Kind.HAS && store.has !== undefined) {
      return { status: await store.has(id, { signal }) ? Response.Status.OK : Response.Status.NOT_FOUND }
    }
    const data = await store.get(id, { signal })
    return kind === Request.Kind.HAS ? { status: Response.Status.OK } : { status: Response.Status.OK, data }
  } catch (err) {
    if (isBazilError(err, ErrorCode.NOT_FOUND)) return { status: Response.Status.NOT_FOUND }
    if (!signal.aborted) context.log.error('reading block %s for a peer: %s', Buffer.from(id).toString('hex'), (err as Error).message)
    return { status: Response.Status.ERROR }
  }
}
