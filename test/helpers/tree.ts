/**
 * A directory tree as plain data, for comparing mounts: path → kind and a digest of the
 * content (files), the target (symlinks) or nothing (directories). Also random operations on
 * a mounted tree for convergence tests, each one an ordinary file-system call.
 */
import { createHash } from 'node:crypto'
import { lstat, mkdir, readFile, readdir, readlink, rename, rm, truncate, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Rng } from './rng.ts'

/** With `content: false`, files are listed by size only (nothing is read). */
export async function snapshot (root: string, options: { content?: boolean } = {}): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name)
      const rel = `${prefix}/${name}`
      const st = await statOnce(path)
      if (st === undefined) continue // removed since readdir (sync is running)
      if (st.isDirectory()) {
        out[rel] = 'dir'
        await walk(path, rel)
      } else if (st.isSymbolicLink()) {
        out[rel] = `link ${await readlink(path)}`
      } else {
        out[rel] = options.content === false ? `file ? ${st.size}` : `file ${createHash('sha256').update(await readFile(path)).digest('hex').slice(0, 16)} ${st.size}`
      }
    }
  }
  await walk(root, '')
  return out
}

/**
 * lstat, with what sync running underneath may cause: ENOENT (removed since readdir: undefined)
 * and one EIO when sync replaced a name by an entry of another type while the kernel cached
 * the old inode (the kernel drops it, and the retry looks the name up again; see
 * ARCHITECTURE.md, known limits).
 */
async function statOnce (path: string): Promise<Awaited<ReturnType<typeof lstat>> | undefined> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await lstat(path)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return undefined
      if (code !== 'EIO' || attempt > 0) throw err
    }
  }
}

/** Digests of every file's content in a snapshot. */
export function contents (tree: Record<string, string>): Set<string> {
  return new Set(Object.values(tree).filter(v => v.startsWith('file ')).map(v => v.split(' ')[1] as string))
}

export function digest (bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16)
}

/**
 * One random operation on the tree at `root` (create, write, truncate, rename a file or a
 * directory, delete, mkdir); returns a description, and the digest of what it wrote if it wrote.
 * Failures a user would see (a race with sync, ENOTEMPTY) are returned, not thrown.
 */
export async function randomOperation (root: string, rng: Rng, tag: string): Promise<{ op: string, wrote?: { path: string, digest: string } }> {
  // Names only: reading content that is on a peer cut off now would fail (EIO).
  const tree = await snapshot(root, { content: false })
  const paths = Object.keys(tree)
  const dirs = ['', ...paths.filter(p => tree[p] === 'dir')]
  const files = paths.filter(p => tree[p]?.startsWith('file '))
  const name = (): string => rng.pick(['a', 'b', 'c', 'notes.txt', 'd'])
  const choice = rng.int(0, 9)
  try {
    if (choice <= 1) {
      const path = `${rng.pick(dirs)}/${name()}`
      if (tree[path] === undefined) await mkdir(join(root, path))
      return { op: `mkdir ${path}` }
    }
    if (choice <= 5) {
      const path = files.length > 0 && rng.chance(0.5) ? rng.pick(files) : `${rng.pick(dirs)}/${name()}`
      if (tree[path] === 'dir') return { op: `skip write onto dir ${path}` }
      const bytes = Buffer.from(`${tag} ${rng.int(0, 1e9)} `.repeat(rng.int(1, 400)))
      await writeFile(join(root, path), bytes)
      return { op: `write ${path} (${bytes.length} bytes)`, wrote: { path, digest: digest(bytes) } }
    }
    if (choice === 6 && files.length > 0) {
      const path = rng.pick(files)
      await truncate(join(root, path), rng.int(0, 100))
      return { op: `truncate ${path}` }
    }
    if (choice === 7 && paths.length > 0) {
      const from = rng.pick(paths)
      const to = `${rng.pick(dirs)}/${name()}`
      if (to === from || to.startsWith(from + '/') || tree[to] === 'dir') return { op: `skip rename ${from} ${to}` }
      await rename(join(root, from), join(root, to))
      return { op: `rename ${from} ${to}` }
    }
    if (choice === 8 && paths.length > 0) {
      const path = rng.pick(paths)
      await rm(join(root, path), { recursive: true, force: true })
      return { op: `rm -r ${path}` }
    }
    return { op: 'nothing' }
  } catch (err) {
    return { op: `failed: ${(err as Error).message}` }
  }
}
