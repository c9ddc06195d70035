/**
 * The volume's stores besides the local one: their configuration (`<home>/stores.json`, 0600,
 * written atomically) and how a URL becomes a KV:
 * - a plain local path (another disk, a mounted share);
 * - `sftp://user@host:port/path` — key authentication with `?key=FILE` or the data dir's
 *   `sftp.key`, else ~/.ssh/id_ed25519; the host key is pinned on first use (saved in the
 *   store's config) and checked on every connection after that;
 * - `s3://bucket/prefix?endpoint=URL&region=R[&create=1]` — any S3-compatible service (path-style
 *   addressing when an endpoint is given); credentials from `<data dir>/s3.json` (0600:
 *   {"accessKeyId", "secretAccessKey"}) or else the standard AWS environment variables.
 *
 * And the volume's replication policy (`<home>/store-policy.json`): `copies=N` stores should
 * hold each object, the local store counting as one (git-annex's numcopies); which of the other
 * stores hold a given object is decided by rendezvous hashing, so the load spreads and the
 * choice is stable while the set of stores stays the same. `copies=all` (the default) copies
 * everything to every store. A picked store that keeps failing hands its objects on to the next
 * stores in the same order (`fallbacksFor`, used by the replication queue).
 */
import { createHash } from 'node:crypto'
import { access, readFile, stat } from 'node:fs/promises'
import { writeFileAtomic } from '../util/atomic-file.ts'
import { homedir } from 'node:os'
import { isAbsolute, join, resolve } from 'node:path'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import { LocalStore } from '../kv/local.ts'
import { SftpStore } from '../kv/sftp.ts'
import { S3Store } from '../kv/s3.ts'
import type { FullKV, KV } from '../kv/kv.ts'

export interface StoreConfig {
  name: string
  url: string
  addedAt: string
  /** SFTP: the server's host key (base64 raw key), pinned on first use. */
  hostKey?: string
}

export interface OpenedStore {
  config: StoreConfig
  kv: KV
  close: () => Promise<void>
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/i
export const LOCAL_STORE_NAME = 'local'

export function storesFile (homeDir: string): string {
  return join(homeDir, 'stores.json')
}

export async function readStores (homeDir: string): Promise<StoreConfig[]> {
  let text: string
  try {
    text = await readFile(storesFile(homeDir), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw fromSystemError(err, 'reading stores.json')
  }
  try {
    const stores = JSON.parse(text) as StoreConfig[]
    if (!Array.isArray(stores)) throw new Error('not a list')
    return stores
  } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `${storesFile(homeDir)} is damaged: ${(err as Error).message}`)
  }
}

export async function writeStores (homeDir: string, stores: StoreConfig[]): Promise<void> {
  try {
    await writeFileAtomic(storesFile(homeDir), JSON.stringify(stores, null, 2) + '\n', 0o600)
  } catch (err) {
    throw fromSystemError(err, 'writing stores.json')
  }
}

/** Checks a name and URL and returns the normalized config (local paths become absolute). */
export function parseStore (name: string, url: string, now = new Date()): StoreConfig {
  if (!NAME.test(name) || name === LOCAL_STORE_NAME) {
    throw new BazilError(ErrorCode.INVALID, `bad store name "${name}": use letters, digits, '.', '_' or '-' (and not "${LOCAL_STORE_NAME}")`)
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase()
  if (scheme === undefined || scheme === 'file') {
    const path = scheme === 'file' ? new URL(url).pathname : url
    if (path === '') throw new BazilError(ErrorCode.INVALID, 'a store needs a URL or a path')
    return { name, url: isAbsolute(path) ? path : resolve(path), addedAt: now.toISOString() }
  }
  if (scheme === 'sftp' || scheme === 's3') return { name, url, addedAt: now.toISOString() }
  throw new BazilError(ErrorCode.INVALID, `unknown store URL scheme "${scheme}": use a local path, sftp://user@host:port/path or s3://bucket/prefix`)
}

/** How many stores (the local one included) should hold each object. */
export type Copies = number | 'all'
export interface StorePolicy { copies: Copies }
export const MAX_COPIES = 64

export function policyFile (homeDir: string): string {
  return join(homeDir, 'store-policy.json')
}

export async function readPolicy (homeDir: string): Promise<StorePolicy> {
  let text: string
  try {
    text = await readFile(policyFile(homeDir), 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { copies: 'all' }
    throw fromSystemError(err, 'reading store-policy.json')
  }
  try {
    const parsed = JSON.parse(text) as { copies?: unknown }
    return { copies: parseCopies(String(parsed.copies)) }
  } catch (err) {
    throw new BazilError(ErrorCode.INVALID, `${policyFile(homeDir)} is damaged: ${(err as Error).message}`)
  }
}

export async function writePolicy (homeDir: string, policy: StorePolicy): Promise<void> {
  try {
    await writeFileAtomic(policyFile(homeDir), JSON.stringify(policy) + '\n', 0o600)
  } catch (err) {
    throw fromSystemError(err, 'writing store-policy.json')
  }
}

/** `copies=N`, `N`, `copies=all` or `all` → the setting; INVALID otherwise. */
export function parseCopies (text: string): Copies {
  const value = text.replace(/^copies=/, '')
  if (value === 'all') return 'all'
  const n = /^[0-9]+$/.test(value) ? Number(value) : NaN
  if (!Number.isInteger(n) || n < 1 || n > MAX_COPIES) {
    throw new BazilError(ErrorCode.INVALID, `bad replication policy "${text}": use copies=N (1 to ${MAX_COPIES}, the local store counts as one) or copies=all`)
  }
  return n
}

/**
 * The stores (of `names`, the local one excluded) that should hold `key` under `copies`:
 * all of them for 'all' or when there are too few, else the copies − 1 first in the key's
 * rendezvous order.
 */
export function replicasFor (key: Uint8Array, names: string[], copies: Copies): string[] {
  if (copies === 'all' || copies - 1 >= names.length) return names
  if (copies <= 1) return []
  return rendezvousOrder(key, names).slice(0, copies - 1)
}

/**
 * Where `key` goes when a store `replicasFor` picked keeps failing: the stores it did not pick,
 * in the key's rendezvous order (none under 'all', or when every store is picked).
 */
export function fallbacksFor (key: Uint8Array, names: string[], copies: Copies): string[] {
  if (copies === 'all' || copies - 1 >= names.length) return []
  return rendezvousOrder(key, names).slice(Math.max(0, copies - 1))
}

/** `names` by their rendezvous score for `key` (a hash of store name and key), highest first. */
function rendezvousOrder (key: Uint8Array, names: string[]): string[] {
  const score = (name: string): string => createHash('sha256').update(name).update(key).digest('hex')
  return names.map(name => ({ name, score: score(name) }))
    .sort((a, b) => a.score < b.score ? 1 : a.score > b.score ? -1 : 0)
    .map(r => r.name)
}

export interface OpenStoreOptions {
  homeDir: string
  /** Called with the SFTP host key seen on first use; the caller persists it in the config. */
  onHostKey?: (hostKey: string) => Promise<void>
}

export async function openStore (config: StoreConfig, options: OpenStoreOptions): Promise<OpenedStore> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(config.url)?.[1]?.toLowerCase()
  if (scheme === undefined) {
    const store: FullKV & { close: () => Promise<void> } = await LocalStore.open(config.url)
    return { config, kv: store, close: async () => { await store.close() } }
  }
  if (scheme === 'sftp') {
    const url = new URL(config.url)
    if (url.hostname === '' || url.username === '') throw new BazilError(ErrorCode.INVALID, `an sftp store needs sftp://user@host[:port]/path (got ${config.url})`)
    const keyFile = url.searchParams.get('key') ?? await firstExisting([join(options.homeDir, 'sftp.key'), join(homedir(), '.ssh', 'id_ed25519')])
    if (keyFile === undefined) throw new BazilError(ErrorCode.NOT_FOUND, 'no SSH key for the sftp store: pass ?key=FILE or put one at <data dir>/sftp.key')
    const privateKey = await readFile(keyFile).catch((err: unknown) => { throw fromSystemError(err, `reading the SSH key ${keyFile}`) })
    const path = decodeURIComponent(url.pathname).replace(/^\/~\//, '') || '.'
    const store = await SftpStore.open({
      host: url.hostname,
      port: url.port === '' ? 22 : Number(url.port),
      username: decodeURIComponent(url.username),
      privateKey,
      path,
      hostKey: config.hostKey !== undefined
        ? { known: config.hostKey }
        : { onFirstUse: async key => { await options.onHostKey?.(key.publicKey) } }
    })
    return { config, kv: store, close: async () => { await store.close() } }
  }
  if (scheme === 's3') {
    const url = new URL(config.url)
    if (url.hostname === '') throw new BazilError(ErrorCode.INVALID, `an s3 store needs s3://bucket/prefix (got ${config.url})`)
    const endpoint = url.searchParams.get('endpoint') ?? undefined
    const region = url.searchParams.get('region') ?? undefined
    const store = await S3Store.open({
      bucket: url.hostname,
      prefix: decodeURIComponent(url.pathname).replace(/^\/+/, ''),
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(region !== undefined ? { region } : {}),
      ...await s3Credentials(options.homeDir),
      createBucket: url.searchParams.get('create') === '1'
    })
    await store.check()
    return { config, kv: store, close: async () => { await store.close() } }
  }
  throw new BazilError(ErrorCode.NOT_SUPPORTED, `${scheme} stores are not supported (store "${config.name}")`)
}

async function firstExisting (paths: string[]): Promise<string | undefined> {
  for (const path of paths) {
    if (await access(path).then(() => true, () => false)) return path
  }
  return undefined
}

/** Credentials for S3 stores: the data dir's s3.json if present (it must be 0600), else none (env). */
async function s3Credentials (homeDir: string): Promise<{ credentials?: { accessKeyId: string, secretAccessKey: string } }> {
  const path = join(homeDir, 's3.json')
  let text: string
  try {
    const st = await stat(path)
    if ((st.mode & 0o077) !== 0) throw new BazilError(ErrorCode.PERMISSION, `${path} must be readable by its owner only (chmod 600)`)
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw fromSystemError(err, `reading ${path}`)
  }
  const parsed = JSON.parse(text) as { accessKeyId?: unknown, secretAccessKey?: unknown }
  if (typeof parsed.accessKeyId !== 'string' || typeof parsed.secretAccessKey !== 'string') {
    throw new BazilError(ErrorCode.INVALID, `${path} needs "accessKeyId" and "secretAccessKey"`)
  }
  return { credentials: { accessKeyId: parsed.accessKeyId, secretAccessKey: parsed.secretAccessKey } }
}
