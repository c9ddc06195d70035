/**
 * What local-directory stores hold, for end-to-end tests of the replication policy: the object
 * names of a store's `objects/<hh>/<rest>` tree, and how many of a set of stores hold each
 * object of a node's local store.
 */
import { readdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { BazilMount } from './mount.ts'

/** The object names (hex keys) a local-directory store holds. */
export async function objectsIn (storeDir: string): Promise<Set<string>> {
  const out = new Set<string>()
  for (const shard of await readdir(join(storeDir, 'objects'))) {
    for (const name of await readdir(join(storeDir, 'objects', shard))) if (/^[0-9a-f]+$/.test(name)) out.add(shard + name)
  }
  return out
}

/** How many of `stores` (local-directory stores) hold each object of the node's local store. */
export async function copiesOf (node: BazilMount, stores: string[]): Promise<Map<string, number>> {
  const held = await Promise.all(stores.map(objectsIn))
  return new Map([...await objectsIn(join(node.home, 'store'))].map(id => [id, held.filter(s => s.has(id)).length]))
}
