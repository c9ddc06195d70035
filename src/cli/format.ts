/**
 * How the CLI shows things to people: human sizes, and the text forms of the status and check
 * reports. Pure functions returning strings; printing happens in the commands.
 */
import type { CheckReport, StatusReport } from '../node/api.ts'

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] as const

/** 0 B, 999 B, 1.5 KiB, 12.3 MiB, 120 GiB: binary units, three significant digits at most. */
export function humanBytes (bytes: number): string {
  let value = bytes
  let unit = 0
  while (Math.abs(value) >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  const digits = unit === 0 || Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2
  const fixed = value.toFixed(digits)
  const text = digits > 0 ? fixed.replace(/\.?0+$/, '') : fixed
  return `${unit === 0 ? bytes : text} ${UNITS[unit] ?? 'B'}`
}

export function formatCount (n: number): string {
  return n.toLocaleString('en-US')
}

export function formatStatus (status: StatusReport): string {
  return table([
    ['volume', status.volume],
    ['mount', status.mount],
    ['data dir', status.home],
    ['pid', String(status.pid)],
    ['peer id', status.peerId],
    ['started', status.startedAt],
    ['files', formatCount(status.files)],
    ['dirs', formatCount(status.directories)],
    ['logical', `${humanBytes(status.logicalBytes)} (sum of file sizes)`],
    ['stored', `${humanBytes(status.storedBytes)} in ${formatCount(status.chunks)} chunks (local store, sealed)`],
    ['peers', (status.peers ?? []).length === 0
      ? 'none paired or nearby'
      : (status.peers ?? []).map(p => `${p.name ?? p.peerId.slice(-8)} (${p.paired ? 'paired' : 'nearby'}${p.connected ? ', connected' : ''})`).join(', ')],
    ...(status.copies !== undefined && (status.replication ?? []).length > 0
      ? [['policy', `copies=${status.copies}; ${(status.underReplicated ?? 0) === 0 ? 'met' : `${formatCount(status.underReplicated ?? 0)} objects under-replicated`}`] as [string, string]]
      : []),
    ...(status.replication ?? []).map(r => [
      `→ ${r.store}`,
      (r.pending === 0 ? 'replicated' : `${formatCount(r.pending)} objects to copy`) +
        ((r.rerouted ?? 0) > 0 ? `; ${formatCount(r.rerouted ?? 0)} sent to other stores instead (it kept failing)` : '') +
        (r.lastError !== undefined ? ` (last error: ${r.lastError})` : '')
    ] as [string, string]),
    ...(status.sync === undefined
      ? []
      : [
          ['sync', `change log at ${formatCount(status.sync.head)}; ${status.sync.conflicts} conflicts (bazil conflicts); ${status.sync.waiting} waiting`] as [string, string],
          ...status.sync.peers.map(p => {
            const name = (status.peers ?? []).find(q => q.peerId === p.peerId)?.name ?? p.peerId.slice(-8)
            const state = !p.connected ? 'not connected' : p.behind === 0 && p.peerBehind === 0 ? 'in sync' : 'syncing'
            return [`⇄ ${name}`, `${state}: ${formatCount(p.behind)} changes to receive, ${formatCount(p.peerBehind)} to send`] as [string, string]
          })
        ])
  ])
}

export function formatCheck (report: CheckReport): string {
  const lines: string[] = []
  for (const problem of report.problems) {
    const where = problem.paths.length > 0 ? problem.paths.join(', ') : '(no file refers to it)'
    lines.push(`${problem.problem} chunk ${problem.chunk}: ${where}`)
  }
  const checked = `checked ${formatCount(report.files)} files: ${formatCount(report.chunksChecked)} chunks, ${humanBytes(report.bytesChecked)}`
  const count = report.problems.length
  lines.push(report.ok && count === 0 ? `${checked}; no problems` : `${checked}; ${count} problem${count === 1 ? '' : 's'}`)
  return lines.join('\n')
}

function table (rows: Array<[string, string]>): string {
  const width = Math.max(...rows.map(([key]) => key.length))
  return rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join('\n')
}
