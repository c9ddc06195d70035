/**
 * Cuts a byte stream into length-prefixed frames (unsigned varint length, then the body) as
 * chunks arrive, with no stream attached: FrameReader (frames.ts) feeds it. A large frame is
 * copied into its own buffer chunk by chunk as the chunks arrive — while they are still in
 * the CPU cache, and so they can be freed at once — instead of queueing the chunks and
 * copying them at the end; a frame within one chunk is a view of that chunk, no copy.
 *
 * Bounds: a length over `maxFrameBytes`, or a length varint over 5 bytes, is a PROTOCOL error
 * as soon as its prefix is seen. The buffer of a large frame is allocated when its prefix
 * arrives, so one unfinished frame can hold up to `maxFrameBytes`.
 */
import { BazilError, ErrorCode } from '../errors.ts'

/** The largest varint length accepted: 5 bytes encode up to 2^35 - 1. */
const MAX_VARINT_BYTES = 5
/** Frames at least this large are assembled as they arrive; smaller ones wait for all their bytes. */
const ASSEMBLE_FROM_BYTES = 64 * 1024

export class FrameAssembler {
  readonly #maxFrameBytes: number
  /** Bytes not yet part of a frame being assembled: a prefix, or a small frame so far. */
  readonly #pending: Uint8Array[] = []
  #pendingBytes = 0
  #assembling: { frame: Uint8Array, filled: number } | undefined
  readonly #ready: Uint8Array[] = []
  #readyBytes = 0
  #error: BazilError | undefined

  constructor (maxFrameBytes: number) {
    this.#maxFrameBytes = maxFrameBytes
  }

  /** Bytes of complete frames not yet shifted. */
  get readyBytes (): number { return this.#readyBytes }

  /** Bytes of a frame (or length) begun and not finished. */
  get partialBytes (): number { return this.#pendingBytes + (this.#assembling?.filled ?? 0) }

  /** Adds received bytes; throws (now and on every later push) on a bad length. */
  push (chunk: Uint8Array): void {
    if (this.#error !== undefined) throw this.#error
    while (chunk.byteLength > 0) {
      const assembling = this.#assembling
      if (assembling === undefined) {
        this.#pending.push(chunk)
        this.#pendingBytes += chunk.byteLength
        this.#cutPending()
        return
      }
      const take = Math.min(assembling.frame.byteLength - assembling.filled, chunk.byteLength)
      assembling.frame.set(chunk.subarray(0, take), assembling.filled)
      assembling.filled += take
      chunk = chunk.subarray(take)
      if (assembling.filled === assembling.frame.byteLength) {
        this.#assembling = undefined
        this.#emit(assembling.frame)
      }
    }
  }

  /** The next complete frame, if any. */
  shift (): Uint8Array | undefined {
    const frame = this.#ready.shift()
    if (frame !== undefined) this.#readyBytes -= frame.byteLength
    return frame
  }

  #emit (frame: Uint8Array): void {
    this.#ready.push(frame)
    this.#readyBytes += frame.byteLength
  }

  /** Emits every complete frame in #pending; starts assembling a large incomplete one. */
  #cutPending (): void {
    while (true) {
      const head = this.#length()
      if (head === undefined) return
      if (this.#pendingBytes >= head.prefix + head.body) {
        this.#skip(head.prefix)
        this.#emit(this.#take(head.body))
        continue
      }
      if (head.body < ASSEMBLE_FROM_BYTES) return
      this.#skip(head.prefix)
      const frame = Buffer.allocUnsafeSlow(head.body) // every byte is written before it is emitted
      let filled = 0
      for (const chunk of this.#pending) {
        frame.set(chunk, filled)
        filled += chunk.byteLength
      }
      this.#pending.length = 0
      this.#pendingBytes = 0
      this.#assembling = { frame, filled }
      return
    }
  }

  /** The next frame's prefix and body lengths, once its whole prefix is pending. */
  #length (): { prefix: number, body: number } | undefined {
    let value = 0
    let prefix = 0
    for (const chunk of this.#pending) {
      for (let i = 0; i < chunk.byteLength; i++) {
        const byte = chunk[i] as number
        value += (byte & 0x7f) * 2 ** (7 * prefix)
        prefix++
        if ((byte & 0x80) === 0) {
          if (value > this.#maxFrameBytes) this.#fail(`frame of ${value} bytes exceeds the limit of ${this.#maxFrameBytes}`)
          return { prefix, body: value }
        }
        if (prefix >= MAX_VARINT_BYTES) this.#fail('frame length varint is too long')
      }
    }
    return undefined
  }

  #fail (message: string): never {
    this.#error = new BazilError(ErrorCode.PROTOCOL, message)
    throw this.#error
  }

  /** Removes `bytes` from the front of #pending and returns them (a view when they lie in one chunk). */
  #take (bytes: number): Uint8Array {
    const first = this.#pending[0]
    if (bytes === 0) return new Uint8Array(0)
    if (first !== undefined && first.byteLength >= bytes) {
      const frame = first.subarray(0, bytes)
      this.#skip(bytes)
      return frame
    }
    const frame = Buffer.allocUnsafeSlow(bytes)
    let filled = 0
    while (filled < bytes) {
      const chunk = this.#pending[0] as Uint8Array
      const part = Math.min(chunk.byteLength, bytes - filled)
      frame.set(chunk.subarray(0, part), filled)
      filled += part
      this.#skip(part)
    }
    return frame
  }

  #skip (bytes: number): void {
    this.#pendingBytes -= bytes
    while (bytes > 0) {
      const chunk = this.#pending[0] as Uint8Array
      if (chunk.byteLength <= bytes) {
        this.#pending.shift()
        bytes -= chunk.byteLength
      } else {
        this.#pending[0] = chunk.subarray(bytes)
        bytes = 0
      }
    }
  }
}
