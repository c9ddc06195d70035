/**
 * A Volume without FUSE, over a real level database and a chosen KV, for unit tests of the
 * pure core. Closes itself after the test.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { onTestFinished } from 'vitest'
import { Cas } from '../../src/cas/cas.ts'
import { deriveContentKeys } from '../../src/cas/keys.ts'
import { MetaStore } from '../../src/fs/meta.ts'
import { Volume } from '../../src/fs/volume.ts'
import { MemoryStore } from '../../src/kv/memory.ts'
import type { KV } from '../../src/kv/kv.ts'
import { tmpDir } from './tmp.ts'

export interface TestVolume {
  volume: Volume
  cas: Cas
  kv: KV
  dir: string
  secret: Uint8Array
  /** Closes and reopens the volume over the same database and store. */
  reopen: () => Promise<TestVolume>
}

export async function openTestVolume (options: { kv?: KV, dir?: string, secret?: Uint8Array } = {}): Promise<TestVolume> {
  const dir = options.dir ?? await tmpDir('bazil-vol-')
  const kv = options.kv ?? new MemoryStore()
  const secret = options.secret ?? randomBytes(32)
  await mkdir(join(dir, 'staging'), { recursive: true })
  const cas = new Cas(kv, deriveContentKeys(secret))
  const owner = { uid: 0, gid: 0 }
  const meta = await MetaStore.open(join(dir, 'db'), owner)
  const volume = new Volume({ meta, cas, stagingDir: join(dir, 'staging'), storeDir: dir, owner })
  await volume.recover()
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    await volume.close()
    await meta.close()
  }
  onTestFinished(close)
  return {
    volume,
    cas,
    kv,
    dir,
    secret,
    reopen: async () => {
      await close()
      return await openTestVolume({ kv, dir, secret })
    }
  }
}
