/**
 * A file being written: its new bytes live in a sparse staging file on disk (a small file's
 * first 64 KiB in memory, so RAM stays bounded), on top of the content it had when writing began (the base, read from the CAS). Extents
 * record which ranges the staging file holds; `baseLimit` hides base bytes cut off by a
 * truncate. Reading merges the three sources: staged bytes, base bytes, zeros.
 */
import { readSync, writeSync } from 'node:fs'
import { open } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { unlink } from 'node:fs/promises'
import { fromSystemError } from '../errors.ts'
import type { ContentReader } from '../cas/manifest.ts'

type Extent = [start: number, end: number]

/** Writes that stay within the first 64 KiB are kept in memory; past that, a staging file. */
const MEMORY_LIMIT = 64 * 1024

export class StagedFile {
  size: number
  private baseLimit: number
  private extents: Extent[] = []
  /** Staged bytes of a small file, until a write reaches past MEMORY_LIMIT. */
  private memory: Buffer | null = null
  private handle: FileHandle | null = null
  private path: string | null = null

  private constructor (
    private readonly stagingDir: string,
    private base: ContentReader | null,
    baseSize: number
  ) {
    this.size = baseSize
    this.baseLimit = baseSize
  }

  static async create (stagingDir: string, base: ContentReader | null, baseSize: number): Promise<StagedFile> {
    return new StagedFile(stagingDir, base, baseSize)
  }

  /** Moves staged bytes from memory to a staging file on disk. */
  private async spill (): Promise<FileHandle> {
    if (this.handle !== null) return this.handle
    const path = join(this.stagingDir, `${Date.now()}-${randomBytes(6).toString('hex')}`)
    try {
      const handle = await open(path, 'w+', 0o600)
      this.handle = handle
      this.path = path
      const memory = this.memory
      if (memory !== null) {
        for (const [start, end] of this.extents) writeAll(handle.fd, memory, start, end - start, start)
        this.memory = null
      }
      return handle
    } catch (err) {
      throw fromSystemError(err, 'creating a staging file')
    }
  }

  /** True when the content differs from the base (written or truncated). */
  get dirty (): boolean {
    return this.extents.length > 0 || this.baseLimit !== this.size || (this.base?.size ?? 0) !== this.size
  }

  /** True when every byte of the content is in the staging file (a new or emptied file written from 0 without gaps). */
  get stagedOnly (): boolean {
    const first = this.extents[0]
    return this.baseLimit === 0 && this.extents.length === 1 && first !== undefined && first[0] === 0 && first[1] === this.size
  }

  async write (buffer: Uint8Array, length: number, position: number): Promise<number> {
    try {
      if (this.handle === null && position + length <= MEMORY_LIMIT) {
        this.memory = withCapacity(this.memory, position + length)
        this.memory.set(buffer.subarray(0, length), position)
      } else {
        // Synchronous on purpose: a page-cache write of at most 128 KiB takes tens of
        // microseconds, while a trip through libuv's thread pool can wait behind chunk-store
        // fsyncs for milliseconds, and the kernel sends a sequential writer's requests one by one.
        writeAll((await this.spill()).fd, buffer, 0, length, position)
      }
    } catch (err) {
      throw fromSystemError(err, 'writing to a staging file')
    }
    this.addExtent(position, position + length)
    if (position + length > this.size) this.size = position + length
    return length
  }

  async truncate (size: number): Promise<void> {
    if (size < this.size) {
      this.baseLimit = Math.min(this.baseLimit, size)
      this.extents = this.extents.filter(([start]) => start < size).map(([start, end]) => [start, Math.min(end, size)])
      try {
        await this.handle?.truncate(size)
      } catch (err) {
        throw fromSystemError(err, 'truncating a staging file')
      }
    }
    this.size = size
  }

  /** Reads up to length bytes at position (clipped to the size); returns the count. */
  async read (target: Uint8Array, length: number, position: number): Promise<number> {
    const n = Math.max(0, Math.min(length, this.size - position))
    if (n > 0) await this.readAt(position, n, target)
    return n
  }

  /** Fills target[0..length) with content [offset, offset+length); the range must lie within size. */
  async readAt (offset: number, length: number, target: Uint8Array): Promise<void> {
    const end = offset + length
    let pos = offset
    for (const [start, stop] of this.extents) {
      if (stop <= pos) continue
      if (start >= end) break
      if (start > pos) {
        await this.readBase(pos, start - pos, target, pos - offset)
        pos = start
      }
      const n = Math.min(stop, end) - pos
      await this.readStaged(pos, n, target, pos - offset)
      pos += n
    }
    if (pos < end) await this.readBase(pos, end - pos, target, pos - offset)
  }

  /** After a commit: the committed content becomes the base and the staging file empties. */
  async rebase (base: ContentReader | null): Promise<void> {
    this.base = base
    this.baseLimit = this.size
    this.extents = []
    try {
      await this.handle?.truncate(0)
    } catch (err) {
      throw fromSystemError(err, 'truncating a staging file')
    }
  }

  async close (): Promise<void> {
    this.memory = null
    await this.handle?.close().catch(() => {})
    if (this.path !== null) await unlink(this.path).catch(() => {})
  }

  private async readStaged (pos: number, n: number, target: Uint8Array, at: number): Promise<void> {
    if (this.handle === null) {
      if (this.memory === null) target.fill(0, at, at + n)
      else target.set(this.memory.subarray(pos, pos + n), at)
      return
    }
    let done = 0
    while (done < n) {
      const bytesRead = n - done > 1024 * 1024
        ? (await this.handle.read(target, at + done, n - done, pos + done)).bytesRead
        : readSync(this.handle.fd, target, at + done, n - done, pos + done)
      if (bytesRead === 0) {
        target.fill(0, at + done, at + n)
        return
      }
      done += bytesRead
    }
  }

  private async readBase (pos: number, n: number, target: Uint8Array, at: number): Promise<void> {
    const fromBase = this.base === null ? 0 : Math.max(0, Math.min(n, this.baseLimit - pos))
    if (fromBase > 0) await (this.base as ContentReader).read(pos, fromBase, target, at)
    if (fromBase < n) target.fill(0, at + fromBase, at + n)
  }

  private addExtent (start: number, end: number): void {
    const last = this.extents[this.extents.length - 1]
    if (last === undefined || start > last[1]) {
      this.extents.push([start, end])
      return
    }
    if (start >= last[0]) {
      last[1] = Math.max(last[1], end)
      return
    }
    // Out of order write: merge into the sorted list.
    const merged: Extent[] = []
    let cur: Extent = [start, end]
    let placed = false
    for (const ext of this.extents) {
      if (ext[1] < cur[0]) merged.push(ext)
      else if (ext[0] > cur[1]) {
        if (!placed) { merged.push(cur); placed = true }
        merged.push(ext)
      } else cur = [Math.min(cur[0], ext[0]), Math.max(cur[1], ext[1])]
    }
    if (!placed) merged.push(cur)
    this.extents = merged
  }
}

/**
 * A buffer of at least `needed` bytes (a power of two from 16 KiB up to MEMORY_LIMIT) holding
 * `memory`'s bytes: most small files need far less than 64 KiB, and a zeroed 64 KiB per file
 * was a good part of an untar's garbage. Bytes outside the extents are never read.
 */
function withCapacity (memory: Buffer | null, needed: number): Buffer {
  if (memory !== null && memory.byteLength >= needed) return memory
  let capacity = 16 * 1024
  while (capacity < needed) capacity *= 2
  const grown = Buffer.allocUnsafe(Math.min(capacity, MEMORY_LIMIT))
  if (memory !== null) memory.copy(grown)
  return grown
}

function writeAll (fd: number, buffer: Uint8Array, offset: number, length: number, position: number): void {
  let done = 0
  while (done < length) done += writeSync(fd, buffer, offset + done, length - done, position + done)
}
