/**
 * `npm run bench`: runs the bench runs (one module each) in a fresh working directory on the
 * machine's disk, then rewrites their sections of docs/BENCHMARKS.md. Mounts, daemons and the
 * working directory are cleaned up on success, failure and Ctrl-C alike.
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Cleanup } from './cleanup.ts'
import type { BenchContext, BenchRun } from './context.ts'
import { blockExchangeRun } from './block-exchange.ts'
import { fsRun } from './fs.ts'
import { remoteStoresRun } from './remote-stores.ts'
import { syncRun } from './sync.ts'
import { machineFacts } from './machine.ts'
import { writeSections, type Section } from './report.ts'
import { TARGET_NAMES, type TargetName } from './targets.ts'

/** Every run, in the order they run and appear. Later issues add block exchange, sync, stores. */
const RUNS: BenchRun[] = [fsRun, blockExchangeRun, syncRun, remoteStoresRun]

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

const USAGE = `Usage: npm run bench -- [options]

  --quick             smaller sizes (256 MiB, 2,000 files) for a quick look
  --only LIST         targets to measure, comma-separated: ${TARGET_NAMES.join(',')} (default: all)
  --runs LIST         runs to do, comma-separated: ${RUNS.map(run => run.id).join(',')} (default: all)
  --out FILE          report to rewrite (default: docs/BENCHMARKS.md)
  --help              this text

Runs: ${RUNS.map(run => `\n  ${run.id.padEnd(18)}  ${run.describe}`).join('')}
`

function parseList<T extends string> (value: string | undefined, allowed: readonly T[], what: string): T[] {
  if (value === undefined) return [...allowed]
  const items = value.split(',').map(item => item.trim()).filter(item => item !== '')
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) throw new Error(`unknown ${what} "${item}" (known: ${allowed.join(', ')})`)
  }
  return items as T[]
}

async function main (): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      runs: { type: 'string' },
      out: { type: 'string', default: join(REPO_ROOT, 'docs', 'BENCHMARKS.md') },
      help: { type: 'boolean', default: false }
    }
  })
  if (values.help === true) {
    process.stdout.write(USAGE)
    return 0
  }
  const targets = parseList<TargetName>(values.only, TARGET_NAMES, 'target')
  const runIds = parseList(values.runs, RUNS.map(run => run.id), 'run')
  const out = resolve(values.out ?? 'docs/BENCHMARKS.md')

  const cleanup = new Cleanup()
  // One cleanup for both paths: on Ctrl-C the run fails too (its daemons got the signal) and
  // reaches the `finally` below; two concurrent runAll()s would split the steps, and the
  // signal's exit would cut the other one short (it left the working directory behind).
  let cleaning: Promise<void> | undefined
  const cleanAll = async (): Promise<void> => { await (cleaning ??= cleanup.runAll()) }
  const interrupted = (signal: NodeJS.Signals): void => {
    process.stderr.write(`\n${signal}: cleaning up\n`)
    void cleanAll().finally(() => process.exit(130))
  }
  process.once('SIGINT', interrupted)
  process.once('SIGTERM', interrupted)

  // /var/tmp is on the disk on Debian even where /tmp is a tmpfs.
  const base = existsSync('/var/tmp') ? '/var/tmp' : os.tmpdir()
  const workDir = await mkdtemp(join(base, 'bazil-bench-'))
  cleanup.defer('remove the working directory', async () => { await rm(workDir, { recursive: true, force: true }) })

  const started = Date.now()
  const log = (line: string): void => {
    process.stdout.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`)
  }
  const sections: Section[] = []
  const errors: string[] = []
  try {
    const args = process.argv.slice(2).filter((arg, i, all) => arg !== '--out' && all[i - 1] !== '--out' && !arg.startsWith('--out='))
    const context: BenchContext = {
      command: `npm run bench${args.length > 0 ? ` -- ${args.join(' ')}` : ''}`,
      workDir, quick: values.quick === true, targets, cleanup, startedAt: new Date(started), log,
      machine: await machineFacts(workDir)
    }
    for (const run of RUNS.filter(run => runIds.includes(run.id))) {
      const outcome = await run.run(context)
      sections.push(outcome.section)
      errors.push(...outcome.errors.map(error => `${run.id}: ${error}`))
    }
  } finally {
    await cleanAll()
  }

  await writeSections(out, sections)
  for (const section of sections) process.stdout.write(`\n${section.markdown}\n`)
  log(`wrote ${out}`)
  for (const error of errors) process.stderr.write(`bench error: ${error}\n`)
  return errors.length > 0 ? 1 : 0
}

main().then(code => { process.exitCode = code }, (error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error).stack ?? String(error)}\n`)
  process.exitCode = 1
})
