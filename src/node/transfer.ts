/**
 * `bazil get PATH` and `bazil push PATH STORE`: move the content of a file or subtree between
 * stores, deduplicated (only objects the destination lacks move; manifest nodes included) and
 * resumable (an interrupted run simply finds fewer objects missing next time). `dryRun` counts
 * what would move without moving it, and with `sources` also where it would come from: which
 * stores hold each missing object, and how many no store holds.
 */
import { walkTree } from '../cas/manifest.ts'
import { SEAL_OVERHEAD, toHex } from '../cas/seal.ts'
import type { Cas } from '../cas/cas.ts'
import type { Volume } from '../fs/volume.ts'
import { isDir, isFile } from '../fs/meta.ts'
import type { Entry } from '../fs/meta.ts'
import { hasCapability } from '../kv/kv.ts'
import type { KV, KVHas } from '../kv/kv.ts'
import { BazilError, ErrorCode, throwIfAborted } from '../errors.ts'
import type { TransferProgress, TransferReport } from './api.ts'

export type { TransferReport } from './api.ts'

/** Every file entry at or below `path` in the volume. */
export function filesUnder (volume: Volume, path: string): Entry[] {
  const start = volume.meta.get(volume.resolve(path))
  if (isFile(start)) return [start]
  if (!isDir(start)) return []
  const out: Entry[] = []
  const stack = [start.ino]
  const seen = new Set<number>()
  while (stack.length > 0) {
    const ino = stack.pop() as number
    for (const child of volume.meta.children.get(ino)?.values() ?? []) {
      const entry = volume.meta.entries.get(child)
      if (entry === undefined || seen.has(child)) continue
      seen.add(child)
      if (isDir(entry)) stack.push(child)
      else if (isFile(entry)) out.push(entry)
    }
  }
  return out
}

/**
 * Copies every object of the files under `path` that `destination` lacks, reading through
 * `cas` (which verifies) and writing the sealed bytes fetched from `source`.
 */
export async function transfer (options: {
  volume: Volume
  cas: Cas
  path: string
  source: KV
  destination: KV
  dryRun?: boolean
  /** For a dry run: the stores to ask which of the missing objects they hold. */
  sources?: Array<{ name: string, kv: KV }>
  signal?: AbortSignal
  onProgress?: (progress: TransferProgress) => void
}): Promise<TransferReport> {
  const { volume, cas, source, destination } = options
  if (!hasCapability(destination, 'has')) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'the destination store cannot say what it has')
  const files = filesUnder(volume, options.path)
  const seen = new Set<string>()
  const report: TransferReport = { files: files.length, objects: 0, missing: 0, bytes: 0, dryRun: options.dryRun === true }
  const sources = options.dryRun === true ? options.sources?.flatMap(s => hasCapability(s.kv, 'has') ? [{ name: s.name, kv: s.kv }] : []) : undefined
  const held = sources?.map(s => ({ store: s.name, objects: 0, bytes: 0 }))
  if (held !== undefined) { report.sources = held; report.unavailable = 0 }
  let lastProgress = 0
  const progress = (force = false): void => {
    const now = Date.now()
    if (options.onProgress === undefined || (!force && now - lastProgress < 200)) return
    lastProgress = now
    options.onProgress({ objects: report.objects, total: seen.size, missing: report.missing, bytes: report.bytes })
  }
  for (const entry of files) {
    progress()
    if (entry.content == null) continue
    for await (const { id, length } of walkTree(cas, entry.content, { signal: options.signal, size: entry.size })) {
      throwIfAborted(options.signal)
      const hex = toHex(id)
      if (seen.has(hex)) continue
      seen.add(hex)
      report.objects++
      if (await destination.has(id, { signal: options.signal })) continue
      report.missing++
      if (options.dryRun === true) {
        const bytes = (length ?? 0) + SEAL_OVERHEAD
        report.bytes += bytes
        if (sources !== undefined && held !== undefined) {
          const answers = await Promise.all(sources.map(async s => await holds(s.kv, id, options.signal)))
          answers.forEach((yes, i) => {
            const tally = held[i]
            if (yes && tally !== undefined) { tally.objects++; tally.bytes += bytes }
          })
          if (!answers.includes(true)) report.unavailable = (report.unavailable ?? 0) + 1
        }
        continue
      }
      const sealed = await source.get(id, { signal: options.signal })
      cas.checkSealed(id, sealed) // a bad copy is never spread
      await destination.put(id, sealed, { signal: options.signal })
      report.bytes += sealed.byteLength
      progress()
    }
  }
  progress(true)
  return report
}

/** Whether `kv` holds `id`; a store that cannot answer now (down, unreachable) does not. */
async function holds (kv: KV & KVHas, id: Uint8Array, signal?: AbortSignal): Promise<boolean> {
  try {
    return await kv.has(id, { signal })
  } catch (err) {
    if (signal?.aborted === true) throw err
    return false
  }
}
