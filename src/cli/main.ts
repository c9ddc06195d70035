/**
 * The `bazil` command line: builds the commander program (commands, options, help) and runs it,
 * turning every outcome into an exit code — 0 ok, 1 failure, 2 usage, 3 not initialized,
 * 4 not running — with human sentences on stderr and no stack trace unless DEBUG is set.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError } from 'commander'
import type { GlobalOptions, JsonOption, StartOptions } from './commands.ts'
import type { TransferOptions } from './stores.ts'
import type { InviteOptions } from './peers.ts'
import type { SyncOptions } from './sync.ts'
import { ExitCode, describeError, exitCodeFor } from './exit.ts'

const HELP_FOOTER = `
Environment:
  BAZIL_HOME   the data dir (default ~/.local/share/bazil); --home overrides it
  BAZIL_MOUNT  where \`bazil start\` mounts the volume (default ~/bazil)
  DEBUG        e.g. DEBUG=bazil:* for logs and stack traces

Exit codes: 0 ok, 1 failure (or problems found), 2 usage error, 3 no data dir, 4 not running.`

export async function main (argv: string[]): Promise<number> {
  let exitCode: number = ExitCode.OK
  const program = buildProgram(code => { exitCode = code })
  try {
    await program.parseAsync(argv)
    return exitCode
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has printed its own message (or the help) already.
      if (err.exitCode === 0) return ExitCode.OK
      // After a full help text (no command given), a pointer to it would only repeat it.
      if (err.code !== 'commander.help') process.stderr.write('Run `bazil --help` for usage, or `bazil COMMAND --help` for one command.\n')
      return ExitCode.USAGE
    }
    process.stderr.write(describeError(err) + '\n')
    return exitCodeFor(err)
  }
}

/** Commands load on first use, so `--help` and usage errors stay quick. */
const commands = async (): Promise<typeof import('./commands.ts')> => await import('./commands.ts')
const storeCommands = async (): Promise<typeof import('./stores.ts')> => await import('./stores.ts')
const peerCommands = async (): Promise<typeof import('./peers.ts')> => await import('./peers.ts')
const syncCommands = async (): Promise<typeof import('./sync.ts')> => await import('./sync.ts')

export function buildProgram (setExitCode: (code: number) => void): Command {
  const program = new Command('bazil')
  program
    .description('Bazil: one file system across all your computers, mounted with FUSE.')
    .version(readVersion(), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show help')
    .helpCommand('help [command]', 'show help for a command')
    .option('--home <dir>', 'data dir (default: $BAZIL_HOME or ~/.local/share/bazil)')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => { write(`bazil: ${text.replace(/^error: /, '')}`) } })
    .showSuggestionAfterError(true)
    .addHelpText('after', HELP_FOOTER)

  const globals = (command: Command): GlobalOptions => command.optsWithGlobals<GlobalOptions>()
  const run = (action: (command: Command) => Promise<number>) => async (...args: unknown[]): Promise<void> => {
    // commander passes (options, command) to actions of commands without arguments.
    setExitCode(await action(args[args.length - 1] as Command))
  }

  program.command('init')
    .description('create a data dir: node identity, owner secret and an empty volume')
    .option('--json', 'print the result as JSON')
    .action(run(async command => await (await commands()).initCommand(globals(command), command.opts<JsonOption>())))

  program.command('start')
    .description('start the daemon and mount the volume (in the background unless --foreground)')
    .option('--mount <dir>', 'where to mount the volume (default: $BAZIL_MOUNT or ~/bazil; created if missing)')
    .option('--foreground', 'run in this terminal until Ctrl-C instead of in the background')
    .option('--init', 'initialize the data dir first if it is not yet')
    .option('--listen <multiaddr>', 'listen on this address (repeatable; default /ip4/0.0.0.0/tcp/4011, or any free port)', (value: string, previous: string[] = []) => [...previous, value])
    .option('--no-mdns', 'do not look for your other devices on the LAN (mDNS)')
    .option('--offline', 'no networking at all (no peers, no pairing)')
    .action(run(async command => await (await commands()).startCommand(globals(command), command.opts<StartOptions>())))

  program.command('stop')
    .description('unmount the volume and stop the daemon')
    .action(run(async command => await (await commands()).stopCommand(globals(command))))

  program.command('status')
    .description('show the running node: volume, mount, peer id, and what it stores')
    .option('--json', 'print the status as JSON')
    .action(run(async command => await (await commands()).statusCommand(globals(command), command.opts<JsonOption>())))

  program.command('check')
    .description('verify every chunk the volume refers to; lists problems with their paths (exit 1 if any)')
    .option('--json', 'print the report as JSON')
    .action(run(async command => await (await commands()).checkCommand(globals(command), command.opts<JsonOption>())))

  program.command('invite')
    .description('print a one-time code that lets another device of yours join (bazil join CODE there)')
    .option('--ttl <minutes>', 'how long the code works', '10')
    .option('--json', 'print the code as JSON')
    .action(run(async command => await (await peerCommands()).inviteCommand(globals(command), command.opts<InviteOptions>())))

  program.command('join <code>')
    .description('make this (new) data dir one of your devices, with a code from `bazil invite`')
    .option('--json', 'print the result as JSON')
    .action(run(async command => await (await peerCommands()).joinCommand(globals(command), command.args[0] as string, command.opts<JsonOption>())))

  const peers = program.command('peers')
    .description('paired and nearby devices: name, id, paired, connected, addresses, last seen, round trip, traffic')
    .option('--json', 'print the table as JSON')
    .action(run(async command => await (await peerCommands()).peersCommand(globals(command), command.opts<JsonOption>())))
  peers.command('remove <peer-id>')
    .description('forget a paired device: it gets nothing from this one any more')
    .option('--json', 'print the remaining peers as JSON')
    .action(run(async command => await (await peerCommands()).peersRemoveCommand(globals(command), command.args[0] as string, command.optsWithGlobals<JsonOption>())))
  peers.command('rename <peer-id> <name>')
    .description('give a paired device another name (shown by bazil peers and status)')
    .option('--json', 'print the peers as JSON')
    .action(run(async command => await (await peerCommands()).peersRenameCommand(globals(command), command.args[0] as string, command.args[1] as string, command.optsWithGlobals<JsonOption>())))

  const store = program.command('store').description("the volume's other stores: where its content is replicated and read from")
  store.command('add <name> <url>')
    .description('add a store: a local path, sftp://user@host:port/path or s3://bucket/prefix?endpoint=URL')
    .option('--json', 'print the store list as JSON')
    .action(run(async command => await (await storeCommands()).storeAddCommand(globals(command), command.args[0] as string, command.args[1] as string, command.opts<JsonOption>())))
  store.command('list')
    .description('list the stores with their health, latency, throughput and replication backlog')
    .option('--json', 'print the list as JSON')
    .action(run(async command => await (await storeCommands()).storeListCommand(globals(command), command.opts<JsonOption>())))
  store.command('policy [setting]')
    .description('show or set how many stores keep each object: copies=N (the local store counts as one) or copies=all (the default)')
    .option('--json', 'print the policy as JSON')
    .action(run(async command => await (await storeCommands()).storePolicyCommand(globals(command), command.args[0], command.opts<JsonOption>())))
  store.command('rm <name>')
    .description('stop using a store (its objects are left in place)')
    .option('--json', 'print the remaining stores as JSON')
    .action(run(async command => await (await storeCommands()).storeRemoveCommand(globals(command), command.args[0] as string, command.opts<JsonOption>())))

  program.command('sync')
    .description('show how far each paired device is behind, both ways; --wait until all connected ones are caught up')
    .option('--wait', 'return once every connected paired device is caught up (exit 1 on timeout)')
    .option('--timeout <seconds>', 'how long --wait waits', '60')
    .option('--json', 'print the report as JSON')
    .action(run(async command => await (await syncCommands()).syncCommand(globals(command), command.opts<SyncOptions>())))

  program.command('conflicts')
    .description('list conflict copies (a file changed on two devices) and entries shown under another name than they have')
    .option('--json', 'print the list as JSON')
    .action(run(async command => await (await syncCommands()).conflictsCommand(globals(command), command.opts<JsonOption>())))

  program.command('get <path>')
    .description("fetch a file's or subtree's content into the local store (only what is missing)")
    .option('--dry-run', 'say what would be fetched, fetch nothing')
    .option('--json', 'print the report as JSON')
    .action(run(async command => await (await storeCommands()).getCommand(globals(command), command.args[0] as string, command.opts<TransferOptions>())))

  program.command('push <path> <store>')
    .description("copy a file's or subtree's content to a store (only what it lacks)")
    .option('--dry-run', 'say what would be copied, copy nothing')
    .option('--json', 'print the report as JSON')
    .action(run(async command => await (await storeCommands()).pushCommand(globals(command), command.args[0] as string, command.args[1] as string, command.opts<TransferOptions>())))

  return program
}

function readVersion (): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}
