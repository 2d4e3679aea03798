;; An SDK-ABI module that reads its stdin, which holds nothing for this ABI: it answers
;; {"stdin":"empty"} when its first read ends the stream at once (no error, no byte), and
;; traps otherwise. A stdin that never ends would keep it waiting until its deadline.
(module
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; One iovec at 0: 256 bytes at 64. The count read goes to 16.
  (data (i32.const 0) "\40\00\00\00\00\01\00\00")
  (data (i32.const 1024) "{\22stdin\22:\22empty\22}")
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 2048))
  (func (export "__ow_main") (param i32 i32) (result i64)
    (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16))
      (then unreachable))
    (if (i32.load (i32.const 16))
      (then unreachable))
    ;; region (1024, 17) packed as ptr << 32 | len
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 17))))
