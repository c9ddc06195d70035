/**
 * Framing for pairing, shared by the inviter's service and the joiner's client: length-prefixed
 * protobuf frames of at most MAX_MESSAGE_BYTES, read under a deadline, with every failure turned
 * into a BazilError: a malformed, oversized or cut-short frame is PROTOCOL, the caller's abort
 * ABORTED, the deadline TIMEOUT, a reset stream or lost connection UNAVAILABLE. Also the
 * cleaning of names a peer sends.
 */
import { lpStream } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import type { Deadline } from '../../src/net/deadline.ts'
import { netError } from '../../src/net/errors.ts'
import { MAX_BUFFERED_BYTES, MAX_MESSAGE_BYTES, MAX_NAME_BYTES } from './constants.ts'

/** An exchange's deadline (src/net/deadline.ts) and the caller's signal it follows. */
export interface ExchangeLimits {
  deadline: Deadline
  caller?: AbortSignal
}

interface Decoder<T> { decode: (data: Uint8Array) => T }
interface Encoder<T> { encode: (message: T) => Uint8Array }

export interface Frames {
  read: <T>(codec: Decoder<T>, what: string) => Promise<T>
  write: <T>(message: T, codec: Encoder<T>) => Promise<void>
}

/**
 * What lpStream throws for a frame that breaks the rules: too long, a bad length, more unread
 * bytes than allowed, or the peer closing its side before the exchange is over.
 */
const FRAMING_ERRORS = new Set([
  'InvalidDataLengthError', 'InvalidMessageLengthError', 'InvalidDataLengthLengthError', 'StreamBufferError', 'UnexpectedEOFError'
])

export function frames (stream: Stream, limits: ExchangeLimits): Frames {
  const { signal } = limits.deadline
  const lp = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES, maxBufferSize: MAX_BUFFERED_BYTES })
  return {
    read: async (codec, what) => {
      let bytes: Uint8Array
      try {
        bytes = (await lp.read({ signal })).subarray()
      } catch (err) {
        throw streamError(err, `reading the ${what}`, limits)
      }
      try {
        return codec.decode(bytes)
      } catch (err) {
        throw new BazilError(ErrorCode.PROTOCOL, `the peer sent a malformed ${what}`, { cause: err })
      }
    },
    write: async (message, codec) => {
      try {
        await lp.write(codec.encode(message), { signal })
      } catch (err) {
        throw streamError(err, 'writing', limits)
      }
    }
  }
}

/**
 * Closes our side of `stream`, then waits for the peer to close its side, but only until
 * `signal` fires: a half-closed stream still counts against MAX_INBOUND_STREAMS, so a peer
 * that lingers is reset rather than left to hold a slot.
 */
export async function finish (stream: Stream, signal: AbortSignal): Promise<void> {
  try {
    await stream.close({ signal })
    if (stream.status !== 'open' || stream.remoteWriteStatus === 'closed') return
    await new Promise<void>((resolve, reject) => {
      const done = (): void => { cleanup(); resolve() }
      const expire = (): void => { cleanup(); reject(signal.reason) }
      const cleanup = (): void => {
        stream.removeEventListener('remoteCloseWrite', done)
        stream.removeEventListener('close', done)
        signal.removeEventListener('abort', expire)
      }
      stream.addEventListener('remoteCloseWrite', done)
      stream.addEventListener('close', done)
      signal.addEventListener('abort', expire)
      if (signal.aborted) expire()
    })
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}

/** Maps whatever a libp2p dial or stream threw to a BazilError (framing errors are PROTOCOL). */
export function streamError (err: unknown, what: string, limits: ExchangeLimits): BazilError {
  const name = (err as Error | undefined)?.name ?? ''
  if (FRAMING_ERRORS.has(name) && !limits.deadline.signal.aborted) {
    return new BazilError(ErrorCode.PROTOCOL, `the peer sent a bad frame while ${what}`, { cause: err })
  }
  return netError(err, `pairing: ${what}`, { signal: limits.caller, timedOut: limits.deadline.timedOut() })
}

/** Throws PROTOCOL unless `bytes` has exactly `length` bytes. */
export function expectLength (bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length !== length) {
    throw new BazilError(ErrorCode.PROTOCOL, `the peer sent a ${bytes.length}-byte ${what}, not ${length} bytes`)
  }
}

/** A peer-supplied name made safe to store and print: no control characters, ≤ MAX_NAME_BYTES. */
export function cleanName (name: string): string {
  // eslint-disable-next-line no-control-regex
  const clean = name.replace(/[\u0000-\u001f\u007f-\u009f]/g, '').trim()
  let out = ''
  let bytes = 0
  for (const char of clean) {
    bytes += Buffer.byteLength(char)
    if (bytes > MAX_NAME_BYTES) break
    out += char
  }
  return out.trim()
}

/** The name to remember a peer by: what it sent, else the tail of its peer id. */
export function peerName (sent: string, peerId: string): string {
  const name = cleanName(sent)
  return name === '' ? `peer-${peerId.slice(-8)}` : name
}
