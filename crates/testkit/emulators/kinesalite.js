#!/usr/bin/env node
// Starts kinesalite (in-memory Kinesis emulator) bound to 127.0.0.1 only.
//
//   node kinesalite.js [--port N] [--shardLimit N] [--createStreamMs MS]
//                      [--deleteStreamMs MS] [--updateStreamMs MS]
//
// --port 0 (the default) picks a free port. The stream-state latencies default to 0
// (kinesalite's own default is 500 ms) so CREATING/UPDATING/DELETING end at once;
// --shardLimit defaults to 1000 (kinesalite: 10): one test process shares one kinesalite.
// Readiness: exactly one line `LISTENING <port>` on stdout; everything else goes to stderr.
// Exits on SIGTERM/SIGINT, and by itself when its parent process dies (unless
// SAMEDAY_EMULATOR_DETACHED=1, set by `sameday-stack`: then it outlives its starter).
// kinesalite is loaded from $SAMEDAY_NPM_DIR/node_modules, else
// $SAMEDAY_CACHE/npm/node_modules, else <repo>/.cache/npm/node_modules.
'use strict'

const path = require('path')
const { parseArgs, npmDir, intArg, exitWithParent } = require('./wrapper')


function main() {
  const args = parseArgs(process.argv.slice(2), ['port', 'shardLimit', 'createStreamMs', 'deleteStreamMs', 'updateStreamMs'])
  const port = intArg(args, 'port', 0)
  const options = {
    // no `path` => kinesalite uses memdown (in-memory store)
    shardLimit: intArg(args, 'shardLimit', 1000),
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
  exitWithParent()
}

try {
  main()
} catch (err) {
  console.error(`kinesalite.js: ${err.message}`)
  process.exit(2)
}
