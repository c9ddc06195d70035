/**
 * Worker thread body: hashes and seals chunks, and opens and verifies them, off the main thread
 * (which serves FUSE). Receives { seq, plain } (plain transferred in) and answers
 * { seq, id, sealed }; or receives { seq, id, sealed } and answers { seq, plain }. Results are
 * transferred out; a failure answers { seq, error, code } with the BazilError's code.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { chunkId, open, seal } from './seal.ts'
import type { ContentKeys } from './keys.ts'
import { isBazilError } from '../errors.ts'

const keys = workerData as ContentKeys
const port = parentPort
if (port === null) throw new Error('seal-worker must run in a worker thread')

port.on('message', (msg: { seq: number, plain: Uint8Array } | { seq: number, id: Uint8Array, sealed: Uint8Array }) => {
  try {
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
