/**
 * `bazil store add|list|rm`, `bazil get PATH` and `bazil push PATH STORE`: parse-free actions
 * over the control socket. PATH may be a path in the mounted volume (absolute or relative to
 * the current directory) or a volume path starting with '/'.
 */
import { isAbsolute, relative, resolve, sep } from 'node:path'
import type { PolicyReport, StoreInfo, TransferProgress, TransferReport } from '../node/api.ts'
import { ExitCode } from './exit.ts'
import { formatCount, humanBytes } from './format.ts'
import { print, printJson, withDaemon } from './commands.ts'
import type { GlobalOptions, JsonOption } from './commands.ts'

export interface TransferOptions extends JsonOption { dryRun?: boolean }

export async function storeAddCommand (global: GlobalOptions, name: string, url: string, options: JsonOption): Promise<number> {
  const stores = await withDaemon(global, async client => await client.storeAdd(name, url))
  if (options.json === true) printJson(stores)
  else print(`Added store ${name}; new writes are replicated to it, existing content with \`bazil push / ${name}\`.\n${formatStores(stores)}`)
  return ExitCode.OK
}

export async function storeListCommand (global: GlobalOptions, options: JsonOption): Promise<number> {
  const [stores, status] = await withDaemon(global, async client => [await client.storeList(), await client.status()] as const)
  if (options.json === true) printJson(stores)
  else print(`${formatStores(stores)}\n${formatPolicy({ copies: status.copies ?? 'all', stores: stores.length, underReplicated: status.underReplicated ?? 0 })}`)
  return ExitCode.OK
}

/** `bazil store policy [copies=N|copies=all]`: shows the policy, or sets it. */
export async function storePolicyCommand (global: GlobalOptions, setting: string | undefined, options: JsonOption): Promise<number> {
  const report = await withDaemon(global, async client => await client.storePolicy(setting))
  if (options.json === true) printJson(report)
  else print(formatPolicy(report))
  return ExitCode.OK
}

export function formatPolicy (report: PolicyReport): string {
  const { copies, stores, underReplicated } = report
  const rule = copies === 'all'
    ? 'copies=all: every object goes to every store'
    : `copies=${copies}: each object is kept by ${copies} store${copies === 1 ? '' : 's'}, the local one included`
  const short = copies !== 'all' && copies > stores ? ` (only ${stores} store${stores === 1 ? '' : 's'}: each gets everything)` : ''
  const state = underReplicated === 0 ? 'every object meets it' : `${formatCount(underReplicated)} objects under-replicated`
  return `policy ${rule}${short}; ${state}`
}

export async function storeRemoveCommand (global: GlobalOptions, name: string, options: JsonOption): Promise<number> {
  const stores = await withDaemon(global, async client => await client.storeRemove(name))
  if (options.json === true) printJson(stores)
  else print(`Removed store ${name} (its objects stay where they are).\n${formatStores(stores)}`)
  return ExitCode.OK
}

export async function getCommand (global: GlobalOptions, path: string, options: TransferOptions): Promise<number> {
  return await transferCommand(global, options, async (client, mount, onProgress) =>
    await client.get(volumePath(path, mount), { dryRun: options.dryRun === true, onProgress }), 'the local store')
}

export async function pushCommand (global: GlobalOptions, path: string, store: string, options: TransferOptions): Promise<number> {
  return await transferCommand(global, options, async (client, mount, onProgress) =>
    await client.push(volumePath(path, mount), store, { dryRun: options.dryRun === true, onProgress }), `store ${store}`)
}

type Client = Parameters<Parameters<typeof withDaemon>[1]>[0]

async function transferCommand (
  global: GlobalOptions,
  options: TransferOptions,
  run: (client: Client, mount: string, onProgress: ((p: TransferProgress) => void) | undefined) => Promise<TransferReport>,
  where: string
): Promise<number> {
  // A progress bar on a terminal's stderr; scripts (--json, pipes) get the result only.
  const bar = options.json !== true && process.stderr.isTTY ? progressBar() : undefined
  try {
    const report = await withDaemon(global, async client => await run(client, (await client.status()).mount, bar?.update))
    bar?.done()
    if (options.json === true) printJson(report)
    else print(formatTransfer(report, where))
    return ExitCode.OK
  } catch (err) {
    bar?.done()
    throw err
  }
}

/** One line on stderr: a bar over the objects seen so far, counts, bytes and rate. */
export function progressBar (write: (text: string) => void = text => { process.stderr.write(text) }): { update: (p: TransferProgress) => void, done: () => void } {
  const started = Date.now()
  let drawn = false
  return {
    update: p => {
      const width = 24
      const filled = p.total === 0 ? 0 : Math.round(width * p.objects / p.total)
      const seconds = Math.max((Date.now() - started) / 1000, 0.001)
      write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${formatCount(p.objects)}/${formatCount(p.total)} objects, ${formatCount(p.missing)} to copy, ${humanBytes(p.bytes)} at ${humanBytes(p.bytes / seconds)}/s `)
      drawn = true
    },
    done: () => { if (drawn) write('\n') }
  }
}

/** A path in the mount (or relative to the cwd inside it) → the volume path; '/x' stays as is otherwise. */
export function volumePath (path: string, mount: string, cwd = process.cwd()): string {
  const absolute = isAbsolute(path) ? path : resolve(cwd, path)
  const rel = relative(mount, absolute)
  if (rel === '') return '/'
  if (!rel.startsWith('..') && !isAbsolute(rel)) return '/' + rel.split(sep).join('/')
  return isAbsolute(path) ? path : '/' + path
}

function formatTransfer (report: TransferReport, where: string): string {
  const verb = report.dryRun ? 'would copy' : 'copied'
  const lines = [`${formatCount(report.files)} files, ${formatCount(report.objects)} objects: ${verb} ${formatCount(report.missing)} objects (${humanBytes(report.bytes)}) to ${where}; ${formatCount(report.objects - report.missing)} were there already`]
  if (report.missing > 0) {
    for (const s of report.sources ?? []) lines.push(`  ${s.store} holds ${formatCount(s.objects)} of them (${humanBytes(s.bytes)})`)
    if ((report.unavailable ?? 0) > 0) lines.push(`  ${formatCount(report.unavailable ?? 0)} are in no store or reachable peer: a get cannot fetch them now`)
  }
  return lines.join('\n')
}

export function formatStores (stores: StoreInfo[]): string {
  const rows = stores.map(s => [
    s.name,
    s.state,
    s.latencyMs === undefined ? '-' : `${s.latencyMs.toFixed(1)} ms`,
    s.bytesPerMs === undefined ? '-' : `${humanBytes(s.bytesPerMs * 1000)}/s`,
    s.pending === 0 ? '-' : `${formatCount(s.pending)} to copy`,
    s.objects === undefined ? '-' : `${formatCount(s.objects)} / ${humanBytes(s.bytes ?? 0)}`,
    s.url + (s.lastError !== undefined ? `  (last error: ${s.lastError})` : '')
  ])
  const header = ['name', 'state', 'latency', 'throughput', 'backlog', 'holds', 'url']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] as string).length)))
  return [header, ...rows].map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i] as number)).join('  ')).join('\n')
}
