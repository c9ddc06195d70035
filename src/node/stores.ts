/**
 * The volume's stores besides the local one: their configuration (`<home>/stores.json`, 0600,
 * written atomically) and how a URL becomes a KV. Today a store is a plain local path (another
 * disk, a mounted share); `sftp://` and `s3://` are parsed and refused clearly until their
 * backends are wired in (issue 5).
 */
import { open, readFile, rename } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import { BazilError, ErrorCode, fromSystemError } from '../errors.ts'
import { LocalStore } from '../kv/local.ts'
import type { FullKV, KV } from '../kv/kv.ts'

export interface StoreConfig {
  name: string
  url: string
  addedAt: string
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
  const path = storesFile(homeDir)
  const temp = `${path}.tmp-${process.pid}`
  try {
    const file = await open(temp, 'w', 0o600)
    try {
      await file.writeFile(JSON.stringify(stores, null, 2) + '\n')
      await file.sync()
    } finally {
      await file.close()
    }
    await rename(temp, path)
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

export async function openStore (config: StoreConfig): Promise<OpenedStore> {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(config.url)?.[1]?.toLowerCase()
  if (scheme === undefined) {
    const store: FullKV & { close: () => Promise<void> } = await LocalStore.open(config.url)
    return { config, kv: store, close: async () => { await store.close() } }
  }
  throw new BazilError(ErrorCode.NOT_SUPPORTED, `${scheme} stores are not wired into the daemon yet (store "${config.name}")`)
}
