//! The `net_access` capability: the `http`.`get` host function (see [`ow_common::abi`]),
//! linked only for actions whose annotations grant it.
//!
//! It is async: an activation waiting for its response is a suspended future, not a blocked
//! thread. The outbound call itself is simulated by a [`SIMULATED_LATENCY`] wait, so the
//! executor never reaches the network; the answer says so.

use crate::action::ActivationState;
use ow_common::abi;
use serde_json::json;
use std::time::Duration;
use wasmtime::{Caller, Extern, Linker};

/// How long a simulated request takes.
pub(crate) const SIMULATED_LATENCY: Duration = Duration::from_millis(300);

/// The longest URL the host reads out of the guest.
const MAX_URL_BYTES: u32 = 8 * 1024;

/// Adds `http`.`get` to `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<ActivationState>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        abi::HTTP_MODULE,
        abi::HTTP_GET_IMPORT,
        |mut caller: Caller<'_, ActivationState>, (url_ptr, url_len): (u32, u32)| {
            Box::new(async move { get(&mut caller, url_ptr, url_len).await })
        },
    )?;
    Ok(())
}

/// Reads the URL, waits, and hands the guest the JSON answer in a buffer of its own.
async fn get(
    caller: &mut Caller<'_, ActivationState>,
    url_ptr: u32,
    url_len: u32,
) -> wasmtime::Result<u64> {
    let Some(Extern::Memory(memory)) = caller.get_export(abi::MEMORY_EXPORT) else {
        wasmtime::bail!(
            "{}.{} needs the module to export its memory as `{}`",
            abi::HTTP_MODULE,
            abi::HTTP_GET_IMPORT,
            abi::MEMORY_EXPORT
        );
    };
    let Some(Extern::Func(alloc)) = caller.get_export(abi::ALLOC_EXPORT) else {
        wasmtime::bail!(
            "{}.{} needs the module to export the allocator `{}`",
            abi::HTTP_MODULE,
            abi::HTTP_GET_IMPORT,
            abi::ALLOC_EXPORT
        );
    };
    let alloc = alloc.typed::<u32, u32>(&*caller)?;
    let answer = match read_url(caller, memory, url_ptr, url_len) {
        Ok(url) => {
            tokio::time::sleep(SIMULATED_LATENCY).await;
            let body = json!({ "url": url, "simulated": true }).to_string();
            json!({ "status": 200, "body": body })
        }
        Err(sentence) => json!({ "error": sentence }),
    };
    let bytes = answer.to_string().into_bytes();
    let len = u32::try_from(bytes.len()).expect("the answer is a few hundred bytes");
    let ptr = alloc.call_async(&mut *caller, len).await?;
    memory
        .write(&mut *caller, ptr as usize, &bytes)
        .map_err(|_| {
            wasmtime::format_err!("the guest allocator returned a buffer outside memory")
        })?;
    Ok(abi::pack_region(ptr, len))
}

/// The URL the guest passed, or the sentence that says why it cannot be fetched.
fn read_url(
    caller: &Caller<'_, ActivationState>,
    memory: wasmtime::Memory,
    ptr: u32,
    len: u32,
) -> Result<String, String> {
    if len > MAX_URL_BYTES {
        return Err(format!(
            "The URL is {len} bytes, more than the {MAX_URL_BYTES} bytes http.get accepts."
        ));
    }
    let mut bytes = vec![0; len as usize];
    memory
        .read(caller, ptr as usize, &mut bytes)
        .map_err(|_| "The URL passed to http.get lies outside the action's memory.".to_owned())?;
    let url = String::from_utf8(bytes)
        .map_err(|_| "The URL passed to http.get is not UTF-8.".to_owned())?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "http.get takes an http:// or https:// URL, not {url:?}."
        ));
    }
    Ok(url)
}
