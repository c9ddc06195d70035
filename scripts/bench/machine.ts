/**
 * Facts about the machine a bench ran on, so numbers in docs/BENCHMARKS.md can be read against
 * the hardware and software that produced them.
 */
import { readFile } from 'node:fs/promises'
import os from 'node:os'
import { tryRun, run } from './proc.ts'

export interface MachineFacts {
  cpu: string
  cores: number
  memoryGiB: number
  kernel: string
  os: string
  node: string
  /** File system and device of the bench's working directory. */
  disk: string
  bindfs: string
  /** 1-minute load average when the bench started: other work on the machine skews numbers. */
  loadAverage: number
}

export async function machineFacts (workDir: string): Promise<MachineFacts> {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round(os.totalmem() / 2 ** 30 * 10) / 10,
    kernel: `${os.type()} ${os.release()}`,
    os: await osName(),
    node: process.version,
    disk: await diskOf(workDir),
    bindfs: await firstLine('bindfs', ['--version']),
    loadAverage: os.loadavg()[0] ?? 0
  }
}

export function describeMachine (facts: MachineFacts): string {
  return [
    `- CPU: ${facts.cpu}, ${facts.cores} cores; memory ${facts.memoryGiB} GiB`,
    `- OS: ${facts.os}, kernel ${facts.kernel}; Node ${facts.node}; ${facts.bindfs}`,
    `- Working directory: ${facts.disk}`,
    `- Load average (1 min) when the bench started: ${facts.loadAverage.toFixed(2)}` +
      (facts.loadAverage > facts.cores / 2 ? ' — the machine was busy with other work: expect noisy numbers' : '')
  ].join('\n')
}

async function osName (): Promise<string> {
  try {
    const text = await readFile('/etc/os-release', 'utf8')
    return /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(text)?.[1] ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

async function diskOf (dir: string): Promise<string> {
  try {
    const { stdout } = await run('findmnt', ['-n', '-o', 'FSTYPE,SOURCE,TARGET', '-T', dir])
    const [fsType, source, target] = stdout.trim().split(/\s+/)
    return `${dir} on ${fsType ?? '?'} (${source ?? '?'} mounted at ${target ?? '?'})`
  } catch {
    return dir
  }
}

async function firstLine (cmd: string, args: string[]): Promise<string> {
  if (!(await tryRun(cmd, args))) return `${cmd}: not installed`
  const { stdout } = await run(cmd, args)
  return stdout.split('\n')[0]?.trim() ?? cmd
}
