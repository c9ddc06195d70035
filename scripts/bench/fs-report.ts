/**
 * Turns the file-system run's measurements into its section of docs/BENCHMARKS.md: what was
 * measured and how, one table of numbers, one table of Bazil/bindfs ratios against the issue's
 * targets (PASS/MISS).
 */
import type { BenchContext } from './context.ts'
import { describeMachine } from './machine.ts'
import { table, type Section } from './report.ts'
import type { TargetName } from './targets.ts'
import type { SourceTree } from './tree.ts'
import type { UntarTimes } from './workloads.ts'

export interface FsParams {
  bytes: number
  files: number
  /** Longest the write or the read may take before the target counts as failed. */
  deadlineMs: number
  /** Longest the untar may take; past it the untar is stopped and reported as "> deadline". */
  untarDeadlineMs: number
}

export interface TargetResult {
  setup: string
  writeSeconds?: number
  readSeconds?: number
  untar?: UntarTimes
  /** The untar was stopped at its deadline: `untar.tarSeconds` is a lower bound. */
  untarTimedOut?: boolean
  /** How many files a stopped untar had written by then. */
  untarFilesDone?: number
  cachesDropped: boolean
  stats?: string
  error?: string
}

/** A ratio; `atLeast` when it is a lower bound (Bazil's untar was stopped at its deadline). */
interface Ratio { value: number, atLeast: boolean }

function untarTotal (result: TargetResult): number | undefined {
  return result.untar === undefined ? undefined : result.untar.tarSeconds + result.untar.syncSeconds
}

/** Bazil's throughput over the other's: the other's seconds over Bazil's. */
function speedRatio (bazil: number | undefined, other: number | undefined): Ratio | undefined {
  return bazil === undefined || other === undefined ? undefined : { value: other / bazil, atLeast: false }
}

/** Bazil's untar time over the other's; a lower bound if Bazil's was stopped, unknown if the other's was. */
function untarRatio (bazil: TargetResult, other: TargetResult): Ratio | undefined {
  const mine = untarTotal(bazil)
  const theirs = untarTotal(other)
  if (mine === undefined || theirs === undefined || other.untarTimedOut === true) return undefined
  return { value: mine / theirs, atLeast: bazil.untarTimedOut === true }
}

function showRatio (ratio: Ratio | undefined): string {
  return ratio === undefined ? 'n/a' : `${ratio.atLeast ? '> ' : ''}${ratio.value.toFixed(2)}×`
}

/** PASS/MISS; a lower bound decides only when it already misses (the goals here are upper bounds on time). */
function verdict (ratio: Ratio | undefined, pass: (value: number) => boolean): string {
  if (ratio === undefined) return 'n/a'
  if (pass(ratio.value)) return ratio.atLeast ? 'n/a' : '**PASS**'
  return '**MISS**'
}

/** The targets from issue #2, Bazil against bindfs. */
const GOALS = {
  write: 1.0, // Bazil's write throughput ≥ 1.0× bindfs's
  read: 0.3, // Bazil's read throughput ≥ 0.3× bindfs's
  untar: 2.0 // Bazil's untar time ≤ 2× bindfs's
}

export function fsSection (context: BenchContext, params: FsParams, tree: SourceTree, results: Map<TargetName, TargetResult>): Section {
  const names = [...results.keys()]
  const mib = params.bytes / 2 ** 20
  const size = mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`
  const row = (label: string, pick: (result: TargetResult) => string): string[] =>
    [label, ...names.map(name => { const result = results.get(name); return result === undefined ? '—' : pick(result) })]
  const throughput = (seconds: number | undefined): string =>
    seconds === undefined ? '—' : `${(mib / seconds).toFixed(1)} MiB/s (${seconds.toFixed(2)} s)`
  const untarCell = (result: TargetResult, seconds: number | undefined): string =>
    seconds === undefined ? '—' : result.untarTimedOut === true ? `> ${seconds.toFixed(0)} s` : `${seconds.toFixed(2)} s`
  const stoppedAt = (result: TargetResult): string => result.untarTimedOut !== true ? ''
    : ` (stopped; ${result.untarFilesDone?.toLocaleString('en') ?? '?'} of ${tree.files.toLocaleString('en')} files present)`

  const numbers = table(['workload', ...names], [
    row(`sequential write, ${size}`, r => throughput(r.writeSeconds)),
    row(`sequential read after remount, ${size}`, r => throughput(r.readSeconds)),
    row(`untar ${tree.files.toLocaleString('en')} files: \`tar -xf\``, r => untarCell(r, r.untar?.tarSeconds) + stoppedAt(r)),
    row('untar: then `sync`', r => r.untarTimedOut === true ? '—' : untarCell(r, r.untar?.syncSeconds)),
    row('**untar: total**', r => untarCell(r, untarTotal(r)))
  ])

  const bazil = results.get('bazil')
  const versus = (other: TargetResult | undefined): Array<Ratio | undefined> => [
    speedRatio(bazil?.writeSeconds, other?.writeSeconds),
    speedRatio(bazil?.readSeconds, other?.readSeconds),
    bazil === undefined || other === undefined ? undefined : untarRatio(bazil, other)
  ]
  const vsBindfs = versus(results.get('bindfs'))
  const vsPlain = versus(results.get('plain'))
  const goals = table(['issue #2 target', 'Bazil / bindfs', 'goal', 'result', 'Bazil / plain'], [
    ['write throughput', showRatio(vsBindfs[0]), `≥ ${GOALS.write.toFixed(1)}×`, verdict(vsBindfs[0], r => r >= GOALS.write), showRatio(vsPlain[0])],
    ['read throughput', showRatio(vsBindfs[1]), `≥ ${GOALS.read.toFixed(1)}×`, verdict(vsBindfs[1], r => r >= GOALS.read), showRatio(vsPlain[1])],
    ['untar time (total)', showRatio(vsBindfs[2]), `≤ ${GOALS.untar.toFixed(1)}×`, verdict(vsBindfs[2], r => r <= GOALS.untar), showRatio(vsPlain[2])]
  ])

  const notes = [...results].flatMap(([name, result]) => [
    ...(result.stats !== undefined ? [`- ${name}: ${result.stats} (the sequential file was deleted before the untar)`] : []),
    ...(result.error !== undefined ? [`- ${name} **failed** at ${result.error}`] : []),
    ...(result.writeSeconds !== undefined && !result.cachesDropped ? [`- ${name}: caches could NOT be dropped (not root?): the read may be from memory`] : [])
  ])

  const markdown = `## File system: Bazil vs bindfs vs the plain directory

_Measured ${context.startedAt.toISOString().replace('T', ' ').slice(0, 16)} UTC with \`${context.command}\`${context.quick ? ' (quick sizes)' : ''}._

${describeMachine(context.machine)}

How each target was measured, one after the other, on the same disk, with the same data:

- **write**: ${size} of random bytes (pre-generated, warmed up with one untimed write) in 1 MiB
  \`write\`s to a new file, then \`fsync\` and \`close\`; timed from \`open\` until \`close\` returns.
- **read**: that file after an unmount and mount (Bazil: \`bazil stop\` + \`bazil start\`) and
  \`sync; echo 3 > /proc/sys/vm/drop_caches\`, in 1 MiB reads; every byte is compared (untimed).
- **untar**: a deterministic synthetic source tree, ${tree.files.toLocaleString('en')} files in ${tree.dirs} nested directories,
  ${(tree.bytes / 2 ** 20).toFixed(1)} MiB (70 % of files 1–8 KiB, 22 % 8–32 KiB, 7 % 32–128 KiB, 1 % up to 1 MiB),
  unpacked by \`tar -xf\` (as root, so owners and modes are set too) from a tarball in the page
  cache, then a global \`sync\`. The **total** (until the files are on disk) is what the target is
  judged on: without the \`sync\` the plain directory would be measured against RAM while the FUSE
  targets pay for their round trips. The file count is checked afterwards. An untar still
  running after ${params.untarDeadlineMs / 1000} s is stopped and shown as "> ${params.untarDeadlineMs / 1000} s"; a write or read
  past ${params.deadlineMs / 1000} s fails its target.
- Targets: ${names.map(name => `${name} — ${results.get(name)?.setup ?? ''}`).join('; ')}.

${numbers}

${goals}
${notes.length > 0 ? `\n${notes.join('\n')}\n` : ''}`
  return { id: 'fs', markdown }
}
