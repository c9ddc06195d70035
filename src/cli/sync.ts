/**
 * `bazil sync [--wait]` and `bazil conflicts`: how far each paired device is behind, both
 * ways, and the conflicts sync left visible in the volume (resolved with ordinary file
 * operations: delete or rename the version you do not want).
 */
import { BazilError, ErrorCode } from '../errors.ts'
import type { ConflictReport, SyncReport } from '../node/api.ts'
import { ExitCode } from './exit.ts'
import { print, printJson, withDaemon } from './commands.ts'
import type { GlobalOptions, JsonOption } from './commands.ts'

export interface SyncOptions extends JsonOption { wait?: boolean, timeout?: string }

export async function syncCommand (global: GlobalOptions, options: SyncOptions): Promise<number> {
  const seconds = Number(options.timeout ?? '60')
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 24 * 3600) throw new BazilError(ErrorCode.INVALID, '--timeout takes seconds, from 1 to 86400')
  const report = await withDaemon(global, async client => {
    if (client.syncStatus === undefined) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'this daemon does not sync')
    return await client.syncStatus(options.wait === true ? { timeoutMs: seconds * 1000 } : undefined)
  })
  if (options.json === true) printJson(report)
  else print(formatSync(report))
  return ExitCode.OK
}

export async function conflictsCommand (global: GlobalOptions, options: JsonOption): Promise<number> {
  const conflicts = await withDaemon(global, async client => {
    if (client.conflicts === undefined) throw new BazilError(ErrorCode.NOT_SUPPORTED, 'this daemon does not sync')
    return await client.conflicts()
  })
  if (options.json === true) printJson(conflicts)
  else print(formatConflicts(conflicts))
  return ExitCode.OK
}

export function formatSync (report: SyncReport): string {
  const lines = [`change log at ${report.head}; ${report.conflicts} conflict${report.conflicts === 1 ? '' : 's'}; ${report.waiting} waiting`]
  if (report.peers.length === 0) lines.push('No paired devices. Pair one with `bazil invite` here and `bazil join CODE` there.')
  for (const peer of report.peers) {
    const state = peer.connected ? (peer.behind === 0 && peer.peerBehind === 0 ? 'in sync' : 'syncing') : 'not connected'
    lines.push(`${peer.peerId.slice(-12).padStart(12)}  ${state.padEnd(13)}  to receive: ${peer.behind}  to send: ${peer.peerBehind}` +
      (peer.lastSyncAt !== undefined ? `  last sync ${peer.lastSyncAt}` : '') + (peer.lastError !== undefined ? `  (last error: ${peer.lastError})` : ''))
  }
  return lines.join('\n')
}

export function formatConflicts (conflicts: ConflictReport[]): string {
  if (conflicts.length === 0) return 'No conflicts.'
  const lines = conflicts.map(c => c.kind === 'copy'
    ? `${c.path}  (the other version of ${c.original ?? 'a file since deleted or moved'})`
    : `${c.path}  (wants the name ${c.wants ?? '?'}, which another entry has)`)
  lines.push('', 'Keep the version you want: delete or rename the other (the change syncs like any other).')
  return lines.join('\n')
}
