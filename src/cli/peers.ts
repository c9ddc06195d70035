/**
 * `bazil invite`, `bazil join CODE`, `bazil peers [remove ID]`: pairing your own devices and
 * seeing them. invite and peers talk to the running daemon; join runs without one (on a new
 * data dir) and starts a short-lived node to reach the inviting device.
 */
import { BazilError, ErrorCode, isBazilError } from '../errors.ts'
import { adoptOwner, initHome, openHome, resolveHome } from '../node/home.ts'
import type { PeerInfo } from '../node/api.ts'
import { lockHolder } from '../node/lock.ts'
import { resolve } from 'node:path'
import { ExitCode } from './exit.ts'
import { formatCount, humanBytes } from './format.ts'
import { print, printJson, withDaemon } from './commands.ts'
import type { GlobalOptions, JsonOption } from './commands.ts'

export interface InviteOptions extends JsonOption { ttl?: string }

export async function inviteCommand (global: GlobalOptions, options: InviteOptions): Promise<number> {
  const minutes = Number(options.ttl ?? '10')
  if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) throw new BazilError(ErrorCode.INVALID, '--ttl takes minutes, from 1 to 1440')
  const invite = await withDaemon(global, async client => await client.invite(minutes * 60_000))
  if (options.json === true) printJson(invite)
  else {
    print(`On your other device, run:\n\n  bazil join ${invite.code}\n`)
    print(`The code works once, until ${new Date(invite.expiresAt).toLocaleTimeString()}. Anyone with it can join: keep it to yourself.`)
  }
  return ExitCode.OK
}

export async function joinCommand (global: GlobalOptions, code: string, options: JsonOption): Promise<number> {
  const dir = global.home !== undefined ? resolve(global.home) : resolveHome()
  let home
  let fresh = false
  try {
    home = await openHome(dir)
  } catch (err) {
    if (!isBazilError(err, ErrorCode.NOT_INITIALIZED)) throw err
    home = await initHome(dir)
    fresh = true
  }
  const running = await lockHolder(home.lockPath)
  if (running !== undefined) throw new BazilError(ErrorCode.LOCKED, `stop the daemon (pid ${running}) first: bazil stop`)
  const { joinWithCode } = await import('../node/network.ts')
  let result
  try {
    result = await joinWithCode(home, code)
  } catch (err) {
    if (isBazilError(err, ErrorCode.PERMISSION)) throw new BazilError(ErrorCode.PERMISSION, 'the code is wrong, expired or already used: make a new one with `bazil invite`', { cause: err })
    if (isBazilError(err, ErrorCode.TIMEOUT) || isBazilError(err, ErrorCode.UNAVAILABLE)) {
      throw new BazilError(ErrorCode.UNAVAILABLE, 'cannot reach the inviting device: is its daemon running, and is it on a network this one reaches?', { cause: err })
    }
    throw err
  }
  const joined = await adoptOwner(home, result.ownerSecret, { ...result.volume, createdAt: new Date().toISOString() }, { fresh })
  if (options.json === true) printJson({ home: joined.dir, volume: joined.volume, pairedWith: result.peerName })
  else print(`Paired with ${result.peerName}: this device now holds volume ${joined.volume.name}. Start it with \`bazil start\`.`)
  return ExitCode.OK
}

export async function peersCommand (global: GlobalOptions, options: JsonOption): Promise<number> {
  const peers = await withDaemon(global, async client => await client.peers())
  if (options.json === true) printJson(peers)
  else print(formatPeers(peers))
  return ExitCode.OK
}

export async function peersRemoveCommand (global: GlobalOptions, peerId: string, options: JsonOption): Promise<number> {
  const peers = await withDaemon(global, async client => await client.peersRemove(peerId))
  if (options.json === true) printJson(peers)
  else print(`Forgot ${peerId}.\n${formatPeers(peers)}`)
  return ExitCode.OK
}

export async function peersRenameCommand (global: GlobalOptions, peerId: string, name: string, options: JsonOption): Promise<number> {
  const peers = await withDaemon(global, async client => await client.peersRename(peerId, name))
  if (options.json === true) printJson(peers)
  else print(`Renamed ${peerId} to ${name}.\n${formatPeers(peers)}`)
  return ExitCode.OK
}

export function formatPeers (peers: PeerInfo[]): string {
  if (peers.length === 0) return 'No paired or nearby devices. Pair one with `bazil invite` here and `bazil join CODE` there.'
  const rows = peers.map(p => [
    p.name ?? '-',
    p.peerId.length > 16 ? `…${p.peerId.slice(-12)}` : p.peerId,
    p.paired ? 'paired' : 'nearby',
    p.connected ? 'connected' : '-',
    p.lastSeen ?? '-',
    p.rttMs === undefined ? '-' : `${p.rttMs.toFixed(1)} ms`,
    `${humanBytes(p.bytesSent)} / ${humanBytes(p.bytesReceived)}`,
    p.addrs.slice(0, 2).join(' ') + (p.addrs.length > 2 ? ` (+${formatCount(p.addrs.length - 2)})` : '')
  ])
  const header = ['name', 'peer', 'trust', 'link', 'last seen', 'rtt', 'sent / received', 'addresses']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map(r => (r[i] as string).length)))
  return [header, ...rows].map(r => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i] as number)).join('  ')).join('\n')
}
