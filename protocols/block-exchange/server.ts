/**
 * The serving side of /bazil/block/1.0.0: reads one Request from an inbound stream (paired
 * peers only; bounded in size and time), answers each id from the local store in the order
 * asked — reading a few blocks ahead of the one being sent, and sending only as fast as the
 * client's window allows — then closes. Any violation, stall or deadline resets the stream;
 * nothing else on the node is affected.
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
  streamDeadlineMs: number
  stallTimeoutMs: number
  /** Fires when the service stops. */
  stopped: AbortSignal
}

interface Answer { status: Response.Status, data?: Uint8Array }

export async function serveStream (stream: Stream, connection: Connection, context: ServerContext): Promise<void> {
  const peer = connection.remotePeer.toString()
  const { log, traffic } = context
  const whole = deadline(context.streamDeadlineMs, context.stopped)
  const reader = new FrameReader(stream, { maxFrameBytes: MAX_REQUEST_BYTES, onBytes: bytes => traffic?.received(peer, bytes) })
  let answered = 0
  try {
    const first = deadline(context.requestTimeoutMs, whole.signal)
    let frame: Uint8Array | null
    try {
      frame = await reader.next({ signal: first.signal })
    } finally {
      first.clear()
    }
    if (frame === null) throw new BazilError(ErrorCode.PROTOCOL, 'stream ended before a request')
    const request = decodeRequest(frame)
    watchForExtraBytes(stream, reader)
    log('%s asks %d blocks (%s)', peer, request.ids.length, request.kind)
    const answers = readAhead(request, context, whole.signal)
    for (const [i, id] of request.ids.entries()) {
      // One step: read the block (ahead) and hand it to a client that keeps reading.
      const step = deadline(context.stallTimeoutMs, whole.signal)
      let parts: Uint8Array[]
      try {
        const answer = await untilAborted(answers[i] as Promise<Answer>, step.signal)
        parts = encodeResponseFrame(id, answer.status, answer.data)
        await sendParts(stream, parts, { signal: step.signal })
      } finally {
        step.clear()
      }
      traffic?.sent(peer, parts.reduce((sum, part) => sum + part.byteLength, 0))
      answered++
      startNext(answers, request, context, whole.signal, i + READ_AHEAD)
    }
    await stream.close({ signal: whole.signal })
    log('answered %d blocks to %s', answered, peer)
  } catch (err) {
    const reason = whole.timedOut() ? `deadline of ${context.streamDeadlineMs} ms passed` : (err as Error).message
    if (isBazilError(err, ErrorCode.PROTOCOL)) log.error('resetting block stream from %s: %s', peer, reason)
    else log('block stream from %s ended after %d answers: %s', peer, answered, reason)
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    whole.clear()
    reader.release()
  }
}

/** After the request the client has nothing more to say: any further byte is a violation. */
function watchForExtraBytes (stream: Stream, reader: FrameReader): void {
  const extra = reader.buffered
  reader.release()
  const violate = (): void => {
    stream.abort(new BazilError(ErrorCode.PROTOCOL, 'data after the request'))
  }
  if (extra > 0) { violate(); return }
  stream.addEventListener('message', violate, { once: true })
}

/** Answers as promises that never reject, the first READ_AHEAD of them started. */
function readAhead (request: Request, context: ServerContext, signal: AbortSignal): Array<Promise<Answer> | undefined> {
  const answers: Array<Promise<Answer> | undefined> = new Array(request.ids.length)
  for (let i = 0; i < Math.min(READ_AHEAD, request.ids.length); i++) startNext(answers, request, context, signal, i)
  return answers
}

function startNext (answers: Array<Promise<Answer> | undefined>, request: Request, context: ServerContext, signal: AbortSignal, i: number): void {
  const id = request.ids[i]
  if (id === undefined || answers[i] !== undefined) return
  answers[i] = answer(id, request.kind, context, signal)
}

async function answer (id: Uint8Array, kind: Request.Kind, context: ServerContext, signal: AbortSignal): Promise<Answer> {
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
