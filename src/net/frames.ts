/**
 * Length-prefixed frames over a libp2p 3 stream, with back-pressure both ways. A frame is an
 * unsigned varint byte length followed by that many bytes (the framing of @libp2p/utils'
 * lpStream; frame-assembler.ts cuts them), but unlike lpStream:
 *
 * - reading is pulled: libp2p 3 streams push 'message' events as data arrives and never slow
 *   the sender by themselves, so the reader pauses the stream (yamux then withholds window
 *   updates and the sender stops) once nobody waits and more than `highWaterBytes` of
 *   complete frames are held, and resumes when the caller wants more;
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
import { FrameAssembler } from './frame-assembler.ts'

export interface FrameReaderOptions {
  /** Largest frame accepted, prefix excluded. */
  maxFrameBytes: number
  /** Bytes of complete frames held, with nobody waiting, before the stream is paused. Default 2 MiB. */
  highWaterBytes?: number
  /** Called with the byte count of every chunk received (prefixes included). */
  onBytes?: (bytes: number) => void
}

type Chunk = Uint8Array | { byteLength: number, [Symbol.iterator]: () => Iterator<Uint8Array> }

export class FrameReader {
  readonly #stream: Stream
  readonly #frames: FrameAssembler
  readonly #highWaterBytes: number
  readonly #onBytes: ((bytes: number) => void) | undefined
  /** A bad length: thrown once the frames before it are read. */
  #violation: Error | undefined
  /** The stream closed with an error (a reset, an abort, a dead connection). */
  #error: Error | undefined
  #wake: (() => void) | undefined
  #paused = false
  readonly #onMessage = (evt: { data: Chunk }): void => {
    if (this.#violation === undefined) {
      try {
        if (evt.data instanceof Uint8Array) this.#frames.push(evt.data)
        else for (const part of evt.data) this.#frames.push(part)
      } catch (err) {
        this.#violation = err as Error
      }
    }
    this.#onBytes?.(evt.data.byteLength)
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
    this.#frames = new FrameAssembler(options.maxFrameBytes)
    this.#highWaterBytes = options.highWaterBytes ?? 2 * 1024 * 1024
    this.#onBytes = options.onBytes
    stream.addEventListener('message', this.#onMessage)
    stream.addEventListener('close', this.#onClose)
    stream.addEventListener('end', this.#onEnd)
    stream.addEventListener('remoteCloseWrite', this.#onEnd)
  }

  /**
   * The next frame, or null when the stream ended cleanly between frames. Rejects with
   * PROTOCOL for an oversized or malformed length, UNAVAILABLE when the stream ends inside a
   * frame or is reset, TIMEOUT when no byte arrives for `idleMs` (a slow frame is fine as long
   * as it keeps coming), ABORTED when `signal` fires.
   */
  async next (options?: { signal?: AbortSignal, idleMs?: number }): Promise<Uint8Array | null> {
    const signal = options?.signal
    while (true) {
      throwIfAborted(signal)
      const frame = this.#frames.shift()
      if (frame !== undefined) {
        if (this.#paused && !this.#shouldPause()) this.#resume()
        return frame
      }
      if (this.#violation !== undefined) throw this.#violation
      if (this.#error !== undefined) {
        throw new BazilError(ErrorCode.UNAVAILABLE, `stream closed: ${this.#error.message}`, { cause: this.#error })
      }
      if (this.#paused) {
        this.#resume() // delivers what the stream held, synchronously; look again
        continue
      }
      if (this.#ended()) {
        if (this.#frames.partialBytes === 0) return null
        throw new BazilError(ErrorCode.UNAVAILABLE, `stream ended inside a frame (${this.#frames.partialBytes} bytes of it arrived)`)
      }
      await this.#waitForData(signal, options?.idleMs)
    }
  }

  /** Bytes received and not yet returned as frames. */
  get buffered (): number {
    return this.#frames.readyBytes + this.#frames.partialBytes
  }

  /** Stops listening; unread bytes are dropped with the reader. */
  release (): void {
    this.#stream.removeEventListener('message', this.#onMessage)
    this.#stream.removeEventListener('close', this.#onClose)
    this.#stream.removeEventListener('end', this.#onEnd)
    this.#stream.removeEventListener('remoteCloseWrite', this.#onEnd)
  }

  #ended (): boolean {
    const stream = this.#stream
    if (stream.readBufferLength > 0) return false
    return stream.readableEnded || stream.remoteWriteStatus === 'closed' || stream.status !== 'open'
  }

  /** Pause when nobody waits for a frame and more than the high-water mark of them is held. */
  #shouldPause (): boolean {
    return this.#wake === undefined && (this.#violation !== undefined || this.#frames.readyBytes > this.#highWaterBytes)
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

  /** Waits for the next event of the stream (every chunk wakes it), the signal, or `idleMs`. */
  async #waitForData (signal: AbortSignal | undefined, idleMs: number | undefined): Promise<void> {
    let onAbort = (): void => {}
    let timer: NodeJS.Timeout | undefined
    try {
      await new Promise<void>((resolve, reject) => {
        this.#wake = resolve
        if (signal !== undefined) {
          onAbort = () => { reject(new BazilError(ErrorCode.ABORTED, 'read aborted', { cause: signal.reason })) }
          signal.addEventListener('abort', onAbort, { once: true })
        }
        if (idleMs !== undefined) {
          timer = setTimeout(() => { reject(new BazilError(ErrorCode.TIMEOUT, `no data for ${idleMs} ms`)) }, idleMs)
        }
      })
    } finally {
      this.#wake = undefined
      clearTimeout(timer)
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

/** How much a writer may leave queued in the stream before it waits. */
const WRITE_HIGH_WATER_BYTES = 1024 * 1024

export interface SendOptions {
  signal?: AbortSignal
  /** Fail with TIMEOUT if the stream takes no bytes (no 'drain') for this long while we wait. */
  idleMs?: number
}

/**
 * Sends `parts` (already framed), then waits while more than 1 MiB of what was sent is still
 * queued in the stream — the remote's window is the back-pressure. Rejects with UNAVAILABLE
 * if the stream closes first, TIMEOUT after `idleMs` without progress, ABORTED on `signal`.
 */
export async function sendParts (stream: Stream, parts: Uint8Array[], options: SendOptions = {}): Promise<void> {
  throwIfAborted(options.signal)
  if (stream.writeStatus !== 'writable') {
    throw new BazilError(ErrorCode.UNAVAILABLE, `stream is ${stream.status} and cannot be written`)
  }
  try {
    for (const part of parts) if (part.byteLength > 0) stream.send(part)
  } catch (err) {
    throw new BazilError(ErrorCode.UNAVAILABLE, `send failed: ${(err as Error).message}`, { cause: err })
  }
  // A 'drain' means the window opened, not that the queue emptied: wait for as many as it takes.
  while (stream.writeBufferLength > WRITE_HIGH_WATER_BYTES) await waitForDrain(stream, options)
}

async function waitForDrain (stream: Stream, options: SendOptions): Promise<void> {
  const { signal, idleMs } = options
  let cleanup = (): void => {}
  try {
    await new Promise<void>((resolve, reject) => {
      const onDrain = (): void => { resolve() }
      const onClose = (evt: Event): void => {
        const error = (evt as Event & { error?: Error }).error
        reject(new BazilError(ErrorCode.UNAVAILABLE, `stream closed while sending${error !== undefined ? `: ${error.message}` : ''}`, { cause: error }))
      }
      const onAbort = (): void => { reject(new BazilError(ErrorCode.ABORTED, 'send aborted', { cause: signal?.reason })) }
      const timer = idleMs === undefined
        ? undefined
        : setTimeout(() => { reject(new BazilError(ErrorCode.TIMEOUT, `the stream took nothing for ${idleMs} ms`)) }, idleMs)
      stream.addEventListener('drain', onDrain)
      stream.addEventListener('close', onClose)
      signal?.addEventListener('abort', onAbort)
      cleanup = () => {
        clearTimeout(timer)
        stream.removeEventListener('drain', onDrain)
        stream.removeEventListener('close', onClose)
        signal?.removeEventListener('abort', onAbort)
      }
      if (signal?.aborted === true) onAbort()
      if (stream.status !== 'open') onClose(new Event('close'))
    })
  } finally {
    cleanup()
  }
}
