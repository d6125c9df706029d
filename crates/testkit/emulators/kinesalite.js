#!/usr/bin/env node
// Starts kinesalite (in-memory Kinesis emulator) bound to 127.0.0.1 only.
//
//   node kinesalite.js [--port N] [--shardLimit N] [--createStreamMs MS]
//                      [--deleteStreamMs MS] [--updateStreamMs MS]
//
// --port 0 (the default) picks a free port. The stream-state latencies default to 0
// (kinesalite's own default is 500 ms) so CREATING/UPDATING/DELETING end at once;
// --shardLimit defaults to 100 (kinesalite: 10).
// Readiness: exactly one line `LISTENING <port>` on stdout; everything else goes to stderr.
// Exits on SIGTERM/SIGINT, and by itself when its parent process dies.
// kinesalite is loaded from $SAMEDAY_NPM_DIR/node_modules, else
// $SAMEDAY_CACHE/npm/node_modules, else <repo>/.cache/npm/node_modules.
'use strict'

const path = require('path')

function parseArgs(argv) {
  const out = {}
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (!a.startsWith('--')) throw new Error(`unexpected argument: ${a}`)
    let key = a.slice(2), val
    const eq = key.indexOf('=')
    if (eq >= 0) { val = key.slice(eq + 1); key = key.slice(0, eq) }
    else { val = argv[++i]; if (val === undefined) throw new Error(`missing value for --${key}`) }
    out[key] = val
  }
  return out
}

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

function exitWithParent() {
  const ppid = process.ppid
  setInterval(() => { if (process.ppid !== ppid) process.exit(0) }, 500).unref()
}

function main() {
  const args = parseArgs(process.argv.slice(2))
  const known = ['port', 'shardLimit', 'createStreamMs', 'deleteStreamMs', 'updateStreamMs']
  for (const k of Object.keys(args)) if (!known.includes(k)) throw new Error(`unknown option --${k}`)
  const port = intArg(args, 'port', 0)
  const options = {
    // no `path` => kinesalite uses memdown (in-memory store)
    shardLimit: intArg(args, 'shardLimit', 100),
    createStreamMs: intArg(args, 'createStreamMs', 0),
    deleteStreamMs: intArg(args, 'deleteStreamMs', 0),
    updateStreamMs: intArg(args, 'updateStreamMs', 0),
  }
  const kinesalite = require(path.join(npmDir(), 'node_modules', 'kinesalite'))
  const server = kinesalite(options)
  server.on('error', (err) => { console.error(`kinesalite: ${err.stack || err}`); process.exit(1) })
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`LISTENING ${server.address().port}\n`)
  })
  const stop = () => process.exit(0) // in-memory: nothing to flush
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  exitWithParent()
}

try {
  main()
} catch (err) {
  console.error(`kinesalite.js: ${err.message}`)
  process.exit(2)
}
