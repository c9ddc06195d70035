/**
 * The timed file-system workloads. Each returns seconds and checks its own result (outside the
 * timed part), so a target that is fast because it is wrong fails instead of winning.
 */
import { open } from 'node:fs/promises'
import { run, secondsSince, syncAll } from './proc.ts'

export const BLOCK_SIZE = 1 << 20

/** Sequential write of `data` in 1 MiB writes, then fsync and close; timed from open until close returns. */
export async function sequentialWrite (file: string, data: Buffer): Promise<number> {
  const start = process.hrtime.bigint()
  const handle = await open(file, 'w')
  try {
    for (let offset = 0; offset < data.length; offset += BLOCK_SIZE) {
      const length = Math.min(BLOCK_SIZE, data.length - offset)
      const { bytesWritten } = await handle.write(data, offset, length, offset)
      if (bytesWritten !== length) throw new Error(`short write at ${offset}: ${bytesWritten} of ${length}`)
    }
    await handle.sync()
  } finally {
    await handle.close()
  }
  return secondsSince(start)
}

/**
 * Sequential read in 1 MiB reads until end of file, compared with `expected`. Only open, the
 * reads and close are timed; the comparison is not.
 */
export async function sequentialRead (file: string, expected: Buffer): Promise<number> {
  const block = Buffer.allocUnsafe(BLOCK_SIZE)
  let elapsed = 0
  let start = process.hrtime.bigint()
  const handle = await open(file, 'r')
  elapsed += secondsSince(start)
  try {
    let position = 0
    for (;;) {
      start = process.hrtime.bigint()
      const { bytesRead } = await handle.read(block, 0, BLOCK_SIZE, position)
      elapsed += secondsSince(start)
      if (bytesRead === 0) break
      if (!block.subarray(0, bytesRead).equals(expected.subarray(position, position + bytesRead))) {
        throw new Error(`read back different bytes at offset ${position}`)
      }
      position += bytesRead
    }
    if (position !== expected.length) throw new Error(`read ${position} bytes, expected ${expected.length}`)
  } finally {
    start = process.hrtime.bigint()
    await handle.close()
    elapsed += secondsSince(start)
  }
  return elapsed
}

export interface UntarTimes {
  /** `tar -xf` alone, until it exits. */
  tarSeconds: number
  /** The `sync` right after it: writing back what tar left in the page caches. */
  syncSeconds: number
}

/** Untars `tarball` into `dest` (which must exist), then `sync`s; checks the file count. */
export async function untar (tarball: string, dest: string, expectedFiles: number, timeoutMs: number): Promise<UntarTimes> {
  let start = process.hrtime.bigint()
  await run('tar', ['-xf', tarball, '-C', dest], { timeoutMs })
  const tarSeconds = secondsSince(start)
  start = process.hrtime.bigint()
  await syncAll()
  const syncSeconds = secondsSince(start)

  const files = await countFiles(dest, timeoutMs)
  if (files !== expectedFiles) throw new Error(`untar left ${files} files, expected ${expectedFiles}`)
  return { tarSeconds, syncSeconds }
}

/** Regular files under `dir`, as `find -type f` counts them. */
export async function countFiles (dir: string, timeoutMs = 60_000): Promise<number> {
  const { stdout } = await run('find', [dir, '-type', 'f'], { timeoutMs })
  return stdout.split('\n').filter(line => line !== '').length
}
