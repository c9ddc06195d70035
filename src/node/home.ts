/**
 * The data dir ("home") of one Bazil node: where it is (`resolveHome`), how it is made
 * (`initHome`: identity key, owner secret, volume record, db/store/staging dirs, mode 0700) and
 * how it is opened and validated (`openHome`). Every file is written atomically (temp file,
 * fsync, rename, fsync of the dir); `volume.json` is written last and marks a finished init.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto'
import type { KeyObject } from 'node:crypto'
import { mkdir, readdir, readFile, stat, chmod } from 'node:fs/promises'
import type { Stats } from 'node:fs'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts'

export interface Identity {
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array
  privateKey: KeyObject
  /** libp2p peer id of the key ("12D3KooW..."), the form libp2p derives for Ed25519 keys. */
  peerId: string
}

export interface VolumeRecord {
  name: string
  /** 16 random bytes, hex. */
  id: string
  createdAt: string
}

export interface Home {
  dir: string
  dbDir: string
  storeDir: string
  stagingDir: string
  socketPath: string
  lockPath: string
  logPath: string
  /** The owner keyring's 32-byte secret; every content key derives from it. */
  ownerSecret: Uint8Array
  identity: Identity
  volume: VolumeRecord
}

const IDENTITY_FILE = 'identity.key'
const OWNER_FILE = 'owner.key'
const VOLUME_FILE = 'volume.json'
const SUBDIRS = ['db', 'store', 'staging'] as const
/** What a half-finished init can leave behind; such a dir may be initialized again. */
const INIT_ENTRIES = new Set<string>([IDENTITY_FILE, OWNER_FILE, ...SUBDIRS])
const OWNER_SECRET_BYTES = 32

/** The data dir: $BAZIL_HOME, else $XDG_DATA_HOME/bazil, else ~/.local/share/bazil. */
export function resolveHome (env: NodeJS.ProcessEnv = process.env): string {
  if (env.BAZIL_HOME !== undefined && env.BAZIL_HOME !== '') return resolve(env.BAZIL_HOME)
  if (env.XDG_DATA_HOME !== undefined && env.XDG_DATA_HOME !== '') return resolve(env.XDG_DATA_HOME, 'bazil')
  return join(homedir(), '.local', 'share', 'bazil')
}

/** Creates a new data dir at `dir` (which may exist if empty) and opens it. */
export async function initHome (dir: string): Promise<Home> {
  dir = resolve(dir)
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 })
    const entries = await readdir(dir)
    if (entries.includes(VOLUME_FILE)) {
      throw new BazilError(ErrorCode.EXISTS, `${dir} is already a Bazil data dir; it was not changed`)
    }
    const foreign = entries.filter(name => !INIT_ENTRIES.has(name) && !name.includes('.tmp-'))
    if (foreign.length > 0) {
      throw new BazilError(ErrorCode.NOT_EMPTY,
        `${dir} is not empty and is not a Bazil data dir (it holds ${describeEntries(foreign)}); choose an empty or new dir`)
    }
    await chmod(dir, 0o700)
    const { privateKey } = generateKeyPairSync('ed25519')
    const pem = privateKey.export({ format: 'pem', type: 'pkcs8' })
    await writeFileAtomic(join(dir, IDENTITY_FILE), pem, 0o600)
    await writeFileAtomic(join(dir, OWNER_FILE), randomBytes(OWNER_SECRET_BYTES), 0o600)
    for (const sub of SUBDIRS) await mkdir(join(dir, sub), { recursive: true, mode: 0o700 })
    const volume: VolumeRecord = { name: 'default', id: randomBytes(16).toString('hex'), createdAt: new Date().toISOString() }
    await writeFileAtomic(join(dir, VOLUME_FILE), JSON.stringify(volume, null, 2) + '\n', 0o600)
    await syncDir(dir)
  } catch (err) {
    throw fromSystemError(err, `cannot initialize ${dir}`)
  }
  return await openHome(dir)
}

/** Opens and validates an initialized data dir. */
export async function openHome (dir: string): Promise<Home> {
  dir = resolve(dir)
  const dirStat = await statOrUndefined(dir)
  if (dirStat === undefined) throw notInitialized(dir)
  if (!dirStat.isDirectory()) throw new BazilError(ErrorCode.INVALID, `${dir} is not a directory, so it cannot be a Bazil data dir`)
  const volumeText = await readOrUndefined(join(dir, VOLUME_FILE))
  if (volumeText === undefined) throw notInitialized(dir)
  checkPrivate(dir, dirStat, 0o700)
  const volume = parseVolume(volumeText.toString('utf8'), join(dir, VOLUME_FILE))
  const identity = parseIdentity(await readPrivate(join(dir, IDENTITY_FILE)), join(dir, IDENTITY_FILE))
  const ownerSecret = await readPrivate(join(dir, OWNER_FILE))
  if (ownerSecret.length !== OWNER_SECRET_BYTES) {
    throw new BazilError(ErrorCode.INVALID, `${join(dir, OWNER_FILE)} is broken: it should hold ${OWNER_SECRET_BYTES} bytes, not ${ownerSecret.length}`)
  }
  for (const sub of SUBDIRS) {
    const st = await statOrUndefined(join(dir, sub))
    if (st?.isDirectory() !== true) throw new BazilError(ErrorCode.INVALID, `${join(dir, sub)} is missing: the data dir is damaged`)
  }
  return {
    dir,
    dbDir: join(dir, 'db'),
    storeDir: join(dir, 'store'),
    stagingDir: join(dir, 'staging'),
    socketPath: join(dir, 'control.sock'),
    lockPath: join(dir, 'daemon.lock'),
    logPath: join(dir, 'daemon.log'),
    ownerSecret: new Uint8Array(ownerSecret),
    identity,
    volume
  }
}

/** The libp2p peer id of an Ed25519 public key: base58btc of the identity multihash of its protobuf form. */
export function peerIdFromEd25519 (publicKey: Uint8Array): string {
  // multihash identity (0x00), length 36; protobuf PublicKey { Type: Ed25519 (1), Data: 32 bytes }
  const bytes = new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...publicKey])
  return base58btc(bytes)
}

function parseIdentity (pem: Buffer, path: string): Identity {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(pem)
  } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `${path} is broken: not a private key`, { cause: err })
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new BazilError(ErrorCode.INVALID, `${path} is broken: not an Ed25519 key`)
  }
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' })
  const publicKey = new Uint8Array(Buffer.from(jwk.x ?? '', 'base64url'))
  return { publicKey, privateKey, peerId: peerIdFromEd25519(publicKey) }
}

function parseVolume (text: string, path: string): VolumeRecord {
  let value: unknown
  try { value = JSON.parse(text) } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `${path} is broken: not valid JSON`, { cause: err })
  }
  const record = value as Partial<VolumeRecord> | null
  if (typeof record !== 'object' || record === null || typeof record.name !== 'string' || record.name === '' ||
      typeof record.id !== 'string' || !/^[0-9a-f]{32}$/.test(record.id)) {
    throw new BazilError(ErrorCode.INVALID, `${path} is broken: it needs a volume name and a 32-hex-digit id`)
  }
  return { name: record.name, id: record.id, createdAt: typeof record.createdAt === 'string' ? record.createdAt : '' }
}

/** Reads a secret file, refusing it if other users could read it. */
async function readPrivate (path: string): Promise<Buffer> {
  const st = await statOrUndefined(path)
  if (st === undefined) throw new BazilError(ErrorCode.INVALID, `${path} is missing: the data dir is damaged`)
  if (!st.isFile()) throw new BazilError(ErrorCode.INVALID, `${path} is not a regular file: the data dir is damaged`)
  checkPrivate(path, st, 0o600)
  try { return await readFile(path) } catch (err) { throw fromSystemError(err, `cannot read ${path}`) }
}

function checkPrivate (path: string, st: Stats, wanted: number): void {
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0')
    throw new BazilError(ErrorCode.INVALID,
      `${path} is open to other users (mode ${mode}); make it private with: chmod ${wanted.toString(8)} ${path}`)
  }
  const uid = process.getuid?.()
  if (uid !== undefined && uid !== 0 && st.uid !== uid) {
    throw new BazilError(ErrorCode.PERMISSION, `${path} belongs to another user (uid ${st.uid})`)
  }
}

function notInitialized (dir: string): BazilError {
  return new BazilError(ErrorCode.NOT_INITIALIZED, `there is no Bazil data dir at ${dir}; run \`bazil init\` to create one`)
}

function describeEntries (names: string[]): string {
  const shown = names.slice(0, 3).join(', ')
  return names.length > 3 ? `${shown} and ${names.length - 3} more` : shown
}

async function statOrUndefined (path: string): Promise<Stats | undefined> {
  try { return await stat(path) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fromSystemError(err, `cannot read ${path}`)
  }
}

async function readOrUndefined (path: string): Promise<Buffer | undefined> {
  try { return await readFile(path) } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw fromSystemError(err, `cannot read ${path}`)
  }
}

const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function base58btc (bytes: Uint8Array): string {
  let value = 0n
  for (const byte of bytes) value = (value << 8n) | BigInt(byte)
  let out = ''
  while (value > 0n) {
    out = BASE58_ALPHABET[Number(value % 58n)] + out
    value /= 58n
  }
  for (const byte of bytes) {
    if (byte !== 0) break
    out = '1' + out
  }
  return out
}

/**
 * Makes a freshly initialized data dir part of an owner's set of devices (after `bazil join`):
 * the owner secret and volume record received from the inviting device replace the ones
 * `initHome` made. Refuses (CONFLICT) a data dir that already belongs to another owner and
 * holds anything: its content could not be read with the new secret.
 */
export async function adoptOwner (home: Home, ownerSecret: Uint8Array, volume: VolumeRecord, options: { fresh: boolean }): Promise<Home> {
  const same = Buffer.from(home.ownerSecret).equals(Buffer.from(ownerSecret))
  if (!same && !options.fresh) {
    throw new BazilError(ErrorCode.CONFLICT, `${home.dir} already belongs to another owner; join from a new data dir (bazil --home DIR join CODE)`)
  }
  await writeFileAtomic(join(home.dir, OWNER_FILE), ownerSecret, 0o600)
  await writeFileAtomic(join(home.dir, VOLUME_FILE), JSON.stringify(volume, null, 2) + '\n', 0o600)
  return { ...home, ownerSecret, volume }
}
