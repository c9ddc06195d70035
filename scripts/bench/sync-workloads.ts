/**
 * What the sync run writes and reads, the same code for Bazil's mounts and Syncthing's folders:
 * a big file written in 1 MiB pieces and read back with a 1 MiB-buffered stream (compared with
 * what was written), a tree of small files written and read one after another (as `cp -r`
 * would), and the poll that tells when a peer shows new bytes: open, read the edited range,
 * close, compare, every POLL_INTERVAL_MS.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream } from 'node:fs'
import { mkdir, open, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'

const MiB = 1024 * 1024
/** How often a peer's copy is read while waiting for an edit: small next to the times measured. */
export const POLL_INTERVAL_MS = 10

export interface TreeFile { path: string, data: Buffer }

/** `count` files of 1–8 KiB of random bytes, spread over `dirs` directories under `root`. */
export function smallTree (root: string, count: number, dirs: number): TreeFile[] {
  return Array.from({ length: count }, (_unused, i) => ({
    path: join(root, `d${String(i % dirs).padStart(3, '0')}`, `f${String(i).padStart(5, '0')}.bin`),
    data: randomBytes(1024 + Math.floor(Math.random() * 7 * 1024 + 1))
  }))
}

export function treeBytes (files: TreeFile[]): number {
  return files.reduce((sum, file) => sum + file.data.length, 0)
}

export async function writeTree (base: string, files: TreeFile[]): Promise<void> {
  const made = new Set<string>()
  for (const file of files) {
    const dir = dirname(join(base, file.path))
    if (!made.has(dir)) {
      await mkdir(dir, { recursive: true })
      made.add(dir)
    }
    await writeFile(join(base, file.path), file.data)
  }
}

/** Reads every file and checks its bytes; throws on the first difference. */
export async function readTree (base: string, files: TreeFile[]): Promise<void> {
  for (const file of files) {
    const got = await readFile(join(base, file.path))
    if (!got.equals(file.data)) throw new Error(`${file.path} on the peer differs from what was written (${got.length} bytes, ${file.data.length} expected)`)
  }
}

export async function writeBig (path: string, data: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true })
  const handle = await open(path, 'w')
  try {
    for (let offset = 0; offset < data.length; offset += MiB) {
      await handle.write(data, offset, Math.min(MiB, data.length - offset), offset)
    }
  } finally {
    await handle.close()
  }
}

/** Reads the whole file with a 1 MiB-buffered stream and checks it against `expected`. */
export async function readBig (path: string, expected: Buffer): Promise<void> {
  let offset = 0
  for await (const chunk of createReadStream(path, { highWaterMark: MiB })) {
    const piece = chunk as Buffer
    if (!piece.equals(expected.subarray(offset, offset + piece.length))) throw new Error(`${path} differs at ${offset}`)
    offset += piece.length
  }
  if (offset !== expected.length) throw new Error(`${path}: read ${offset} bytes of ${expected.length}`)
}

/** Overwrites `data.length` bytes at `offset` in place (open r+, one write, close). */
export async function overwrite (path: string, offset: number, data: Buffer): Promise<void> {
  const handle = await open(path, 'r+')
  try {
    await handle.write(data, 0, data.length, offset)
  } finally {
    await handle.close()
  }
}

/** Resolves with the number of polls once `path` holds `expected` at `offset`; rejects after `guardMs`. */
export async function pollForBytes (path: string, offset: number, expected: Buffer, guardMs: number): Promise<number> {
  const deadline = Date.now() + guardMs
  const buffer = Buffer.alloc(expected.length)
  for (let polls = 1; ; polls++) {
    try {
      const handle = await open(path, 'r')
      try {
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset)
        if (bytesRead === expected.length && buffer.equals(expected)) return polls
      } finally {
        await handle.close()
      }
    } catch { /* not there yet (a peer may be replacing the file) */ }
    if (Date.now() > deadline) throw new Error(`${path} did not show the edit within ${guardMs / 1000} s`)
    await new Promise(resolve => setTimeout(resolve, POLL_INTERVAL_MS))
  }
}
