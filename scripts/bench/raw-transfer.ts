/**
 * The block-exchange bench's baseline: the same blocks as one plain libp2p stream, with no
 * protocol around them. The client sends a 4-byte count and the ids (32 bytes each) as one
 * length-prefixed frame; the server writes the blocks back to back — read from the same
 * store, a few ahead, with the same drain-based back-pressure — and closes. What block
 * exchange adds on top (framing, per-block answers, batches, checks) is the difference.
 */
import type { Stream } from '@libp2p/interface'
import type { KV } from '../../src/kv/kv.ts'
import { encodeVarint, FrameReader, sendParts } from '../../src/net/frames.ts'

export const RAW_PROTOCOL = '/bazil-bench/raw/1.0.0'
const ID_BYTES = 32
const READ_AHEAD = 4

export async function serveRaw (stream: Stream, store: KV): Promise<void> {
  const reader = new FrameReader(stream, { maxFrameBytes: 4 + 1024 * 1024 * ID_BYTES })
  try {
    const frame = await reader.next()
    if (frame === null) throw new Error('no request')
    const count = Buffer.from(frame).readUInt32BE(0)
    const ids = Array.from({ length: count }, (_, i) => frame.subarray(4 + i * ID_BYTES, 4 + (i + 1) * ID_BYTES))
    const reads = new Map<number, Promise<Uint8Array>>() // at most READ_AHEAD blocks held
    const start = (i: number): void => {
      const id = ids[i]
      if (id === undefined || reads.has(i)) return
      const read = store.get(id)
      read.catch(() => {}) // awaited in turn; one abandoned by an abort must not be unhandled
      reads.set(i, read)
    }
    for (let i = 0; i < READ_AHEAD; i++) start(i)
    for (let i = 0; i < ids.length; i++) {
      const block = await (reads.get(i) as Promise<Uint8Array>)
      reads.delete(i)
      await sendParts(stream, [block])
      start(i + READ_AHEAD)
    }
    await stream.close()
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  } finally {
    reader.release()
  }
}

/** Asks for `ids` on an open raw stream and counts the bytes that come back. */
export async function fetchRaw (stream: Stream, ids: Uint8Array[]): Promise<number> {
  const request = Buffer.alloc(4 + ids.length * ID_BYTES)
  request.writeUInt32BE(ids.length, 0)
  ids.forEach((id, i) => { request.set(id, 4 + i * ID_BYTES) })
  await sendParts(stream, [encodeVarint(request.byteLength), request])
  await stream.close()
  let bytes = 0
  for await (const chunk of stream) bytes += chunk.byteLength
  return bytes
}
