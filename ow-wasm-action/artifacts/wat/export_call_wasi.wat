;; An export-call module that imports WASI: a reactor whose `_initialize` adds 1000 to the
;; offset `add` adds (so running it twice would show), and whose `add` logs a line on stdout.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $offset (mut i32) (i32.const 0))
  ;; One iovec at 0: the 7 bytes at 16.
  (data (i32.const 0) "\10\00\00\00\07\00\00\00")
  (data (i32.const 16) "adding\n")
  (func (export "_initialize")
    (global.set $offset (i32.add (global.get $offset) (i32.const 1000))))
  (func (export "add") (param i32 i32) (result i32)
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.add (global.get $offset) (i32.add (local.get 0) (local.get 1)))))
