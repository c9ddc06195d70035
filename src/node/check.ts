/**
 * `bazil check` and the volume figures of `bazil status`: walk every file, read and verify
 * every object its content references, and name the paths a missing or corrupt chunk belongs to.
 */
import { isBazilError } from '../errors.ts'
import { walkTree } from '../cas/manifest.ts'
import { toHex } from '../cas/seal.ts'
import type { Cas } from '../cas/cas.ts'
import type { Volume } from '../fs/volume.ts'
import { ROOT_INO, isDir, isFile } from '../fs/meta.ts'
import type { CheckProblem, CheckReport } from './api.ts'

export function volumeStats (volume: Volume): { files: number, directories: number, logicalBytes: number } {
  let files = 0
  let directories = 0
  let logicalBytes = 0
  for (const entry of volume.meta.entries.values()) {
    if (isDir(entry)) directories++
    else if (isFile(entry)) { files++; logicalBytes += entry.size }
  }
  return { files, directories, logicalBytes }
}

/** Every path of every entry (hard links give several), from the root. */
export function pathsByIno (volume: Volume): Map<number, string[]> {
  const paths = new Map<number, string[]>([[ROOT_INO, ['/']]])
  const stack: Array<[number, string]> = [[ROOT_INO, '']]
  while (stack.length > 0) {
    const [ino, prefix] = stack.pop() as [number, string]
    for (const [name, child] of volume.meta.children.get(ino) ?? []) {
      const path = `${prefix}/${name}`
      const list = paths.get(child)
      if (list === undefined) paths.set(child, [path])
      else list.push(path)
      const entry = volume.meta.entries.get(child)
      if (entry !== undefined && isDir(entry)) stack.push([child, path])
    }
  }
  return paths
}

export async function checkVolume (volume: Volume, cas: Cas, options?: { signal?: AbortSignal }): Promise<CheckReport> {
  const paths = pathsByIno(volume)
  const problems = new Map<string, CheckProblem>()
  const verified = new Set<string>()
  let files = 0
  let chunksChecked = 0
  let bytesChecked = 0
  const report = (id: string, problem: CheckProblem['problem'], ino: number): void => {
    const known = problems.get(id) ?? { chunk: id, problem, paths: [] }
    for (const p of paths.get(ino) ?? [`(entry ${ino})`]) if (!known.paths.includes(p)) known.paths.push(p)
    problems.set(id, known)
  }
  for (const entry of [...volume.meta.entries.values()]) {
    if (!isFile(entry)) continue
    files++
    if (entry.content == null) continue
    try {
      for await (const { id } of walkTree(cas, entry.content, options)) {
        const hex = toHex(id)
        if (problems.has(hex)) { report(hex, (problems.get(hex) as CheckProblem).problem, entry.ino); continue }
        if (verified.has(hex)) continue
        try {
          bytesChecked += await cas.verify(id, options)
          chunksChecked++
          verified.add(hex)
        } catch (err) {
          if (isBazilError(err, 'NOT_FOUND')) report(hex, 'missing', entry.ino)
          else if (isBazilError(err, 'CORRUPT')) report(hex, 'corrupt', entry.ino)
          else throw err
        }
      }
    } catch (err) {
      // A manifest node that cannot be read stops the walk of this file; it was reported above
      // if it was the node itself, otherwise report the root.
      if (isBazilError(err, 'NOT_FOUND') || isBazilError(err, 'CORRUPT')) {
        if (![...problems.values()].some(p => p.paths.some(x => (paths.get(entry.ino) ?? []).includes(x)))) {
          report(entry.content.root, isBazilError(err, 'NOT_FOUND') ? 'missing' : 'corrupt', entry.ino)
        }
      } else throw err
    }
  }
  const list = [...problems.values()]
  return { files, chunksChecked, bytesChecked, problems: list, ok: list.length === 0 }
}
