import { appendFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { MetaLog } from '../../src/fs/meta-log.ts'
import { MetaStore, ROOT_INO, S_IFREG } from '../../src/fs/meta.ts'
import type { Entry } from '../../src/fs/meta.ts'
import { tmpDir } from '../helpers/tmp.ts'

const owner = { uid: 1000, gid: 1000 }

function fileEntry (ino: number, mode = 0o644): Entry {
  return { ino, id: `id${ino}`, mode: S_IFREG | mode, uid: 1, gid: 1, size: 0, nlink: 1, atimeMs: 1, mtimeMs: 1, ctimeMs: 1, birthMs: 1, content: null }
}

describe('MetaStore', () => {
  it('keeps committed changes across a reopen', async () => {
    const dir = await tmpDir()
    const meta = await MetaStore.open(dir, owner)
    const change = meta.change()
    change.putEntry(fileEntry(5))
    change.link(ROOT_INO, 'a', 5)
    await meta.commit(change)
    const chmod = meta.change()
    chmod.putEntry(fileEntry(5, 0o600))
    await meta.commit(chmod)
    await meta.close()

    const again = await MetaStore.open(dir, owner)
    expect(again.get(5).mode).toBe(S_IFREG | 0o600)
    expect(again.dir(ROOT_INO).get('a')).toBe(5)
    await again.close()
  })

  it('replays changes that reached only the log (a crash before level had them)', async () => {
    const dir = await tmpDir()
    await (await MetaStore.open(dir, owner)).close()
    // What a daemon killed right after answering leaves: records in the log, none in level.
    const { log, records } = MetaLog.open(join(dir, 'BAZIL-WAL'))
    expect(records).toEqual([])
    log.append([{ type: 'put', key: 'e:7', value: JSON.stringify(fileEntry(7)) }, { type: 'put', key: `d:${ROOT_INO}:x`, value: '7' }])
    log.append([{ type: 'put', key: 'e:7', value: JSON.stringify(fileEntry(7, 0o600)) }])
    log.append([{ type: 'put', key: 'e:8', value: JSON.stringify(fileEntry(8)) }, { type: 'put', key: `d:${ROOT_INO}:y`, value: '8' }])
    log.append([{ type: 'del', key: `d:${ROOT_INO}:y` }, { type: 'del', key: 'e:8' }])
    log.close()
    // A power cut tore the last line: it and nothing after it counts.
    await appendFile(join(dir, 'BAZIL-WAL'), '[{"type":"put","key":"e:9","val')

    const meta = await MetaStore.open(dir, owner)
    expect(meta.get(7).mode).toBe(S_IFREG | 0o600)
    expect(meta.dir(ROOT_INO).get('x')).toBe(7)
    expect(meta.entries.has(8)).toBe(false)
    expect(meta.dir(ROOT_INO).has('y')).toBe(false)
    expect(meta.entries.has(9)).toBe(false)
    await meta.close()
    // Replayed into level and the log emptied: a second reopen sees the same.
    expect(MetaLog.open(join(dir, 'BAZIL-WAL')).records).toEqual([])
    const third = await MetaStore.open(dir, owner)
    expect(third.get(7).mode).toBe(S_IFREG | 0o600)
    await third.close()
  })

  it('writes a burst of changes through in order, synced on request', async () => {
    const dir = await tmpDir()
    const meta = await MetaStore.open(dir, owner)
    const commits: Array<Promise<void>> = []
    for (let mode = 0; mode < 200; mode++) {
      const change = meta.change()
      change.putEntry(fileEntry(5, mode))
      commits.push(meta.commit(change))
    }
    await Promise.all(commits)
    await meta.commit(meta.change(), { sync: true })
    await meta.close()
    const again = await MetaStore.open(dir, owner)
    expect(again.get(5).mode).toBe(S_IFREG | 199)
    await again.close()
  })

  it('scans keys of a layer above that are still only in the log', async () => {
    const dir = await tmpDir()
    const meta = await MetaStore.open(dir, owner)
    const change = meta.change()
    change.putEntry(fileEntry(5))
    change.put('s:a', '1')
    await meta.commit(change)
    const seen: Array<[string, string]> = []
    for await (const kv of meta.scan('s:')) seen.push(kv)
    expect(seen).toEqual([['s:a', '1']])
    await meta.close()
  })
})
