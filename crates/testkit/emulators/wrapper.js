// Shared by the emulator wrappers: argument parsing, where npm packages live, and
// exiting when the parent (the test process) is gone - unless SAMEDAY_EMULATOR_DETACHED=1
// (set by `sameday-stack`, whose emulators outlive the command that started them).
'use strict'

const path = require('path')

/** `--key value` / `--key=value` pairs; rejects anything else and keys not in `known`. */
function parseArgs(argv, known) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument: ${a}`)
    let key = a.slice(2), val
    const eq = key.indexOf('=')
    if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq) }
    else { val = argv[++i]; if (val === undefined) throw new Error(`missing value for --${key}`) }
    if (!known.includes(key)) throw new Error(`unknown option --${key}`)
    out[key] = val
  }
  return out
}

/** $SAMEDAY_NPM_DIR, else $SAMEDAY_CACHE/npm, else <repo>/.cache/npm. */
function npmDir() {
  if (process.env.SAMEDAY_NPM_DIR) return process.env.SAMEDAY_NPM_DIR
  if (process.env.SAMEDAY_CACHE) return path.join(process.env.SAMEDAY_CACHE, 'npm')
  return path.join(__dirname, '..', '..', '..', '.cache', 'npm')
}

function intArg(args, name, dflt) {
  if (args[name] === undefined) return dflt
  const n = Number(args[name])
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer`)
  return n
}

/** Exit on SIGTERM/SIGINT and, unless detached, when the parent process disappears
 * (in-memory: nothing to flush). */
function exitWithParent() {
  const stop = () => process.exit(0)
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  if (process.env.SAMEDAY_EMULATOR_DETACHED === '1') return
  const ppid = process.ppid
  setInterval(() => { if (process.ppid !== ppid) process.exit(0) }, 500).unref()
}

module.exports = { parseArgs, npmDir, intArg, exitWithParent }
