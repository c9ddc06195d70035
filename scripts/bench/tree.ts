/**
 * A deterministic synthetic source tree for the untar workload: nested directories of
 * text-like files whose sizes follow a source tree's shape (most 1–8 KiB, a tail up to 1 MiB;
 * about 15 KiB on average, like the Linux kernel's), packed once into a tarball. The same seed
 * gives the same tarball byte for byte, so runs on different days untar the same thing.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { run } from './proc.ts'

export interface SourceTree {
  tarball: string
  files: number
  dirs: number
  bytes: number
}

const WORDS = ('alloc buffer chunk clock commit context cursor decode encode entry error fetch flush ' +
  'handle header index inode journal key length lookup manifest mount node offset open parent ' +
  'peer pending queue read record release request result seal signal size store stream sync ' +
  'table token tree update value vector volume write').split(' ')
const EXTENSIONS = ['.c', '.h', '.ts', '.js', '.go', '.py', '.md', '.json', '.txt', '.rs']
const FILES_PER_DIR = 18
const MAX_DEPTH = 6

/** mulberry32: a small, fast, seeded PRNG (uniform in [0, 1)). */
function prng (seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6D2B79F5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A file size drawn log-uniformly from a source-tree-like mixture of ranges. */
function fileSize (random: () => number): number {
  const pick = random()
  const [low, high] = pick < 0.70 ? [1024, 8192]
    : pick < 0.92 ? [8192, 32768]
      : pick < 0.99 ? [32768, 131072]
        : [131072, 1048576]
  return Math.round(low * Math.pow(high / low, random()))
}

function makeLines (random: () => number, count: number): string[] {
  const lines: string[] = []
  for (let i = 0; i < count; i++) {
    const indent = '  '.repeat(Math.floor(random() * 4))
    const words = Array.from({ length: 2 + Math.floor(random() * 9) }, () => WORDS[Math.floor(random() * WORDS.length)] ?? 'x')
    lines.push(`${indent}${words.join(random() < 0.5 ? '_' : ' ')}(${Math.floor(random() * 1e6)});\n`)
  }
  return lines
}

/** Writes the tree under `workDir/tree` and packs it into `workDir/tree.tar`. */
export async function makeSourceTree (workDir: string, fileCount: number, seed = 0xBA211): Promise<SourceTree> {
  const random = prng(seed)
  const root = join(workDir, 'tree')
  const dirs: Array<{ path: string, depth: number }> = [{ path: root, depth: 0 }]
  const dirCount = Math.max(1, Math.round(fileCount / FILES_PER_DIR))
  while (dirs.length < dirCount) {
    // Attach each new directory to a random existing one: a few big hubs, long thin chains.
    const parent = dirs[Math.floor(random() * dirs.length)]
    if (parent === undefined || parent.depth >= MAX_DEPTH) continue
    const name = `${WORDS[Math.floor(random() * WORDS.length)] ?? 'dir'}${dirs.length}`
    dirs.push({ path: join(parent.path, name), depth: parent.depth + 1 })
  }
  for (const dir of dirs) mkdirSync(dir.path, { recursive: true })

  const lines = makeLines(random, 4096)
  let bytes = 0
  for (let i = 0; i < fileCount; i++) {
    const dir = dirs[Math.floor(random() * dirs.length)] ?? dirs[0]
    const ext = EXTENSIONS[Math.floor(random() * EXTENSIONS.length)] ?? '.txt'
    const name = `${WORDS[Math.floor(random() * WORDS.length)] ?? 'file'}_${i}${ext}`
    const size = fileSize(random)
    const parts: string[] = []
    let length = 0
    while (length < size) {
      const line = lines[Math.floor(random() * lines.length)] ?? '\n'
      parts.push(line)
      length += line.length
    }
    writeFileSync(join(dir?.path ?? root, name), parts.join('').slice(0, size))
    bytes += size
  }

  const tarball = join(workDir, 'tree.tar')
  await run('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@1700000000',
    '-cf', tarball, '-C', root, '.'], { timeoutMs: 300_000 })
  return { tarball, files: fileCount, dirs: dirs.length, bytes }
}
