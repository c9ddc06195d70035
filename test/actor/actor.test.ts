import { describe, it, expect } from 'vitest'
import { Actor } from '../../src/actor/actor.ts'
import { isBazilError } from '../../src/errors.ts'

describe('Actor', () => {
  it('runs jobs one at a time in order', async () => {
    const actor = new Actor({ name: 't' })
    const seen: number[] = []
    let inside = 0
    let maxInside = 0
    await Promise.all([1, 2, 3].map(async n => await actor.ask(async () => {
      inside++; maxInside = Math.max(maxInside, inside)
      await new Promise(resolve => setTimeout(resolve, 5))
      seen.push(n); inside--
    })))
    expect(seen).toEqual([1, 2, 3])
    expect(maxInside).toBe(1)
  })

  it('rejects a full mailbox with BUSY', async () => {
    const actor = new Actor({ name: 't', mailboxSize: 1 })
    const slow = actor.ask(async () => await new Promise(resolve => setTimeout(resolve, 20)))
    const queued = actor.ask(() => 1)
    await expect(actor.ask(() => 2)).rejects.toSatisfy(e => isBazilError(e, 'BUSY'))
    await slow; expect(await queued).toBe(1)
  })

  it('drops an aborted queued job and stop() rejects queued work with CLOSED', async () => {
    const actor = new Actor({ name: 't' })
    const ac = new AbortController()
    const first = actor.ask(async () => await new Promise(resolve => setTimeout(resolve, 20)))
    let ran = false
    const aborted = actor.ask(() => { ran = true }, { signal: ac.signal })
    ac.abort()
    await expect(aborted).rejects.toSatisfy(e => isBazilError(e, 'ABORTED'))
    const queued = actor.ask(() => 3)
    const stopping = actor.stop()
    await expect(queued).rejects.toSatisfy(e => isBazilError(e, 'CLOSED'))
    await stopping; await first
    expect(ran).toBe(false)
    await expect(actor.ask(() => 4)).rejects.toSatisfy(e => isBazilError(e, 'CLOSED'))
  })
})
