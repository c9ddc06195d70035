/**
 * Length-prefixed frames over a libp2p 3 stream, with back-pressure both ways. A frame is an
 * unsigned varint byte length followed by that many bytes (the framing of @libp2p/utils'
 * lpStream), but unlike lpStream:
 *
 * - reading is pulled: libp2p 3 streams push 'message' events as data arrives and never slow
 *   the sender by themselves, so the reader pauses the stream (yamux then withholds window
 *   updates and the sender stops) once nobody waits and it holds a complete frame plus
 *   `highWaterBytes`, and resumes when the caller wants more;
 * - every frame is bounded (`maxFrameBytes`) and an oversized length fails at once, before
 *   its bytes arrive; a stream ending inside a frame fails too;
 * - writing waits on the 'drain' event, not `stream.onDrain()`, which in @libp2p/utils 7
 *   resolves once and then never waits again.
 *
 * While paused, bytes already in flight (at most one yamux window) queue inside the stream;
 * the node gives streams a read buffer larger than the window (src/net/node.ts), or libp2p
 * would reset them.
 */
import type { Stream } from '@libp2p/interface'
import { BazilError, ErrorCode, throwIfAborted } from '../errors.ts'

/** The largest varint length accepted: 5 bytes encode up to 2^35 - 1. */
const MAX_VARINT_BYTES = 5

export interface FrameReaderOptions {
  /** Largest frame accepted, prefix excluded. */
  maxFrameBytes: number
  /** Bytes held beyond the next complete frame before the stream is paused. Default 2 MiB. */
  highWaterBytes?: number
  /** Called with the byte count of every chunk received (prefixes included). */
  onBytes?: (bytes: number) => void
  /**
   * Pause at once, until the first next(): for a stream opened ahead of use, which then
   * receives only what the sender had in flight (one initial yamux window, 256 KiB).
   */
  startPaused?: boolean
}

type Chunk = Uint8Array | { byteLength: number, [Symbol.iterator]: () => Iterator<Uint8Array> }

export class FrameReader {
  readonly #stream: Stream
  readonly #maxFrameBytes: number
  readonly #highWaterBytes: number
  readonly #onBytes: ((bytes: number) => void) | undefined
  readonly #chunks: Uint8Array[] = []
  #buffered = 0
  #error: Error | undefined
  #wake: (() => void) | undefined
  #paused = false
  readonly #onMessage = (evt: { data: Chunk }): void => {
    const data = evt.data
    if (data instanceof Uint8Array) this.#push(data)
    else for (const part of data) this.#push(part)
    this.#onBytes?.(data.byteLength)
    if (this.#shouldPause()) this.#pause()
    this.#notify()
  }

  readonly #onClose = (evt: Event): void => {
    const error = (evt as Event & { error?: Error }).error
    if (error !== undefined) this.#error = error
    this.#notify()
  }

  readonly #onEnd = (): void => { this.#notify() }

  constructor (stream: Stream, options: FrameReaderOptions) {
    this.#stream = stream
    this.#maxFrameBytes = options.maxFrameBytes
    this.#highWaterBytes = options.highWaterBytes ?? 2 * 1024 * 1024
    this.#onBytes = options.onBytes
    stream.addEventListener('message', this.#onMessage)
    stream.addEventListener('close', this.#onClose)
    stream.addEventListener('end', this.#onEnd)
    stream.addEventListener('remoteCloseWrite', this.#onEnd)
    if (options.startPaused === true) this.#pause()
  }

  /**
   * The next frame, or null when the stream ended cleanly between frames. Rejects with
   * PROTOCOL for an oversized or malformed length, UNAVAILABLE when the stream ends inside a
   * frame or is reset, ABORTED when `signal` fires.
   */
  async next (options?: { signal?: AbortSignal }): Promise<Uint8Array | null> {
    const signal = options?.signal
    while (true) {
      throwIfAborted(signal)
      const length = this.#frameLength()
      if (length !== undefined) {
        const frame = this.#take(length.prefix, length.body)
        if (this.#paused && !this.#shouldPause()) this.#resume()
        return frame
      }
      if (this.#error !== undefined) {
        throw new BazilError(ErrorCode.UNAVAILABLE, `stream closed: ${this.#error.message}`, { cause: this.#error })
      }
      if (this.#paused) {
        this.#resume() // delivers what the stream held synchronously; look again
        continue
      }
      if (this.#ended()) {
        if (this.#buffered === 0) return null
        throw new BazilError(ErrorCode.UNAVAILABLE, `stream ended inside a frame (${this.#buffered} bytes of it arrived)`)
      }
      await this.#waitForData(signal)
    }
  }

  /** Bytes received and not yet returned as frames. */
  get buffered (): number {
    return this.#buffered
  }

  /** Stops listening; unread bytes are dropped. */
  release (): void {
    this.#stream.removeEventListener('message', this.#onMessage)
    this.#stream.removeEventListener('close', this.#onClose)
    this.#stream.removeEventListener('end', this.#onEnd)
    this.#stream.removeEventListener('remoteCloseWrite', this.#onEnd)
    this.#chunks.length = 0
    this.#buffered = 0
  }

  #ended (): boolean {
    const stream = this.#stream
    if (stream.readBufferLength > 0) return false
    return stream.readableEnded || stream.remoteWriteStatus === 'closed' || stream.status !== 'open'
  }

  /**
   * Pause when nobody is waiting for a frame and more than the high-water mark is buffered
   * beyond the next complete one (a bad length pauses too: next() will throw it).
   */
  #shouldPause (): boolean {
    if (this.#wake !== undefined || this.#buffered <= this.#highWaterBytes) return false
    try {
      const next = this.#frameLength()
      return next !== undefined && this.#buffered - next.prefix - next.body > this.#highWaterBytes
    } catch {
      return true
    }
  }

  #push (chunk: Uint8Array): void {
    if (chunk.byteLength === 0) return
    this.#chunks.push(chunk)
    this.#buffered += chunk.byteLength
  }

  /** The next frame's prefix and body length once all of it is buffered; throws on a bad length. */
  #frameLength (): { prefix: number, body: number } | undefined {
    let value = 0
    let prefix = 0
    for (const chunk of this.#chunks) {
      for (const byte of chunk) {
        value += (byte & 0x7f) * 2 ** (7 * prefix)
        prefix++
        if ((byte & 0x80) === 0) {
          if (value > this.#maxFrameBytes) {
            throw new BazilError(ErrorCode.PROTOCOL, `frame of ${value} bytes exceeds the limit of ${this.#maxFrameBytes}`)
          }
          return this.#buffered >= prefix + value ? { prefix, body: value } : undefined
        }
        if (prefix >= MAX_VARINT_BYTES) throw new BazilError(ErrorCode.PROTOCOL, 'frame length varint is too long')
      }
    }
    return undefined
  }

  /** Removes `prefix + body` bytes from the queue and returns the body. */
  #take (prefix: number, body: number): Uint8Array {
    this.#skip(prefix)
    const first = this.#chunks[0]
    let frame: Uint8Array
    if (body === 0) {
      frame = new Uint8Array(0)
    } else if (first !== undefined && first.byteLength >= body) {
      frame = first.subarray(0, body)
      this.#skip(body)
    } else {
      frame = Buffer.allocUnsafe(body) // every byte is written below
      let filled = 0
      while (filled < body) {
        const chunk = this.#chunks[0] as Uint8Array
        const part = Math.min(chunk.byteLength, body - filled)
        frame.set(chunk.subarray(0, part), filled)
        filled += part
        this.#skip(part)
      }
    }
    return frame
  }

  #skip (bytes: number): void {
    this.#buffered -= bytes
    while (bytes > 0) {
      const chunk = this.#chunks[0] as Uint8Array
      if (chunk.byteLength <= bytes) {
        this.#chunks.shift()
        bytes -= chunk.byteLength
      } else {
        this.#chunks[0] = chunk.subarray(bytes)
        bytes = 0
      }
    }
  }

  #pause (): void {
    if (this.#paused || this.#stream.readStatus !== 'readable') return
    this.#paused = true
    this.#stream.pause()
  }

  #resume (): void {
    this.#paused = false
    if (this.#stream.readStatus === 'paused') this.#stream.resume()
  }

  #notify (): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }

  async #waitForData (signal: AbortSignal | undefined): Promise<void> {
    let onAbort = (): void => {}
    try {
      await new Promise<void>((resolve, reject) => {
        this.#wake = resolve
        if (signal !== undefined) {
          onAbort = () => { reject(new BazilError(ErrorCode.ABORTED, 'read aborted', { cause: signal.reason })) }
          signal.addEventListener('abort', onAbort, { once: true })
        }
      })
    } finally {
      this.#wake = undefined
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

/** The unsigned varint encoding of `value` (a non-negative safe integer). */
export function encodeVarint (value: number): Uint8Array {
  const bytes: number[] = []
  do {
    let byte = value % 128
    value = Math.floor(value / 128)
    if (value > 0) byte |= 0x80
    bytes.push(byte)
  } while (value > 0)
  return Uint8Array.from(bytes)
}

/**
 * Sends `parts` (already framed) and waits until the stream can take more: back-pressure
 * from the remote's window. Rejects with UNAVAILABLE if the stream closes first, ABORTED if
 * `signal` fires.
 */
export async function sendParts (stream: Stream, parts: Uint8Array[], options?: { signal?: AbortSignal }): Promise<void> {
  throwIfAborted(options?.signal)
  if (stream.writeStatus !== 'writable') {
    throw new BazilError(ErrorCode.UNAVAILABLE, `stream is ${stream.status} and cannot be written`)
  }
  let more = true
  try {
    for (const part of parts) if (part.byteLength > 0) more = stream.send(part)
  } catch (err) {
    throw new BazilError(ErrorCode.UNAVAILABLE, `send failed: ${(err as Error).message}`, { cause: err })
  }
  if (!more && stream.writableNeedsDrain) await waitForDrain(stream, options?.signal)
}

async function waitForDrain (stream: Stream, signal: AbortSignal | undefined): Promise<void> {
  let cleanup = (): void => {}
  try {
    await new Promise<void>((resolve, reject) => {
      const onDrain = (): void => { resolve() }
      const onClose = (evt: Event): void => {
        const error = (evt as Event & { error?: Error }).error
        reject(new BazilError(ErrorCode.UNAVAILABLE, `stream closed while sending${error !== undefined ? `: ${error.message}` : ''}`, { cause: error }))
      }
      const onAbort = (): void => { reject(new BazilError(ErrorCode.ABORTED, 'send aborted', { cause: signal?.reason })) }
      stream.addEventListener('drain', onDrain)
      stream.addEventListener('close', onClose)
      signal?.addEventListener('abort', onAbort)
      cleanup = () => {
        stream.removeEventListener('drain', onDrain)
        stream.removeEventListener('close', onClose)
        signal?.removeEventListener('abort', onAbort)
      }
      if (signal?.aborted === true) onAbort()
    })
  } finally {
    cleanup()
  }
}
