/**
 * SftpStore against a real OpenSSH server on loopback: the KV compliance suite, plus what only a
 * remote store has: host key pinning and trust on first use, key authentication, the server
 * going away and coming back under an open store, per-call deadlines, and the layout on the
 * server's disk.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it, onTestFinished } from 'vitest'
import { BazilError, ErrorCode } from '../../src/errors.ts'
import { SftpStore } from '../../src/kv/sftp.ts'
import type { HostKey, SftpStoreConfig } from '../../src/kv/sftp.ts'
import { kvComplianceSuite } from '../compliance/kv.suite.ts'
import { makeKeyPair, requireSshd, startSshd, useSshd } from '../helpers/sshd.ts'
import type { Sshd } from '../helpers/sshd.ts'

function configFor (sshd: Sshd, overrides: Partial<SftpStoreConfig> = {}): SftpStoreConfig {
  return {
    host: sshd.host,
    port: sshd.port,
    username: sshd.username,
    privateKey: sshd.privateKey,
    path: join(sshd.dataDir, randomUUID()),
    hostKey: { known: sshd.hostPublicKey },
    ...overrides
  }
}

async function openStore (config: SftpStoreConfig): Promise<SftpStore> {
  const store = await SftpStore.open(config)
  onTestFinished(async () => { await store.close() })
  return store
}

async function codeOf (promise: Promise<unknown>): Promise<string> {
  return await promise.then(() => 'resolved', (err: unknown) => err instanceof BazilError ? err.code : String(err))
}

async function pathExists (path: string): Promise<boolean> {
  return await stat(path).then(() => true, () => false)
}

describe.runIf(requireSshd())('SftpStore', () => {
  const sshd = useSshd()

  kvComplianceSuite('SftpStore', async () => {
    const store = await SftpStore.open(configFor(sshd()))
    return { kv: store, teardown: async () => { await store.close() } }
  })

  describe('host keys and authentication', () => {
    it('refuses a key the server does not authorize with PERMISSION', async () => {
      const config = configFor(sshd(), { privateKey: (await makeKeyPair()).privateKey })
      expect(await codeOf(SftpStore.open(config))).toBe(ErrorCode.PERMISSION)
      expect(await pathExists(config.path)).toBe(false)
    })

    it('refuses a server whose host key is not the pinned one with PERMISSION, writing nothing', async () => {
      const other = (await makeKeyPair()).publicKey
      let firstUseCalls = 0
      const config = configFor(sshd(), { hostKey: { known: other, onFirstUse: async () => { firstUseCalls++ } } })
      expect(await codeOf(SftpStore.open(config))).toBe(ErrorCode.PERMISSION)
      // The same with the pin given as a fingerprint (of another key).
      const fingerprintOfOther = configFor(sshd(), { hostKey: { known: 'SHA256:' + randomBytes(32).toString('base64').replace(/=+$/, '') } })
      expect(await codeOf(SftpStore.open(fingerprintOfOther))).toBe(ErrorCode.PERMISSION)
      expect(firstUseCalls).toBe(0)
      expect(await pathExists(config.path)).toBe(false)
      expect(await pathExists(fingerprintOfOther.path)).toBe(false)
    })

    it('accepts the pinned key given as a SHA256 fingerprint or a known_hosts line', async () => {
      for (const known of [sshd().hostKeyFingerprint, `ssh-ed25519 ${sshd().hostPublicKey}`]) {
        const store = await openStore(configFor(sshd(), { hostKey: { known } }))
        const key = randomBytes(32)
        await store.put(key, Buffer.from('pinned'))
        expect(Buffer.from(await store.get(key)).toString()).toBe('pinned')
      }
    })

    it('with no pinned key, asks the first-use callback and trusts the key it accepts', async () => {
      const seen: HostKey[] = []
      const store = await openStore(configFor(sshd(), { hostKey: { onFirstUse: async key => { seen.push(key) } } }))
      expect(seen).toEqual([{ algorithm: 'ssh-ed25519', publicKey: sshd().hostPublicKey, fingerprint: sshd().hostKeyFingerprint }])
      const key = randomBytes(32)
      await store.put(key, randomBytes(10))
      expect(await store.has(key)).toBe(true)
    })

    it('refuses with PERMISSION, writing nothing, when the first-use callback rejects or there is none', async () => {
      const rejecting = configFor(sshd(), { hostKey: { onFirstUse: async () => { throw new Error('the user said no') } } })
      expect(await codeOf(SftpStore.open(rejecting))).toBe(ErrorCode.PERMISSION)
      const neither = configFor(sshd(), { hostKey: {} })
      expect(await codeOf(SftpStore.open(neither))).toBe(ErrorCode.PERMISSION)
      expect(await pathExists(rejecting.path)).toBe(false)
      expect(await pathExists(neither.path)).toBe(false)
    })

    it('rejects a pinned key that is neither a key nor a fingerprint with INVALID', async () => {
      expect(await codeOf(SftpStore.open(configFor(sshd(), { hostKey: { known: 'not a key' } })))).toBe(ErrorCode.INVALID)
    })
  })

  describe('on the server\'s disk', () => {
    it('keeps an object at objects/<first 2 hex>/<rest of hex>, exactly its bytes, and no temp files', async () => {
      const config = configFor(sshd(), { path: join(sshd().dataDir, randomUUID(), 'nested', 'store') })
      const store = await openStore(config)
      const key = Buffer.from('ab' + 'cd'.repeat(31), 'hex')
      const value = randomBytes(3 * 1024 * 1024 + 17) // several write chunks, a ragged end
      await store.put(key, value)
      const empty = Buffer.from('00'.repeat(32), 'hex')
      await store.put(empty, new Uint8Array(0))
      expect((await readdir(config.path)).sort()).toEqual(['objects', 'tmp'])
      expect((await readdir(join(config.path, 'objects'))).sort()).toEqual(['00', 'ab'])
      expect(await readdir(join(config.path, 'objects', 'ab'))).toEqual(['cd'.repeat(31)])
      expect(await readdir(join(config.path, 'objects', '00'))).toEqual(['00'.repeat(31)])
      expect(Buffer.compare(await readFile(join(config.path, 'objects', 'ab', 'cd'.repeat(31))), value)).toBe(0)
      expect((await stat(join(config.path, 'objects', '00', '00'.repeat(31)))).size).toBe(0)
      expect(await readdir(join(config.path, 'tmp'))).toEqual([])
      expect(await store.stat()).toEqual({ objects: 2, bytes: value.byteLength })
    })

    it('reads objects placed by another writer, and leaves an existing object untouched on put', async () => {
      const config = configFor(sshd())
      const store = await openStore(config)
      const key = randomBytes(32)
      const hex = key.toString('hex')
      const value = randomBytes(5000)
      await store.put(randomBytes(32), randomBytes(1)) // makes a first shard; key's may differ
      await store.close()
      const file = join(config.path, 'objects', hex.slice(0, 2), hex.slice(2))
      await mkdir(join(config.path, 'objects', hex.slice(0, 2)), { recursive: true })
      await writeFile(file, value)
      const before = await stat(file)
      const reopened = await openStore(config)
      expect(Buffer.compare(await reopened.get(key), value)).toBe(0)
      await reopened.put(key, value)
      const after = await stat(file)
      expect(after.ino).toBe(before.ino)
      expect(after.mtimeMs).toBe(before.mtimeMs)
    })

    it('on open, removes temp files older than a day and keeps fresh ones (another machine\'s puts)', async () => {
      const config = configFor(sshd())
      await (await openStore(config)).close()
      const old = join(config.path, 'tmp', `${randomBytes(32).toString('hex')}.deadbeef.0`)
      const fresh = join(config.path, 'tmp', `${randomBytes(32).toString('hex')}.cafef00d.0`)
      await writeFile(old, randomBytes(100))
      await writeFile(fresh, randomBytes(100))
      const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000)
      await utimes(old, twoDaysAgo, twoDaysAgo)
      const store = await openStore(config)
      expect(await readdir(join(config.path, 'tmp'))).toEqual([fresh.split('/').pop()])
      expect(await store.stat()).toEqual({ objects: 0, bytes: 0 })
    })
  })

  it('leaves no temp file behind when puts are aborted mid-flight', async () => {
    const config = configFor(sshd())
    const store = await SftpStore.open(config)
    const outcomes = await Promise.all(Array.from({ length: 8 }, async (_, i) => {
      const ac = new AbortController()
      const put = codeOf(store.put(randomBytes(32), randomBytes(2 * 1024 * 1024), { signal: ac.signal }))
      await new Promise(resolve => setTimeout(resolve, i * 3))
      ac.abort()
      return await put
    }))
    for (const code of outcomes) expect(['resolved', ErrorCode.ABORTED]).toContain(code)
    await store.close() // waits for the aborted puts to clean up on the server
    expect(await readdir(join(config.path, 'tmp'))).toEqual([])
    const stored = outcomes.filter(code => code === 'resolved').length
    const reopened = await openStore(config)
    expect((await reopened.stat()).objects).toBeLessThanOrEqual(8)
    expect((await reopened.stat()).objects).toBeGreaterThanOrEqual(stored)
  })

  it('rejects calls after close with CLOSED', async () => {
    const store = await SftpStore.open(configFor(sshd()))
    const key = randomBytes(32)
    const puts = Array.from({ length: 20 }, async () => { await store.put(randomBytes(32), randomBytes(4096)) })
    await store.close()
    await Promise.all(puts) // calls in progress finished before close resolved
    expect(await codeOf(store.get(key))).toBe(ErrorCode.CLOSED)
    expect(await codeOf(store.put(key, randomBytes(1)))).toBe(ErrorCode.CLOSED)
  })
})

describe.runIf(requireSshd())('SftpStore when the server goes away', () => {
  /** A store on its own server, with one object stored. */
  async function storeOnOwnServer (timeoutMs?: number): Promise<{ sshd: Sshd, store: SftpStore, key: Buffer, value: Buffer }> {
    const sshd = await startSshd()
    const store = await openStore(configFor(sshd, { timeoutMs }))
    const key = randomBytes(32)
    const value = randomBytes(100_000)
    await store.put(key, value)
    return { sshd, store, key, value }
  }

  it('fails calls in flight with UNAVAILABLE when sshd stops, and works again once it is back', async () => {
    const { sshd, store, key, value } = await storeOnOwnServer()
    sshd.pauseSessions() // the server takes requests but never answers: they stay in flight
    const inFlight = [codeOf(store.get(key)), codeOf(store.has(key)), codeOf(store.put(randomBytes(32), value))]
    await sshd.stop()
    expect(await Promise.all(inFlight)).toEqual([ErrorCode.UNAVAILABLE, ErrorCode.UNAVAILABLE, ErrorCode.UNAVAILABLE])
    // While it is down, a new call fails the same way (connection refused), not a hang.
    expect(await codeOf(store.get(key))).toBe(ErrorCode.UNAVAILABLE)
    await sshd.start()
    expect(Buffer.compare(await store.get(key), value)).toBe(0)
    const later = randomBytes(32)
    await store.put(later, value)
    expect(await store.has(later)).toBe(true)
  })

  it('recovers the same way after sshd is killed', async () => {
    const { sshd, store, key, value } = await storeOnOwnServer()
    await sshd.kill()
    expect(await codeOf(store.get(key))).toBe(ErrorCode.UNAVAILABLE)
    await sshd.start()
    expect(Buffer.compare(await store.get(key), value)).toBe(0)
  })

  it('ends a call the server never answers at its deadline (TIMEOUT) or at the caller\'s abort', async () => {
    const { sshd, store, key } = await storeOnOwnServer(2000)
    sshd.pauseSessions()
    expect(await codeOf(store.get(key))).toBe(ErrorCode.TIMEOUT)
    const ac = new AbortController()
    const aborted = codeOf(store.has(key, { signal: ac.signal }))
    ac.abort()
    expect(await aborted).toBe(ErrorCode.ABORTED)
    await sshd.stop()
    await sshd.start()
    expect(await store.has(key)).toBe(true)
  })
})
