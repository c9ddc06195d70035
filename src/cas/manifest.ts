/**
 * File content as a tree of sealed objects. A file's chunks are listed in manifest nodes; a
 * node holds up to FANOUT entries (length, id) and is itself stored in the CAS, so a large file
 * needs no full scan for random access: the reader walks one path down the tree.
 *
 * - depth 0: the root id is the file's only chunk;
 * - depth 1: the root is a leaf node listing chunks; depth n: nodes list nodes of depth n-1.
 * An all-zero id in a leaf is a hole (a run of zero bytes that is not stored).
 *
 * Node format (plaintext, before sealing): "BZM1" | depth u8 | 3 zero bytes | count u32 LE |
 * count × (length u64 LE | id 32 bytes).
 */
import { BazilError, ErrorCode } from '../errors.ts'
import type { KVOptions } from '../kv/kv.ts'
import type { Cas } from './cas.ts'
import { fromHex, toHex } from './seal.ts'
import { LruCache } from '../util/lru.ts'

export const FANOUT = 1024
const MAGIC = 0x314d5a42 // "BZM1" little-endian
const HEADER = 12
const ENTRY = 40
const ID_BYTES = 32
const ZERO_ID = new Uint8Array(ID_BYTES)
const ZEROS = Buffer.alloc(8 * 1024 * 1024)

export interface ContentRef {
  /** Hex id of the root object. */
  root: string
  depth: number
}

export interface ManifestEntry {
  length: number
  id: Uint8Array
}

export function isZeroId (id: Uint8Array): boolean {
  return Buffer.compare(id, ZERO_ID) === 0
}

export function isAllZero (data: Uint8Array): boolean {
  let offset = 0
  while (offset < data.byteLength) {
    const n = Math.min(ZEROS.byteLength, data.byteLength - offset)
    if (Buffer.compare(data.subarray(offset, offset + n), ZEROS.subarray(0, n)) !== 0) return false
    offset += n
  }
  return true
}

export function encodeNode (depth: number, entries: ManifestEntry[]): Uint8Array {
  const buf = Buffer.alloc(HEADER + entries.length * ENTRY)
  buf.writeUInt32LE(MAGIC, 0)
  buf.writeUInt8(depth, 4)
  buf.writeUInt32LE(entries.length, 8)
  let p = HEADER
  for (const e of entries) {
    buf.writeUInt32LE(e.length % 0x100000000, p)
    buf.writeUInt32LE(Math.floor(e.length / 0x100000000), p + 4)
    buf.set(e.id, p + 8)
    p += ENTRY
  }
  return buf
}

export interface DecodedNode {
  depth: number
  ids: Uint8Array[]
  /** starts[i] is the offset of entry i within the node; starts[count] is the node's length. */
  starts: Float64Array
}

export function decodeNode (plain: Uint8Array): DecodedNode {
  const buf = Buffer.from(plain.buffer, plain.byteOffset, plain.byteLength)
  if (buf.byteLength < HEADER || buf.readUInt32LE(0) !== MAGIC) {
    throw new BazilError(ErrorCode.CORRUPT, 'not a manifest node')
  }
  const depth = buf.readUInt8(4)
  const count = buf.readUInt32LE(8)
  if (buf.byteLength !== HEADER + count * ENTRY || depth < 1) {
    throw new BazilError(ErrorCode.CORRUPT, 'manifest node has a bad length or depth')
  }
  const ids: Uint8Array[] = []
  const starts = new Float64Array(count + 1)
  let p = HEADER
  for (let i = 0; i < count; i++) {
    const length = buf.readUInt32LE(p) + buf.readUInt32LE(p + 4) * 0x100000000
    starts[i + 1] = (starts[i] as number) + length
    ids.push(buf.subarray(p + 8, p + ENTRY))
    p += ENTRY
  }
  return { depth, ids, starts }
}

/** Builds the tree for a sequence of chunks (already stored) and returns its root. */
export async function buildTree (cas: Cas, chunks: ManifestEntry[], options?: KVOptions): Promise<ContentRef | null> {
  if (chunks.length === 0) return null
  if (chunks.length === 1 && !isZeroId((chunks[0] as ManifestEntry).id)) {
    return { root: toHex((chunks[0] as ManifestEntry).id), depth: 0 }
  }
  let level = chunks
  let depth = 1
  for (;;) {
    const parents: ManifestEntry[] = []
    for (let i = 0; i < level.length; i += FANOUT) {
      const group = level.slice(i, i + FANOUT)
      const id = await cas.put(encodeNode(depth, group), { ...options, lazy: true })
      parents.push({ id, length: group.reduce((sum, e) => sum + e.length, 0) })
    }
    if (parents.length === 1) return { root: toHex((parents[0] as ManifestEntry).id), depth }
    level = parents
    depth++
  }
}

/** Lists every object id a content tree references (nodes and chunks), with each chunk's plaintext length. */
export async function * walkTree (cas: Cas, ref: ContentRef, options?: KVOptions & { size?: number }): AsyncGenerator<{ id: Uint8Array, node: boolean, length?: number }> {
  if (ref.depth === 0) {
    yield { id: fromHex(ref.root), node: false, length: options?.size }
    return
  }
  const stack: Uint8Array[] = [fromHex(ref.root)]
  while (stack.length > 0) {
    const id = stack.pop() as Uint8Array
    yield { id, node: true }
    const node = decodeNode(await cas.get(id, options))
    for (let i = node.ids.length - 1; i >= 0; i--) {
      const child = node.ids[i] as Uint8Array
      if (node.depth > 1) stack.push(child)
      else if (!isZeroId(child)) yield { id: child, node: false, length: (node.starts[i + 1] as number) - (node.starts[i] as number) }
    }
  }
}

const nodeCache = new LruCache<string, DecodedNode>(4096)
/** Chunks one read may start fetching ahead (they are held by the CAS's cache of opened chunks). */
const MAX_PREFETCH_CHUNKS = 48

/** How far a sequential reader's prefetch has already asked for chunks (see ContentReader.prefetch). */
export interface PrefetchFrontier { to: number }

/** Random access to a content tree. */
export class ContentReader {
  constructor (private readonly cas: Cas, private readonly ref: ContentRef, readonly size: number) {}

  /** Copies content[offset, offset+length) into target at targetOffset; bytes past the content read as zeros. */
  async read (offset: number, length: number, target: Uint8Array, targetOffset: number, options?: KVOptions & { prefetch?: boolean, readAhead?: number, frontier?: PrefetchFrontier }): Promise<void> {
    let pos = offset
    const end = offset + length
    while (pos < end) {
      const found = await this.locate(pos, options)
      if (found === null) {
        target.fill(0, targetOffset + (pos - offset), targetOffset + length)
        return
      }
      const { id, start, chunkLength } = found
      const n = Math.min(end, start + chunkLength) - pos
      const at = targetOffset + (pos - offset)
      if (isZeroId(id)) {
        target.fill(0, at, at + n)
      } else {
        await this.cas.readInto(id, chunkLength, pos - start, n, target, at, options)
      }
      pos += n
    }
    if (options?.prefetch === true) this.prefetch(end, options.readAhead ?? 0, options.signal, options.frontier)
  }

  /**
   * Starts fetching the chunk holding `pos` and the one after it (sequential reads ask for them
   * next), and every chunk up to `ahead` bytes further, all at once: a remote store or a peer
   * then has many requests in flight instead of one per read. `signal` (the reader's) ends them.
   * With a `frontier` (one per sequential reader), the walk starts where the last one ended:
   * re-walking the whole window on every 128 KiB read cost a 1 GiB read ~1 s of main thread.
   */
  private prefetch (pos: number, ahead: number, signal: AbortSignal | undefined, frontier?: PrefetchFrontier): void {
    const options = { signal }
    const until = pos + ahead
    const from = frontier === undefined ? pos : Math.max(pos, frontier.to)
    const resumed = from > pos
    if (resumed && from >= until) return
    if (frontier !== undefined) frontier.to = Math.max(frontier.to, until)
    const fetch = async (): Promise<void> => {
      const wanted: Uint8Array[] = []
      let at = from
      for (let chunks = 0; at < this.size && chunks < MAX_PREFETCH_CHUNKS; chunks++) {
        const found = await this.locate(at, options)
        if (found === null) break
        if (!isZeroId(found.id)) wanted.push(found.id)
        at = found.start + found.chunkLength
        if ((resumed || chunks >= 1) && at >= until) break
      }
      if (frontier !== undefined) frontier.to = Math.max(frontier.to, at)
      await Promise.all(wanted.map(async id => { await this.cas.load(id, options).catch(() => {}) }))
    }
    fetch().catch(() => {})
  }

  private async locate (pos: number, options?: KVOptions): Promise<{ id: Uint8Array, start: number, chunkLength: number } | null> {
    if (pos >= this.size) return null
    const rootId = fromHex(this.ref.root)
    if (this.ref.depth === 0) return { id: rootId, start: 0, chunkLength: this.size }
    let nodeId = rootId
    let base = 0
    for (;;) {
      const node = await this.node(nodeId, options)
      const total = node.starts[node.starts.length - 1] as number
      if (pos - base >= total) return null
      const i = upperBound(node.starts, pos - base) - 1
      const start = base + (node.starts[i] as number)
      const length = (node.starts[i + 1] as number) - (node.starts[i] as number)
      const child = node.ids[i] as Uint8Array
      if (node.depth === 1) return { id: child, start, chunkLength: length }
      nodeId = child
      base = start
    }
  }

  private async node (id: Uint8Array, options?: KVOptions): Promise<DecodedNode> {
    const key = toHex(id)
    const cached = nodeCache.get(key)
    if (cached !== undefined) return cached
    const node = decodeNode(await this.cas.get(id, options))
    nodeCache.set(key, node)
    return node
  }
}

/** Index of the first element > value (starts is sorted ascending). */
function upperBound (starts: Float64Array, value: number): number {
  let lo = 0
  let hi = starts.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if ((starts[mid] as number) <= value) lo = mid + 1
    else hi = mid
  }
  return lo
}
