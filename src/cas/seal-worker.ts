/**
 * Worker thread body: hashes and seals chunks off the main thread (which serves FUSE).
 * Receives { seq, plain } (plain transferred in), answers { seq, id, sealed } (transferred out).
 */
import { parentPort, workerData } from 'node:worker_threads'
import { chunkId, seal } from './seal.ts'
import type { ContentKeys } from './keys.ts'

const keys = workerData as ContentKeys
const port = parentPort
if (port === null) throw new Error('seal-worker must run in a worker thread')

port.on('message', (msg: { seq: number, plain: Uint8Array }) => {
  try {
    const id = chunkId(keys, msg.plain)
    const sealed = seal(keys, id, msg.plain)
    port.postMessage({ seq: msg.seq, id, sealed }, [id.buffer as ArrayBuffer, sealed.buffer as ArrayBuffer])
  } catch (err) {
    port.postMessage({ seq: msg.seq, error: (err as Error).message })
  }
})
