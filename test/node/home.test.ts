import { describe, it, expect } from 'vitest'
import { sign, verify } from 'node:crypto'
import { chmod, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { initHome, openHome, peerIdFromEd25519, resolveHome } from '../../src/node/home.ts'
import { ErrorCode } from '../../src/errors.ts'
import type { BazilError } from '../../src/errors.ts'
import { tmpDir } from '../helpers/tmp.ts'

async function codeOf (work: Promise<unknown>): Promise<string> {
  try {
    await work
  } catch (err) {
    return (err as BazilError).code
  }
  return 'no error'
}

async function newHome (): Promise<string> {
  return join(await tmpDir(), 'home')
}

const mode = async (path: string): Promise<number> => (await stat(path)).mode & 0o777

describe('resolveHome', () => {
  it('prefers $BAZIL_HOME, then $XDG_DATA_HOME/bazil, then ~/.local/share/bazil', () => {
    expect(resolveHome({ BAZIL_HOME: '/x/y', XDG_DATA_HOME: '/d' })).toBe('/x/y')
    expect(resolveHome({ XDG_DATA_HOME: '/d' })).toBe('/d/bazil')
    expect(resolveHome({ BAZIL_HOME: '' })).toMatch(/\/\.local\/share\/bazil$/)
  })
})

describe('initHome', () => {
  it('creates a private data dir with identity, owner secret, volume and subdirs', async () => {
    const dir = await newHome()
    const home = await initHome(dir)
    expect(home.dir).toBe(dir)
    expect((await readdir(dir)).sort()).toEqual(['db', 'identity.key', 'owner.key', 'staging', 'store', 'volume.json'])
    expect(await mode(dir)).toBe(0o700)
    expect(await mode(join(dir, 'identity.key'))).toBe(0o600)
    expect(await mode(join(dir, 'owner.key'))).toBe(0o600)
    for (const sub of [home.dbDir, home.storeDir, home.stagingDir]) expect((await stat(sub)).isDirectory()).toBe(true)
    expect(home.ownerSecret.length).toBe(32)
    expect(home.identity.publicKey.length).toBe(32)
    expect(home.volume.name).toBe('default')
    expect(home.volume.id).toMatch(/^[0-9a-f]{32}$/)
    expect(home.socketPath).toBe(join(dir, 'control.sock'))
    expect(home.lockPath).toBe(join(dir, 'daemon.lock'))
    const volume = JSON.parse(await readFile(join(dir, 'volume.json'), 'utf8'))
    expect(volume).toMatchObject({ name: 'default', id: home.volume.id })
  })

  it('leaves no temp files behind', async () => {
    const dir = await newHome()
    await initHome(dir)
    expect((await readdir(dir)).filter(name => name.includes('.tmp-'))).toEqual([])
  })

  it('gives a working Ed25519 identity that openHome reads back', async () => {
    const dir = await newHome()
    const made = await initHome(dir)
    const opened = await openHome(dir)
    expect(Buffer.from(opened.identity.publicKey)).toEqual(Buffer.from(made.identity.publicKey))
    expect(opened.identity.peerId).toBe(made.identity.peerId)
    expect(Buffer.from(opened.ownerSecret)).toEqual(Buffer.from(made.ownerSecret))
    expect(opened.volume).toEqual(made.volume)
    const message = Buffer.from('hello')
    const signature = sign(null, message, opened.identity.privateKey)
    const publicKey = { key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(opened.identity.publicKey).toString('base64url') }, format: 'jwk' } as const
    expect(verify(null, message, publicKey, signature)).toBe(true)
  })

  it('uses fresh keys for every home', async () => {
    const a = await initHome(await newHome())
    const b = await initHome(await newHome())
    expect(a.identity.peerId).not.toBe(b.identity.peerId)
    expect(Buffer.from(a.ownerSecret)).not.toEqual(Buffer.from(b.ownerSecret))
    expect(a.volume.id).not.toBe(b.volume.id)
  })

  it('refuses to initialize twice and changes nothing', async () => {
    const dir = await newHome()
    await initHome(dir)
    const before = await readFile(join(dir, 'owner.key'))
    expect(await codeOf(initHome(dir))).toBe(ErrorCode.EXISTS)
    expect(await readFile(join(dir, 'owner.key'))).toEqual(before)
  })

  it('refuses a non-empty dir that is not a Bazil home', async () => {
    const dir = await newHome()
    await mkdir(dir)
    await writeFile(join(dir, 'notes.txt'), 'mine')
    expect(await codeOf(initHome(dir))).toBe(ErrorCode.NOT_EMPTY)
    expect(await readdir(dir)).toEqual(['notes.txt'])
  })

  it('uses an existing empty dir and makes it private', async () => {
    const dir = await newHome()
    await mkdir(dir, { mode: 0o755 })
    await chmod(dir, 0o755)
    await initHome(dir)
    expect(await mode(dir)).toBe(0o700)
  })

  it('finishes an init that was interrupted before volume.json was written', async () => {
    const dir = await newHome()
    await initHome(dir)
    await rm(join(dir, 'volume.json'))
    expect(await codeOf(openHome(dir))).toBe(ErrorCode.NOT_INITIALIZED)
    const home = await initHome(dir)
    expect((await openHome(dir)).identity.peerId).toBe(home.identity.peerId)
  })
})

describe('openHome', () => {
  it('says NOT_INITIALIZED for a missing or empty dir', async () => {
    const dir = await newHome()
    expect(await codeOf(openHome(dir))).toBe(ErrorCode.NOT_INITIALIZED)
    await mkdir(dir)
    expect(await codeOf(openHome(dir))).toBe(ErrorCode.NOT_INITIALIZED)
  })

  it('says INVALID for a path that is a file', async () => {
    const path = join(await tmpDir(), 'file')
    await writeFile(path, 'x')
    expect(await codeOf(openHome(path))).toBe(ErrorCode.INVALID)
  })

  it('refuses a data dir or key that other users can read', async () => {
    const dir = await newHome()
    await initHome(dir)
    await chmod(dir, 0o755)
    expect(await codeOf(openHome(dir))).toBe(ErrorCode.INVALID)
    await chmod(dir, 0o700)
    await chmod(join(dir, 'owner.key'), 0o644)
    expect(await codeOf(openHome(dir))).toBe(ErrorCode.INVALID)
    await chmod(join(dir, 'owner.key'), 0o600)
    await chmod(join(dir, 'identity.key'), 0o640)
    expect(await codeOf(openHome(dir))).toBe(ErrorCode.INVALID)
    await chmod(join(dir, 'identity.key'), 0o600)
    await openHome(dir)
  })

  const breakages: Array<[string, (dir: string) => Promise<void>]> = [
    ['a truncated owner.key', async dir => { await writeFile(join(dir, 'owner.key'), Buffer.alloc(16)) }],
    ['a garbage identity.key', async dir => { await writeFile(join(dir, 'identity.key'), 'not a key') }],
    ['a missing identity.key', async dir => { await rm(join(dir, 'identity.key')) }],
    ['volume.json that is not JSON', async dir => { await writeFile(join(dir, 'volume.json'), '{oops') }],
    ['volume.json without an id', async dir => { await writeFile(join(dir, 'volume.json'), '{"name":"default"}') }],
    ['a missing store dir', async dir => { await rm(join(dir, 'store'), { recursive: true }) }]
  ]
  for (const [what, breakIt] of breakages) {
    it(`says INVALID for ${what}`, async () => {
      const dir = await newHome()
      await initHome(dir)
      await breakIt(dir)
      expect(await codeOf(openHome(dir))).toBe(ErrorCode.INVALID)
    })
  }
})

describe('peerIdFromEd25519', () => {
  it('is the base58btc identity multihash of the protobuf public key, as libp2p makes it', () => {
    const key = new Uint8Array(32).map((_, i) => i)
    const peerId = peerIdFromEd25519(key)
    // Every libp2p Ed25519 peer id starts so: 0x00 0x24 0x08 0x01 0x12 0x20 in base58btc.
    expect(peerId.startsWith('12D3KooW')).toBe(true)
    expect(decodeBase58(peerId)).toEqual(Buffer.from([0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...key]))
  })
})

/** An independent decoder (digit by digit over a byte array), to cross-check the encoder. */
function decodeBase58 (text: string): Buffer {
  const alphabet = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
  const bytes: number[] = []
  for (const char of text) {
    let carry = alphabet.indexOf(char)
    expect(carry).toBeGreaterThanOrEqual(0)
    for (let i = 0; i < bytes.length; i++) {
      carry += (bytes[i] ?? 0) * 58
      bytes[i] = carry & 0xff
      carry >>= 8
    }
    while (carry > 0) { bytes.push(carry & 0xff); carry >>= 8 }
  }
  for (const char of text) { if (char !== '1') break; bytes.push(0) }
  return Buffer.from(bytes.reverse())
}
