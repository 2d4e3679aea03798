//! The host side of the `net_access` capability: `http`.`get` (see [`crate::abi`]), written
//! once over [`GuestMemory`] and linked by each engine only for actions granted it.
//!
//! It is async: an activation waiting for its response is a suspended future, not a blocked
//! thread, on an engine that can suspend a host call. The outbound call itself is simulated by
//! a [`SIMULATED_LATENCY`] wait, so the executor never reaches the network; the answer says so.

use crate::abi;
use crate::host::abi::GuestMemory;
use crate::runtime::RunError;
use serde_json::json;
use std::time::Duration;

/// How long a simulated request takes.
pub const SIMULATED_LATENCY: Duration = Duration::from_millis(300);

/// The longest URL the host reads out of the guest.
pub const MAX_URL_BYTES: u32 = 8 * 1024;

/// Answers one `http`.`get(url_ptr, url_len)` call: reads the URL, waits, and hands the guest
/// the JSON answer in a buffer of its own, returning that buffer's packed region.
pub async fn get<G: GuestMemory>(
    guest: &mut G,
    url_ptr: u32,
    url_len: u32,
) -> Result<u64, G::Error> {
    let answer = match read_url(guest, url_ptr, url_len) {
        Ok(url) => {
            tokio::time::sleep(SIMULATED_LATENCY).await;
            let body = json!({ "url": url, "simulated": true }).to_string();
            json!({ "status": 200, "body": body })
        }
        Err(sentence) => json!({ "error": sentence }),
    };
    let bytes = answer.to_string().into_bytes();
    let len = u32::try_from(bytes.len()).expect("the answer is a few kilobytes at most");
    let ptr = guest.alloc(len).await?;
    guest.write_memory(ptr, &bytes)?;
    Ok(abi::pack_region(ptr, len))
}

/// The error of an `http`.`get` call from a module that lacks an export the host needs.
pub fn missing_export(export: &str) -> RunError {
    RunError::Trap {
        trap: format!(
            "{}.{} needs the module to export `{export}`",
            abi::HTTP_MODULE,
            abi::HTTP_GET_IMPORT
        ),
    }
}

/// The URL the guest passed, or the sentence that says why it cannot be fetched.
fn read_url<G: GuestMemory>(guest: &mut G, ptr: u32, len: u32) -> Result<String, String> {
    if len > MAX_URL_BYTES {
        return Err(format!(
            "The URL is {len} bytes, more than the {MAX_URL_BYTES} bytes http.get accepts."
        ));
    }
    let bytes = guest
        .read_memory(ptr, len)
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// 64 KiB of guest memory with a bump allocator above 32 KiB.
    struct FakeMemory {
        bytes: Vec<u8>,
        next: u32,
    }

    impl GuestMemory for FakeMemory {
        type Error = RunError;

        async fn alloc(&mut self, len: u32) -> Result<u32, RunError> {
            let ptr = self.next;
            self.next += len;
            Ok(ptr)
        }

        fn write_memory(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), RunError> {
            let start = ptr as usize;
            self.bytes[start..start + bytes.len()].copy_from_slice(bytes);
            Ok(())
        }

        fn read_memory(&mut self, ptr: u32, len: u32) -> Result<Vec<u8>, RunError> {
            let (start, end) = (ptr as usize, ptr as usize + len as usize);
            self.bytes
                .get(start..end)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| RunError::Trap {
                    trap: "out of bounds".to_owned(),
                })
        }
    }

    async fn answer_for(url: &[u8], url_len: u32) -> Value {
        let mut memory = FakeMemory {
            bytes: vec![0; 64 * 1024],
            next: 32 * 1024,
        };
        memory.bytes[..url.len()].copy_from_slice(url);
        let packed = get(&mut memory, 0, url_len).await.unwrap();
        let (ptr, len) = abi::unpack_region(packed);
        serde_json::from_slice(&memory.read_memory(ptr, len).unwrap()).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_url_is_answered_after_the_simulated_wait_and_bad_ones_with_a_sentence() {
        let url = b"https://example.com/a";
        let answer = answer_for(url, url.len() as u32).await;
        assert_eq!(answer["status"], 200);
        let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"url": "https://example.com/a", "simulated": true})
        );
        assert_eq!(
            answer_for(b"ftp://x/", 8).await,
            json!({"error": "http.get takes an http:// or https:// URL, not \"ftp://x/\"."})
        );
        assert_eq!(
            answer_for(b"", 9000).await,
            json!({"error": "The URL is 9000 bytes, more than the 8192 bytes http.get accepts."})
        );
        assert_eq!(
            answer_for(b"\xff\xfe", 2).await,
            json!({"error": "The URL passed to http.get is not UTF-8."})
        );
    }
}
