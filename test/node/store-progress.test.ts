/**
 * The progress line `bazil get` and `bazil push` draw on a terminal (src/cli/stores.ts; kept
 * here beside the other store tests): objects done of those known, bytes moved and the rate,
 * redrawn in place, and a final newline only if something was drawn.
 */
import { describe, expect, it } from 'vitest'
import { progressBar } from '../../src/cli/stores.ts'

describe('the get/push progress bar', () => {
  it('shows objects, bytes and rate on one redrawn line', () => {
    const out: string[] = []
    const bar = progressBar(text => { out.push(text) })
    bar.update({ objects: 5, total: 10, missing: 4, bytes: 3 * 1024 * 1024 })
    bar.update({ objects: 10, total: 10, missing: 8, bytes: 6 * 1024 * 1024 })
    bar.done()
    expect(out).toHaveLength(3)
    expect(out[0]).toMatch(/^\r\[#{12}\.{12}\] 5\/10 objects, 4 to copy, 3(\.0)? MiB at .+\/s $/)
    expect(out[1]).toMatch(/^\r\[#{24}\] 10\/10 objects, 8 to copy, 6(\.0)? MiB at .+\/s $/)
    expect(out[2]).toBe('\n')
  })

  it('prints nothing when nothing was drawn', () => {
    const out: string[] = []
    progressBar(text => { out.push(text) }).done()
    expect(out).toEqual([])
  })
})
