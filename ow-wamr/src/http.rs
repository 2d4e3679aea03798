//! The `net_access` capability's `http`.`get` on WAMR (its host side is
//! [`ow_common::host::http`]).
//!
//! WAMR resolves natives for every module at load, so `http`.`get` is registered once for the
//! process; actions not granted `net_access` are refused at prepare, and the native checks the
//! grant again. A native cannot suspend: it waits for the answer on the instance's worker
//! thread (blocking on the activation's tokio runtime), so a waiting activation holds that
//! thread. The wait ends early when the activation is stopped.

use crate::ffi::{NativeFailure, RunningInstance};
use crate::instance::{CallError, WamrGuest};
use ow_common::host::http;
use ow_common::runtime::RunError;

/// Answers one `http`.`get(url_ptr, url_len)` call made by the instance running on this thread.
pub(crate) fn get(url_ptr: u32, url_len: u32) -> Result<u64, NativeFailure> {
    let answer = RunningInstance.with_state(|state| {
        if !state.net_access() {
            return Err(CallError::Trap(
                "http.get is not granted to this action: it needs the net_access annotation"
                    .to_owned(),
            ));
        }
        let mut memory = WamrGuest::calling_native();
        state.runtime().block_on(async {
            tokio::select! {
                answer = http::get(&mut memory, url_ptr, url_len) => answer,
                () = state.kill().fired() => Err(CallError::Trap(
                    "the action was stopped while waiting in http.get".to_owned(),
                )),
            }
        })
    });
    let Some(answer) = answer else {
        return Err(NativeFailure::Refused(
            "http.get was called by an instance the executor did not make".to_owned(),
        ));
    };
    answer.map_err(|error| match error {
        CallError::Raised => NativeFailure::Raised,
        CallError::Trap(sentence) | CallError::Refused(RunError::Trap { trap: sentence }) => {
            NativeFailure::Refused(sentence)
        }
        CallError::Refused(other) => NativeFailure::Refused(other.to_string()),
    })
}
