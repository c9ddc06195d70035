/**
 * Worker thread body: hashes and seals chunks, and opens and verifies them, off the main thread
 * (which serves FUSE). Messages, each answered with the same `seq`:
 *   { seq, plain }                  → { seq, id, sealed }   (plain transferred in, results out)
 *   { seq, id, sealed }             → { seq, plain }        (transferred both ways)
 *   { seq, id, cls, index, length } → { seq, length }       (sealed bytes in a shared slot, see
 *                                                            slots.ts; the plaintext replaces them)
 *   { seq, id, sealed, cls, index } → { seq, length }       (sealed transferred in, the plaintext
 *                                                            written into the slot)
 * A failure answers { seq, error, code } with the BazilError's code.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { chunkId, open, seal } from './seal.ts'
import type { ContentKeys } from './keys.ts'
import { slotBytes } from './slots.ts'
import type { SlotMemory } from './slots.ts'
import { isBazilError } from '../errors.ts'

type Message =
  | { seq: number, plain: Uint8Array }
  | { seq: number, id: Uint8Array, sealed: Uint8Array }
  | { seq: number, id: Uint8Array, cls: number, index: number, length: number, sealed?: Uint8Array }

const { keys, slots } = workerData as { keys: ContentKeys, slots: SlotMemory }
const port = parentPort
if (port === null) throw new Error('seal-worker must run in a worker thread')

port.on('message', (msg: Message) => {
  try {
    if ('cls' in msg) {
      const slot = slotBytes(slots, msg.cls, msg.index)
      const plain = open(keys, msg.id, msg.sealed ?? slot.subarray(0, msg.length))
      slot.set(plain)
      port.postMessage({ seq: msg.seq, length: plain.byteLength })
      return
    }
    if ('sealed' in msg) {
      const plain = open(keys, msg.id, msg.sealed)
      port.postMessage({ seq: msg.seq, plain }, [plain.buffer as ArrayBuffer])
      return
    }
    const id = chunkId(keys, msg.plain)
    const sealed = seal(keys, id, msg.plain)
    port.postMessage({ seq: msg.seq, id, sealed }, [id.buffer as ArrayBuffer, sealed.buffer as ArrayBuffer])
  } catch (err) {
    port.postMessage({ seq: msg.seq, error: (err as Error).message, code: isBazilError(err) ? err.code : undefined })
  }
})
