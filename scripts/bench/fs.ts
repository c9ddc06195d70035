/**
 * The file-system run (issue #2): Bazil, bindfs and the plain directory side by side, one
 * target after the other on the same disk, with the same data:
 *   write — 1 GiB of random bytes in 1 MiB writes, fsync, close (timed until close returns);
 *   read  — that file after a remount and dropped caches, in 1 MiB reads;
 *   untar — a synthetic source tree of ~8,000 files with `tar -xf`, then `sync`.
 * `--quick` uses 256 MiB and 2,000 files. Formatting of the section lives in fs-report.ts.
 */
import { randomFillSync } from 'node:crypto'
import { mkdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { BenchContext, BenchRun, RunOutcome } from './context.ts'
import { fsSection, type FsParams, type TargetResult } from './fs-report.ts'
import { DeadlineError, dropCaches, syncAll, withDeadline } from './proc.ts'
import { openTarget, type Target, type TargetName } from './targets.ts'
import { makeSourceTree, type SourceTree } from './tree.ts'
import { countFiles, sequentialRead, sequentialWrite, untar } from './workloads.ts'

// Deadlines keep the bench near 5 minutes when a target is very slow: a write or read that
// misses its deadline fails the target; an untar that does is reported as "> deadline".
const FULL: FsParams = { bytes: 1 << 30, files: 8000, deadlineMs: 180_000, untarDeadlineMs: 150_000 }
const QUICK: FsParams = { bytes: 256 << 20, files: 2000, deadlineMs: 60_000, untarDeadlineMs: 60_000 }
/** Measured in this order; Bazil last, so a hang there cannot cost the baselines. */
const ORDER: TargetName[] = ['plain', 'bindfs', 'bazil']

export const fsRun: BenchRun = {
  id: 'fs',
  describe: 'sequential write/read and untar on Bazil, bindfs and the plain directory',
  run: async (context: BenchContext): Promise<RunOutcome> => {
    const params = context.quick ? QUICK : FULL
    const { log, workDir } = context

    log(`fs: generating ${params.bytes / 2 ** 20} MiB of random data and a tree of ${params.files} files`)
    const data = randomData(params.bytes)
    const tree = await makeSourceTree(join(workDir, 'fs-tree'), params.files)
    await warmUp(workDir, data, log)

    const results = new Map<TargetName, TargetResult>()
    for (const name of ORDER.filter(name => context.targets.includes(name))) {
      log(`fs: ${name}`)
      const result = await measureTarget(name, context, params, data, tree)
      results.set(name, result)
      if (result.error !== undefined) log(`fs: ${name} failed: ${result.error}`)
    }
    const errors = [...results].flatMap(([name, result]) => result.error === undefined ? [] : [`${name}: ${result.error}`])
    return { section: fsSection(context, params, tree, results), errors }
  }
}

/** Random (incompressible, undeduplicable) bytes; filling them also faults in every page. */
function randomData (bytes: number): Buffer {
  const data = Buffer.allocUnsafe(bytes)
  const slice = 64 << 20
  for (let offset = 0; offset < bytes; offset += slice) randomFillSync(data, offset, Math.min(slice, bytes - offset))
  return data
}

/**
 * Fresh guest RAM is slow to touch the first time on these VMs: one untimed write of the data
 * through the page cache warms enough of it that the first target is not penalized.
 */
async function warmUp (workDir: string, data: Buffer, log: (line: string) => void): Promise<void> {
  log('fs: warming up (one untimed write of the data)')
  const file = join(workDir, 'warm-up.bin')
  await sequentialWrite(file, data)
  await rm(file)
  await syncAll()
}

async function measureTarget (name: TargetName, context: BenchContext, params: FsParams, data: Buffer, tree: SourceTree): Promise<TargetResult> {
  const result: TargetResult = { setup: '', cachesDropped: false }
  const targetDir = join(context.workDir, `fs-${name}`)
  let target: Target | undefined
  let step = 'setup'
  try {
    target = await openTarget(name, targetDir, context.cleanup)
    result.setup = target.setup
    const file = join(target.dir, 'sequential.bin')

    step = 'write'
    await syncAll()
    result.writeSeconds = await withDeadline(`${name} write`, params.deadlineMs, sequentialWrite(file, data))
    context.log(`fs: ${name} write ${(params.bytes / 2 ** 20 / result.writeSeconds).toFixed(1)} MiB/s`)

    step = 'remount'
    await target.remount()
    result.cachesDropped = await dropCaches()
    step = 'read'
    result.readSeconds = await withDeadline(`${name} read`, params.deadlineMs, sequentialRead(file, data))
    context.log(`fs: ${name} read ${(params.bytes / 2 ** 20 / result.readSeconds).toFixed(1)} MiB/s`)
    await rm(file)

    step = 'untar'
    await measureUntar(name, target.dir, params, tree, result, context.log)

    step = 'status'
    result.stats = await target.stats()
  } catch (error) {
    result.error = `${step}: ${(error as Error).message}`
  } finally {
    try {
      await target?.close()
    } catch (error) {
      result.error ??= `close: ${(error as Error).message}`
    }
    await rm(targetDir, { recursive: true, force: true }).catch(() => {})
  }
  return result
}

/** Untars into a fresh `untar/` under `dir`; past the deadline, records a lower bound instead. */
async function measureUntar (name: TargetName, dir: string, params: FsParams, tree: SourceTree, result: TargetResult, log: (line: string) => void): Promise<void> {
  const dest = join(dir, 'untar')
  await mkdir(dest)
  await syncAll()
  await readFile(tree.tarball) // the tarball comes from the page cache for every target alike
  // tar's own timeout is a little longer, so the deadline is what reports it.
  const unpacking = untar(tree.tarball, dest, tree.files, params.untarDeadlineMs + 2000)
  try {
    result.untar = await withDeadline(`${name} untar`, params.untarDeadlineMs, unpacking)
    log(`fs: ${name} untar ${result.untar.tarSeconds.toFixed(2)} s + sync ${result.untar.syncSeconds.toFixed(2)} s`)
  } catch (error) {
    if (!(error instanceof DeadlineError)) throw error
    result.untar = { tarSeconds: error.seconds, syncSeconds: 0 }
    result.untarTimedOut = true
    await unpacking.catch(() => {}) // tar is killed 2 s later
    result.untarFilesDone = await countFiles(dest, 30_000).catch(() => undefined)
    log(`fs: ${name} untar stopped after ${error.seconds} s, ${result.untarFilesDone ?? '?'} files present`)
  }
}
