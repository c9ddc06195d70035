/**
 * The writer child of test/node/crash.test.ts: writes `<dir>/<prefix>-<i>.bin` for i = 0, 1, ...
 * with size and content derived from i only (`crashFile`), fsyncs each file and only then prints
 * "synced <i>", forever, until it is killed or a write fails. The parent may SIGKILL the daemon at
 * any moment; every index printed must survive.
 *
 * Run: node --import tsx test/helpers/crash-writer.ts DIR PREFIX
 */
import { open } from 'node:fs/promises'
import { join } from 'node:path'
import { crashFile } from './crash-files.ts'

const [dir, prefix] = process.argv.slice(2)
if (dir === undefined || prefix === undefined) {
  process.stderr.write('usage: crash-writer DIR PREFIX\n')
  process.exit(2)
}
for (let i = 0; ; i++) {
  const { name, data } = crashFile(prefix, i)
  const handle = await open(join(dir, name), 'w')
  await handle.write(data)
  // Bazil promises that fsync of a file also makes its directory entry durable, so the writer
  // does not fsync the directory: a stricter test than a POSIX-careful program needs.
  await handle.sync()
  process.stdout.write(`synced ${i}\n`)
  await handle.close()
}
