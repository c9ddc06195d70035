/**
 * The shape of the house (STYLE.md): dependencies point one way, `cli → node → fs → cas → kv`
 * (errors, util and actor are shared leaves; net and protocols sit beside fs; sync, the pure
 * vector-time-pair core, imports only errors and util), fuse-native is imported only by
 * src/fs/fuse.ts, and nothing outside the CLI writes to the console.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative, dirname, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'

const root = resolve(new URL('../..', import.meta.url).pathname)

function files (dir: string): string[] {
  return readdirSync(dir).flatMap(name => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : /\.(ts|mjs)$/.test(name) ? [path] : []
  })
}

const sources = [...files(join(root, 'src')), ...files(join(root, 'protocols'))]

function imports (file: string): string[] {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)]
    .map(m => m[1] ?? m[2] ?? '')
}

/** The layer of a repo file: its first folder under src/ (or 'protocols'). */
function layer (file: string): string {
  const rel = relative(root, file).split('/')
  return rel[0] === 'src' ? (rel.length > 2 ? rel[1] as string : 'root') : rel[0] as string
}

/** What each layer may import from (besides itself and the shared leaves). */
const allowed: Record<string, string[]> = {
  // The peer store (src/kv/peer.ts) is a KV over the block-exchange protocol.
  kv: ['protocols', 'net'],
  cas: ['kv'],
  fs: ['cas', 'kv'],
  net: ['kv', 'cas', 'protocols'],
  protocols: ['kv', 'cas', 'net', 'sync'],
  node: ['fs', 'cas', 'kv', 'net', 'protocols', 'sync'],
  cli: ['node', 'fs', 'cas', 'kv', 'net'],
  actor: [],
  util: [],
  sync: []
}
const leaves = ['root', 'util', 'actor']

describe('code layout', () => {
  it('keeps dependencies pointing one way', () => {
    const wrong: string[] = []
    for (const file of sources) {
      const from = layer(file)
      for (const spec of imports(file)) {
        if (!spec.startsWith('.')) continue
        const to = layer(resolve(dirname(file), spec))
        if (to === from || leaves.includes(to)) continue
        if (!(allowed[from] ?? []).includes(to)) wrong.push(`${relative(root, file)} imports ${spec} (${from} → ${to})`)
      }
    }
    expect(wrong).toEqual([])
  })

  it('keeps the sync core pure: errors, util and itself, no packages but node: builtins', () => {
    const wrong: string[] = []
    for (const file of sources.filter(f => layer(f) === 'sync')) {
      for (const spec of imports(file)) {
        const to = spec.startsWith('.') ? layer(resolve(dirname(file), spec)) : undefined
        const ok = to === undefined ? spec.startsWith('node:') : ['sync', 'root', 'util'].includes(to)
        if (!ok) wrong.push(`${relative(root, file)} imports ${spec}`)
      }
    }
    expect(sources.some(f => layer(f) === 'sync')).toBe(true)
    expect(wrong).toEqual([])
  })

  it('imports fuse-native only in src/fs/fuse.ts', () => {
    const users = sources.filter(f => imports(f).includes('fuse-native')).map(f => relative(root, f))
    expect(users).toEqual(['src/fs/fuse.ts'])
  })

  it('writes to the console only from the CLI', () => {
    const users = sources
      .filter(f => !relative(root, f).startsWith('src/cli/'))
      .filter(f => /\bconsole\.(log|error|warn|info)\(/.test(readFileSync(f, 'utf8')))
      .map(f => relative(root, f))
    expect(users).toEqual([])
  })
})
