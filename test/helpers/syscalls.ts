/**
 * System calls Node does not expose (xattrs, mkfifo, mknod), made by one long-lived python3
 * child that answers JSON lines, so a test can issue thousands of them cheaply. Every answer is
 * either a value or the errno name (e.g. 'ENODATA'), never message text.
 */
import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import { afterAll, onTestFinished } from 'vitest'

/** Linux values of the setxattr(2) flags. */
export const XATTR_CREATE = 1
export const XATTR_REPLACE = 2

export type SysResult<T> = { ok: true, value: T } | { ok: false, code: string }

export interface Syscalls {
  /** flags: 0, or XATTR_CREATE / XATTR_REPLACE below. */
  setxattr: (path: string, name: string, value: Buffer, flags?: number) => Promise<SysResult<null>>
  getxattr: (path: string, name: string) => Promise<SysResult<Buffer>>
  /** user.* names only, sorted. */
  listxattr: (path: string) => Promise<SysResult<string[]>>
  removexattr: (path: string, name: string) => Promise<SysResult<null>>
  mkfifo: (path: string, mode: number) => Promise<SysResult<null>>
  /** Character device (S_IFCHR) with the given device number. */
  mknodChar: (path: string, mode: number, major: number, minor: number) => Promise<SysResult<null>>
  /** user.* xattrs of many paths (no symlink following), value hex by name; errors per path. */
  dumpxattrs: (paths: string[]) => Promise<SysResult<Record<string, Record<string, string> | string>>>
  close: () => Promise<void>
}

const SERVER = String.raw`
import sys, os, json, errno, stat
def ename(e): return errno.errorcode.get(e.errno, str(e.errno))
def user(names): return sorted(n for n in names if n.startswith('user.'))
def handle(op, a):
    if op == 'setxattr': os.setxattr(a[0], a[1], bytes.fromhex(a[2]), a[3]); return None
    if op == 'getxattr': return os.getxattr(a[0], a[1]).hex()
    if op == 'listxattr': return user(os.listxattr(a[0]))
    if op == 'removexattr': os.removexattr(a[0], a[1]); return None
    if op == 'mkfifo': os.mkfifo(a[0], a[1]); return None
    if op == 'mknodChar': os.mknod(a[0], a[1] | stat.S_IFCHR, os.makedev(a[2], a[3])); return None
    if op == 'dumpxattrs':
        out = {}
        for p in a[0]:
            try:
                out[p] = {n: os.getxattr(p, n, follow_symlinks=False).hex() for n in user(os.listxattr(p, follow_symlinks=False))}
            except OSError as e:
                out[p] = ename(e)
        return out
    raise ValueError('unknown op ' + op)
for line in sys.stdin:
    req = json.loads(line)
    try:
        res = {'id': req['id'], 'ok': True, 'value': handle(req['op'], req['args'])}
    except OSError as e:
        res = {'id': req['id'], 'ok': False, 'code': ename(e)}
    sys.stdout.write(json.dumps(res) + '\n')
    sys.stdout.flush()
`

interface Reply { id: number, ok: boolean, value?: unknown, code?: string }

export function startSyscalls (): Syscalls {
  const child = spawn('python3', ['-c', SERVER], { stdio: ['pipe', 'pipe', 'pipe'] })
  const pending = new Map<number, (reply: Reply) => void>()
  let nextId = 1
  let stderr = ''
  let failure: Error | undefined
  child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d })
  createInterface({ input: child.stdout }).on('line', (line) => {
    const reply = JSON.parse(line) as Reply
    pending.get(reply.id)?.(reply)
    pending.delete(reply.id)
  })
  const fail = (err: Error): void => {
    failure = err
    for (const resolve of pending.values()) resolve({ id: -1, ok: false, code: 'HELPER_DIED' })
    pending.clear()
  }
  child.on('error', fail)
  child.on('exit', (code) => { fail(new Error(`python3 helper exited ${String(code)}: ${stderr}`)) })

  const call = async <T>(op: string, args: unknown[]): Promise<SysResult<T>> => {
    if (failure !== undefined) throw failure
    const id = nextId++
    const reply = await new Promise<Reply>((resolve) => {
      pending.set(id, resolve)
      child.stdin.write(JSON.stringify({ id, op, args }) + '\n')
    })
    if (reply.code === 'HELPER_DIED') throw failure ?? new Error('python3 helper died')
    return reply.ok ? { ok: true, value: reply.value as T } : { ok: false, code: reply.code ?? 'UNKNOWN' }
  }
  const unit = async (op: string, args: unknown[]): Promise<SysResult<null>> => await call<null>(op, args)

  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    child.removeAllListeners('exit')
    child.stdin.end()
    if (child.exitCode === null) await new Promise((resolve) => child.once('exit', resolve))
  }
  try { onTestFinished(close) } catch {
    try { afterAll(close) } catch { /* caller closes */ }
  }
  child.unref()

  return {
    setxattr: async (path, name, value, flags = 0) =>
      await unit('setxattr', [path, name, value.toString('hex'), flags]),
    getxattr: async (path, name) => {
      const result = await call<string>('getxattr', [path, name])
      return result.ok ? { ok: true, value: Buffer.from(result.value, 'hex') } : result
    },
    listxattr: async (path) => await call<string[]>('listxattr', [path]),
    removexattr: async (path, name) => await unit('removexattr', [path, name]),
    mkfifo: async (path, mode) => await unit('mkfifo', [path, mode]),
    mknodChar: async (path, mode, major, minor) => await unit('mknodChar', [path, mode, major, minor]),
    dumpxattrs: async (paths) => await call('dumpxattrs', [paths]),
    close
  }
}
