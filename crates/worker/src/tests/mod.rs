//! Tests through the AWS emulator (moto's Step Functions) and the repository's state machine
//! definitions. They live inside the crate, one test binary with the unit tests, because
//! they drive internals (`sfn`, `rate`) that are not part of the public API.

mod sfn;
mod statemachine;
