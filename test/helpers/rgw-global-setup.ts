/**
 * vitest globalSetup: one Ceph RGW cluster (test/helpers/rgw.ts) for the whole test run, handed
 * to test files as `inject('rgw')` (use `sharedRgw()`), and stopped when the run ends, failed
 * tests or not.
 *
 * It is started only if one of the test files about to run mentions `helpers/rgw` (directly;
 * a file that reaches the cluster through another helper still works, as `sharedRgw()` then
 * starts one for its own worker), and never with BAZIL_NO_RGW=1. A cluster that fails to start
 * is reported to the tests that need it, not to the whole run.
 */
import { readFile } from 'node:fs/promises'
import type { TestProject } from 'vitest/node'
import { bootRgw, rgwUnavailable } from './rgw.ts'

export async function setup (project: TestProject): Promise<(() => Promise<void>) | undefined> {
  if (process.env.BAZIL_NO_RGW !== undefined && process.env.BAZIL_NO_RGW !== '' && process.env.BAZIL_NO_RGW !== '0') {
    project.provide('rgw', { unavailable: 'BAZIL_NO_RGW is set' })
    return undefined
  }
  if (!await someFileNeedsRgw(project)) return undefined
  const unavailable = rgwUnavailable()
  if (unavailable !== undefined) {
    project.provide('rgw', { unavailable })
    return undefined
  }
  try {
    const rgw = await bootRgw()
    const { endpoint, region, accessKeyId, secretAccessKey } = rgw
    project.provide('rgw', { endpoint, region, accessKeyId, secretAccessKey })
    return rgw.stop
  } catch (err) {
    project.provide('rgw', { error: (err as Error).message })
    return undefined
  }
}

/** True unless none of the test files this run selects mentions the helper. */
async function someFileNeedsRgw (project: TestProject): Promise<boolean> {
  // The CLI's file filters are not public API (vitest 4.1 keeps them here); without them the
  // glob selects every test file, which errs on the side of starting the cluster.
  const filters = (project.vitest as unknown as { filenamePattern?: string[] }).filenamePattern
  const { testFiles } = await project.globTestFiles(filters)
  const sources = await Promise.all(testFiles.map(async file => await readFile(file, 'utf8').catch(() => 'helpers/rgw')))
  return sources.some(source => source.includes('helpers/rgw'))
}
