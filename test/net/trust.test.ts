/**
 * The trust store (src/net/trust.ts): persistence in `<home>/peers.json`, its permissions,
 * atomic and serialized writes, and refusal of broken or world-accessible files.
 */
import { describe, it, expect } from 'vitest'
import { generateKeyPairSync } from 'node:crypto'
import { chmod, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openTrustStore, PEERS_FILE } from '../../src/net/trust.ts'
import type { PairedPeer } from '../../src/net/types.ts'
import { peerIdFromEd25519 } from '../../src/node/home.ts'
import { ErrorCode } from '../../src/errors.ts'
import { tmpDir } from '../helpers/tmp.ts'

function newPeerId (): string {
  const jwk = generateKeyPairSync('ed25519').publicKey.export({ format: 'jwk' })
  return peerIdFromEd25519(new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url')))
}

function peer (overrides: Partial<PairedPeer> = {}): PairedPeer {
  return {
    peerId: newPeerId(),
    name: 'laptop',
    addrs: ['/ip4/192.0.2.7/tcp/4011'],
    pairedAt: '2025-01-02T03:04:05.000Z',
    ...overrides
  }
}

async function codeOf (work: Promise<unknown>): Promise<string> {
  try {
    await work
  } catch (err) {
    return (err as { code?: string }).code ?? `not a BazilError: ${String(err)}`
  }
  return 'resolved'
}

describe('trust store', () => {
  it('starts empty without a file and creates none until a change', async () => {
    const home = await tmpDir()
    const trust = await openTrustStore(home)
    expect(trust.list()).toEqual([])
    expect(trust.isPaired(newPeerId())).toBe(false)
    expect(await trust.remove(newPeerId())).toBe(false)
    expect(await readdir(home)).toEqual([])
  })

  it('persists add, rename and remove in a 0600 file, replaced atomically', async () => {
    const home = await tmpDir()
    const trust = await openTrustStore(home)
    const a = peer({ name: 'laptop' })
    const b = peer({ name: 'server', addrs: [] })
    await trust.add(a)
    await trust.add(b)
    await trust.rename(a.peerId, 'old laptop')
    expect(await trust.remove(b.peerId)).toBe(true)

    const st = await stat(join(home, PEERS_FILE))
    expect(st.mode & 0o777).toBe(0o600)
    expect(await readdir(home)).toEqual([PEERS_FILE])
    const reopened = await openTrustStore(home)
    expect(reopened.list()).toEqual([{ ...a, name: 'old laptop' }])
    expect(reopened.isPaired(a.peerId)).toBe(true)
    expect(reopened.isPaired(b.peerId)).toBe(false)
    expect(JSON.parse(await readFile(join(home, PEERS_FILE), 'utf8'))).toEqual({ version: 1, peers: [{ ...a, name: 'old laptop' }] })
  })

  it('adding a known peer replaces its record', async () => {
    const home = await tmpDir()
    const trust = await openTrustStore(home)
    const a = peer()
    await trust.add(a)
    await trust.add({ ...a, addrs: ['/ip4/192.0.2.8/tcp/1'], name: 'renamed' })
    expect((await openTrustStore(home)).list()).toEqual([{ ...a, addrs: ['/ip4/192.0.2.8/tcp/1'], name: 'renamed' }])
  })

  it('hands out copies, not its own records', async () => {
    const trust = await openTrustStore(await tmpDir())
    const a = peer()
    await trust.add(a)
    a.addrs.push('/ip4/192.0.2.9/tcp/1')
    trust.get(a.peerId)?.addrs.push('/ip4/192.0.2.10/tcp/1')
    const listed = trust.list()[0]
    if (listed !== undefined) listed.name = 'changed'
    expect(trust.get(a.peerId)).toEqual({ ...a, addrs: ['/ip4/192.0.2.7/tcp/4011'] })
  })

  it('serializes concurrent changes: none is lost', async () => {
    const home = await tmpDir()
    const trust = await openTrustStore(home)
    const peers = Array.from({ length: 20 }, (_, i) => peer({ name: `device-${i}` }))
    const first = peers[0]
    if (first === undefined) throw new Error('no peers')
    await Promise.all([
      ...peers.map(async p => { await trust.add(p) }),
      trust.rename(first.peerId, 'renamed while others were added')
    ])
    const names = (await openTrustStore(home)).list().map(p => p.name).sort()
    expect(names).toEqual(['renamed while others were added', ...peers.slice(1).map(p => p.name)].sort())
  })

  it('rejects invalid records with INVALID and unknown peers with NOT_FOUND, writing nothing', async () => {
    const home = await tmpDir()
    const trust = await openTrustStore(home)
    const a = peer()
    expect(await codeOf(trust.add(peer({ peerId: 'not-a-peer-id' })))).toBe(ErrorCode.INVALID)
    expect(await codeOf(trust.add(peer({ name: '' })))).toBe(ErrorCode.INVALID)
    expect(await codeOf(trust.add(peer({ name: 'evil\u001b[2J' })))).toBe(ErrorCode.INVALID)
    expect(await codeOf(trust.add(peer({ pairedAt: 'yesterday' })))).toBe(ErrorCode.INVALID)
    expect(await codeOf(trust.rename(a.peerId, 'x'))).toBe(ErrorCode.NOT_FOUND)
    expect(await readdir(home)).toEqual([])
    await trust.add(a)
    expect(await codeOf(trust.rename(a.peerId, ' '))).toBe(ErrorCode.INVALID)
    expect(trust.get(a.peerId)?.name).toBe('laptop')
  })

  it('leaves the store unchanged when a write fails', async () => {
    const home = await tmpDir()
    const trust = await openTrustStore(home)
    const a = peer()
    await trust.add(a)
    // Root ignores permissions, so take the directory away instead.
    await rm(home, { recursive: true })
    const b = peer()
    expect(await codeOf(trust.add(b))).toBe(ErrorCode.NOT_FOUND)
    expect(await codeOf(trust.remove(a.peerId))).toBe(ErrorCode.NOT_FOUND)
    expect(trust.list()).toEqual([a])
  })

  it('refuses a file other users could change, or a broken one', async () => {
    const home = await tmpDir()
    const path = join(home, PEERS_FILE)
    await (await openTrustStore(home)).add(peer())
    await chmod(path, 0o666)
    expect(await codeOf(openTrustStore(home))).toBe(ErrorCode.INVALID)
    for (const text of ['{', '[]', '{"version":2,"peers":[]}', '{"version":1,"peers":[{"peerId":"x"}]}']) {
      await writeFile(path, text, { mode: 0o600 })
      await chmod(path, 0o600)
      expect(await codeOf(openTrustStore(home))).toBe(ErrorCode.INVALID)
    }
  })
})
